//! Hostile checkpoints: hand-written zip and legacy `torch.save` files and
//! safetensors files whose numbers lie. Each must be an error naming the
//! file (and the tensor, when one is to blame), never a panic, an
//! out-of-bounds read or an unbounded allocation.

use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tch::Tensor;
use zoo_torch_backend::read_named_tensors;

/// One tensor of a hand-written checkpoint, with the numbers its pickle
/// gives, unchecked.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    storage: String,
    /// The element count the storage's persistent id declares.
    declared: i64,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

impl Entry {
    fn new(key: &str, offset: i64, size: &[i64], stride: &[i64]) -> Entry {
        Entry {
            key: key.into(),
            storage: "0".into(),
            declared: 12,
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
        }
    }
}

fn int(value: i64) -> Vec<u8> {
    let mut bytes = vec![0x8a, 8];
    bytes.extend(value.to_le_bytes());
    bytes
}

fn text(value: &str) -> Vec<u8> {
    let mut bytes = vec![b'X'];
    bytes.extend((value.len() as u32).to_le_bytes());
    bytes.extend(value.as_bytes());
    bytes
}

/// A protocol-2 pickle of `OrderedDict(key -> _rebuild_tensor_v2(...))`,
/// as `torch.save` writes it.
fn state_dict_pickle(entries: &[Entry]) -> Vec<u8> {
    let mut pickle = vec![0x80, 2];
    pickle.extend(b"ccollections\nOrderedDict\n)R(");
    for entry in entries {
        pickle.extend(text(&entry.key));
        pickle.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        pickle.extend(text("storage"));
        pickle.extend(b"ctorch\nFloatStorage\n");
        pickle.extend(text(&entry.storage));
        pickle.extend(text("cpu"));
        pickle.extend(int(entry.declared));
        pickle.extend(b"tQ");
        pickle.extend(int(entry.offset));
        pickle.push(b'(');
        entry.size.iter().for_each(|size| pickle.extend(int(*size)));
        pickle.extend(b"t(");
        entry
            .stride
            .iter()
            .for_each(|stride| pickle.extend(int(*stride)));
        pickle.extend(b"t\x89ccollections\nOrderedDict\n)RtR");
    }
    pickle.extend(b"u.");
    pickle
}

/// `count` little-endian f32s: 0, 1, 2, ...
fn floats(count: usize) -> Vec<u8> {
    (0..count)
        .flat_map(|value| (value as f32).to_le_bytes())
        .collect()
}

/// A zip checkpoint (`torch.save` since 1.6) at `dir/name`.
fn zip_checkpoint(dir: &Path, name: &str, pickle: &[u8], storages: &[(&str, Vec<u8>)]) -> PathBuf {
    let path = dir.join(name);
    let mut zip = zip::ZipWriter::new(fs_err::File::create(&path).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", options).unwrap();
    zip.write_all(pickle).unwrap();
    for (key, bytes) in storages {
        zip.start_file(format!("archive/data/{key}"), options)
            .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// A legacy (pre-1.6) checkpoint at `dir/name`: each storage as its
/// written element count and bytes.
fn legacy_checkpoint(
    dir: &Path,
    name: &str,
    pickle: &[u8],
    storages: &[(&str, u64, Vec<u8>)],
) -> PathBuf {
    let mut data = vec![0x80, 2, 0x8a, 10];
    data.extend([0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
    data.push(b'.');
    data.extend(b"\x80\x02M\xe9\x03.");
    data.extend(b"\x80\x02}.");
    data.extend(pickle);
    data.extend(b"\x80\x02](");
    storages
        .iter()
        .for_each(|(key, _, _)| data.extend(text(key)));
    data.extend(b"e.");
    for (_, count, bytes) in storages {
        data.extend(count.to_le_bytes());
        data.extend(bytes);
    }
    let path = dir.join(name);
    fs_err::write(&path, data).unwrap();
    path
}

/// The error of reading `path`, with its sources.
fn error_of(path: &Path) -> String {
    let err = read_named_tensors(path).expect_err("an error");
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Both formats of one state dict over a 12-float storage `0`.
fn both_formats(dir: &Path, stem: &str, entries: &[Entry]) -> [PathBuf; 2] {
    let pickle = state_dict_pickle(entries);
    [
        zip_checkpoint(dir, &format!("{stem}.pth"), &pickle, &[("0", floats(12))]),
        legacy_checkpoint(
            dir,
            &format!("{stem}_legacy.pth"),
            &pickle,
            &[("0", 12, floats(12))],
        ),
    ]
}

#[test]
fn hand_written_checkpoints_read_like_torch_saves() {
    let dir = tempfile::tempdir().unwrap();
    let entries = [
        Entry::new("a.weight", 0, &[3, 4], &[4, 1]),
        Entry::new("a.view", 0, &[4, 3], &[1, 4]),
        Entry::new("a.row", 4, &[4], &[1]),
        Entry::new("a.empty", 0, &[0, 5], &[5, 1]),
    ];
    for path in both_formats(dir.path(), "good", &entries) {
        let tensors = read_named_tensors(&path).unwrap();
        let get = |name: &str| {
            let (_, tensor) = tensors.iter().find(|(key, _)| key == name).unwrap();
            Vec::<f32>::try_from(tensor.flatten(0, -1)).unwrap()
        };
        assert_eq!(
            get("a.weight"),
            (0..12).map(|v| v as f32).collect::<Vec<_>>()
        );
        assert_eq!(get("a.view")[..4], [0.0, 4.0, 8.0, 1.0]);
        assert_eq!(get("a.row"), vec![4.0, 5.0, 6.0, 7.0]);
        assert!(get("a.empty").is_empty());
    }
}

#[test]
fn negative_stride_in_checkpoint_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let entries = [Entry::new("conv.weight", 11, &[3, 4], &[-4, 1])];
    for path in both_formats(dir.path(), "negative_stride", &entries) {
        let err = error_of(&path);
        assert!(
            err.contains(&path.display().to_string())
                && err.contains("tensor `conv.weight`")
                && err.contains("negative stride `-4`"),
            "{err}"
        );
    }
}

#[test]
fn negative_size_and_offset_in_checkpoint_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (Entry::new("w", 0, &[-3, 4], &[4, 1]), "negative size `-3`"),
        (Entry::new("w", -1, &[3], &[1]), "negative offset `-1`"),
        (
            Entry {
                declared: -12,
                ..Entry::new("w", 0, &[3], &[1])
            },
            "negative storage length `-12`",
        ),
    ];
    for (index, (entry, expected)) in cases.into_iter().enumerate() {
        let pickle = state_dict_pickle(&[entry]);
        let path = zip_checkpoint(
            dir.path(),
            &format!("case{index}.pth"),
            &pickle,
            &[("0", floats(12))],
        );
        let err = error_of(&path);
        assert!(
            err.contains("tensor `w`") && err.contains(expected),
            "{expected}: {err}"
        );
    }
}

#[test]
fn overflowing_sizes_and_strides_in_checkpoint_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let big = i64::MAX / 2;
    let cases = [
        (
            Entry::new("w", 0, &[big, big], &[0, 0]),
            "element count overflows",
        ),
        (
            Entry::new("w", 0, &[3, 3], &[i64::MAX, i64::MAX]),
            "furthest element overflows",
        ),
        (
            Entry::new("w", i64::MAX, &[3], &[i64::MAX]),
            "furthest element overflows",
        ),
        (
            Entry {
                declared: i64::MAX,
                ..Entry::new("w", 0, &[3], &[1])
            },
            "storage byte count overflows",
        ),
    ];
    for (index, (entry, expected)) in cases.into_iter().enumerate() {
        let pickle = state_dict_pickle(&[entry]);
        let path = zip_checkpoint(
            dir.path(),
            &format!("case{index}.pth"),
            &pickle,
            &[("0", floats(12))],
        );
        let err = error_of(&path);
        assert!(
            err.contains("tensor `w`") && err.contains(expected),
            "{expected}: {err}"
        );
    }
    // The legacy format's own element counts, near 2^64.
    let pickle = state_dict_pickle(&[Entry::new("w", 0, &[3], &[1])]);
    for count in [u64::MAX, u64::MAX / 4 + 1, 1 << 40] {
        let path = legacy_checkpoint(
            dir.path(),
            "legacy_count.pth",
            &pickle,
            &[("0", count, floats(12))],
        );
        let err = error_of(&path);
        assert!(err.contains("tensor `w`"), "{count}: {err}");
    }
}

#[test]
fn tensor_view_beyond_its_storage_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        Entry::new("w", 0, &[4, 4], &[4, 1]),
        Entry::new("w", 10, &[3], &[1]),
        Entry::new("w", 0, &[2, 2], &[1, 11]),
    ];
    for (index, entry) in cases.into_iter().enumerate() {
        for path in both_formats(
            dir.path(),
            &format!("beyond{index}"),
            std::slice::from_ref(&entry),
        ) {
            let err = error_of(&path);
            assert!(
                err.contains("tensor `w`")
                    && err.contains("of storage `0`, which holds 12 elements"),
                "{entry:?}: {err}"
            );
        }
    }
}

#[test]
fn storage_shorter_than_declared_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let pickle = state_dict_pickle(&[Entry::new("w", 0, &[3], &[1])]);
    // The persistent id says 12 floats; the zip entry holds 2.
    let path = zip_checkpoint(dir.path(), "short.pth", &pickle, &[("0", floats(2))]);
    let err = error_of(&path);
    assert!(
        err.contains("tensor `w`")
            && err.contains("storage `0` holds 8 bytes, the file declares 48"),
        "{err}"
    );
    // The legacy count says 12 floats; the file ends after 2.
    let path = legacy_checkpoint(
        dir.path(),
        "short_legacy.pth",
        &pickle,
        &[("0", 12, floats(2))],
    );
    let err = error_of(&path);
    assert!(
        err.contains("tensor `w`") && err.contains("holds 8 bytes"),
        "{err}"
    );
    // A storage the archive does not have.
    let path = zip_checkpoint(dir.path(), "missing.pth", &pickle, &[]);
    let err = error_of(&path);
    assert!(err.contains("its storage `0` is missing"), "{err}");
}

#[test]
fn expanded_view_of_a_tiny_storage_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    // One float, viewed as 2^40 of them (4 TiB once materialised).
    let entry = Entry {
        declared: 1,
        ..Entry::new("w", 0, &[1 << 20, 1 << 20], &[0, 0])
    };
    let pickle = state_dict_pickle(&[entry]);
    let path = zip_checkpoint(dir.path(), "expanded.pth", &pickle, &[("0", floats(1))]);
    let err = error_of(&path);
    assert!(
        err.contains("tensor `w`") && err.contains("1099511627776 elements from a storage of 1"),
        "{err}"
    );
    // A small broadcast view is still read.
    let entry = Entry {
        declared: 1,
        ..Entry::new("w", 0, &[3, 2], &[0, 0])
    };
    let pickle = state_dict_pickle(&[entry]);
    let path = zip_checkpoint(dir.path(), "broadcast.pth", &pickle, &[("0", floats(1))]);
    let tensors = read_named_tensors(&path).unwrap();
    assert_eq!(tensors[0].1.size(), vec![3, 2]);
}

#[test]
fn exponential_memo_checkpoint_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // `x = []; x = (x, x)` ninety times, memoized: 2^90 leaves if copied.
    let mut pickle = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..90 {
        pickle.extend(b"h\x00h\x00\x86q\x00");
    }
    pickle.push(b'.');
    let path = zip_checkpoint(dir.path(), "memo.pth", &pickle, &[]);
    let err = error_of(&path);
    assert!(
        err.contains("memo.pth") && err.contains("not a dict of tensors"),
        "{err}"
    );
    // Deeper than the bound: an error naming the pickle.
    let mut pickle = vec![0x80, 2, b')'];
    pickle.extend(std::iter::repeat_n(0x85u8, 100_000));
    pickle.push(b'.');
    let path = zip_checkpoint(dir.path(), "deep.pth", &pickle, &[]);
    let err = error_of(&path);
    assert!(
        err.contains("deep.pth")
            && err.contains("pickle `archive/data.pkl`")
            && err.contains("deeper than 100 levels"),
        "{err}"
    );
}

#[test]
fn safetensors_offsets_and_shapes_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, header: &str, data: &[u8]| {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        let path = dir.path().join(name);
        fs_err::write(&path, bytes).unwrap();
        path
    };
    let cases = [
        (
            r#"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}}"#,
            "outside the 16 data bytes",
        ),
        (
            r#"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 4]}}"#,
            "outside the 16 data bytes",
        ),
        (
            r#"{"w": {"dtype": "F32", "shape": [9223372036854775807, 4], "data_offsets": [0, 16]}}"#,
            "overflows 64 bits",
        ),
        (
            r#"{"w": {"dtype": "F32", "shape": [18446744073709551615, 0], "data_offsets": [0, 0]}}"#,
            "its shape overflows",
        ),
        (
            r#"{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}"#,
            "holds 16 bytes, the file declares 12",
        ),
        (
            r#"{"w": {"dtype": "F32", "shape": [-3], "data_offsets": [0, 16]}}"#,
            "not a whole number",
        ),
        (
            r#"{"w": {"dtype": "C64", "shape": [2], "data_offsets": [0, 16]}}"#,
            "unsupported dtype `C64`",
        ),
    ];
    for (index, (header, expected)) in cases.into_iter().enumerate() {
        let path = file(&format!("case{index}.safetensors"), header, &floats(4));
        let err = error_of(&path);
        assert!(
            err.contains(&format!("case{index}.safetensors"))
                && err.contains("tensor `w`")
                && err.contains(expected),
            "{header}: {err}"
        );
    }
    // A header length beyond the file (or near 2^64).
    for length in [1000u64, u64::MAX, u64::MAX - 7] {
        let mut bytes = length.to_le_bytes().to_vec();
        bytes.extend(b"{}");
        let path = dir.path().join("length.safetensors");
        fs_err::write(&path, bytes).unwrap();
        let err = error_of(&path);
        assert!(
            err.contains("length.safetensors") && err.contains("header"),
            "{err}"
        );
    }
    // A good one reads.
    let path = file(
        "good.safetensors",
        r#"{"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}"#,
        &floats(4),
    );
    let tensors = read_named_tensors(&path).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(tensors[0].1.flatten(0, -1)).unwrap(),
        vec![0.0, 1.0, 2.0, 3.0]
    );
}

#[test]
fn ot_files_are_read_by_zoo_not_by_libtorch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.ot");
    let weight = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]);
    let bias = Tensor::from_slice(&[7i64, -8]);
    Tensor::save_multi(&[("layer.weight", &weight), ("layer.bias", &bias)], &path).unwrap();
    let mut tensors = read_named_tensors(&path).unwrap();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(tensors.len(), 2);
    assert_eq!(tensors[0].0, "layer.bias");
    assert_eq!(Vec::<i64>::try_from(&tensors[0].1).unwrap(), vec![7, -8]);
    assert_eq!(tensors[1].0, "layer.weight");
    assert!(tensors[1].1.equal(&weight));
}

/// The value of element `index` of a view over storage values 0, 1, 2...
fn gathered(offset: i64, size: &[i64], stride: &[i64]) -> Vec<f32> {
    // An empty view may have huge other dimensions (torch allows
    // `[i64::MAX, 0]`): its product is zero whatever the order.
    let numel: i64 = if size.contains(&0) {
        0
    } else {
        size.iter()
            .try_fold(1i64, |numel, &size| numel.checked_mul(size))
            .expect("the reader accepted a view whose element count overflows")
    };
    (0..numel)
        .map(|mut flat| {
            let mut position = offset;
            for dimension in (0..size.len()).rev() {
                position += (flat % size[dimension]) * stride[dimension];
                flat /= size[dimension];
            }
            position as f32
        })
        .collect()
}

/// CI once drew `[i64::MAX, i64::MAX, 0]`: an empty view whose other
/// dimensions are huge reads as an empty tensor of that shape, or is refused
/// with a message naming the file, never a panic.
#[test]
fn empty_views_with_huge_dimensions_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    for size in [
        vec![i64::MAX, i64::MAX, 0],
        vec![0, i64::MAX],
        vec![i64::MAX, 0, 3],
    ] {
        let entry = Entry {
            key: "t".into(),
            storage: "0".into(),
            declared: 4,
            offset: 0,
            size: size.clone(),
            stride: vec![1; size.len()],
        };
        let pickle = state_dict_pickle(&[entry]);
        let path = zip_checkpoint(dir.path(), "empty.pth", &pickle, &[("0", floats(4))]);
        match read_named_tensors(&path) {
            Ok(tensors) => {
                assert_eq!(tensors[0].1.size(), size);
                assert_eq!(tensors[0].1.numel(), 0);
                assert!(gathered(0, &size, &[1; 3][..size.len()]).is_empty());
            }
            Err(_) => assert!(error_of(&path).contains("empty.pth")),
        }
    }
}

/// Sizes, strides and offsets from small and plausible to hostile.
fn number() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..6,
        1 => -3i64..0,
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => any::<i64>(),
        1 => (1i64..=62).prop_map(|shift| 1i64 << shift),
    ]
}

fn view() -> impl Strategy<Value = (Vec<i64>, Vec<i64>, i64, i64, usize)> {
    (0usize..4)
        .prop_flat_map(|rank| {
            (
                proptest::collection::vec(number(), rank),
                proptest::collection::vec(number(), rank),
                number(),
                prop_oneof![3 => 0i64..40, 1 => number()],
                0usize..40,
            )
        })
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any sizes, strides, offset, declared length and stored length: the
    /// reader either errors naming the file and tensor, or returns exactly
    /// the elements the view selects.
    #[test]
    fn random_views_in_zip_and_legacy_checkpoints_are_checked(
        (size, stride, offset, declared, stored) in view()
    ) {
        let dir = tempfile::tempdir().unwrap();
        let entry = Entry {
            key: "t".into(),
            storage: "0".into(),
            declared,
            offset,
            size: size.clone(),
            stride: stride.clone(),
        };
        let pickle = state_dict_pickle(&[entry]);
        let zip = zip_checkpoint(dir.path(), "random.pth", &pickle, &[("0", floats(stored))]);
        let legacy = legacy_checkpoint(
            dir.path(),
            "random_legacy.pth",
            &pickle,
            &[("0", declared as u64, floats(stored))],
        );
        for path in [zip, legacy] {
            match read_named_tensors(&path) {
                Ok(tensors) => {
                    prop_assert_eq!(tensors.len(), 1);
                    let tensor = &tensors[0].1;
                    prop_assert_eq!(tensor.size(), size.clone());
                    let values = Vec::<f32>::try_from(tensor.flatten(0, -1)).unwrap();
                    prop_assert_eq!(values, gathered(offset, &size, &stride));
                }
                Err(_) => {
                    let err = error_of(&path);
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    prop_assert!(err.contains(&name), "{}", err);
                    prop_assert!(err.contains("tensor `t`"), "{}", err);
                }
            }
        }
        // A plainly valid view is never refused.
        let fits = offset >= 0
            && size.iter().all(|size| (0..6).contains(size))
            && stride.iter().all(|stride| (0..6).contains(stride))
            && (0..=stored as i64).contains(&declared)
            && (size.contains(&0)
                || i128::from(offset)
                    + size
                        .iter()
                        .zip(&stride)
                        .map(|(a, b)| i128::from((a - 1) * b))
                        .sum::<i128>()
                    < i128::from(declared));
        if fits {
            let path = dir.path().join("random.pth");
            prop_assert!(read_named_tensors(&path).is_ok(), "{}", error_of(&path));
        }
    }

    /// Random bytes, alone or behind each format's magic, under each name
    /// the reader dispatches on: an error naming the file, never a panic.
    #[test]
    fn random_bytes_never_panic_the_checkpoint_reader(
        prefix in prop_oneof![
            Just(Vec::new()),
            Just(b"PK\x03\x04".to_vec()),
            Just(b"\x80\x02".to_vec()),
            Just(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec()),
            (0u64..64).prop_map(|length| {
                let mut bytes = length.to_le_bytes().to_vec();
                bytes.push(b'{');
                bytes
            }),
        ],
        body in proptest::collection::vec(any::<u8>(), 0..256),
        extension in prop_oneof![Just("pth"), Just("safetensors"), Just("ot"), Just("bin")],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("random.{extension}"));
        let mut bytes = prefix;
        bytes.extend(body);
        fs_err::write(&path, bytes).unwrap();
        if read_named_tensors(&path).is_err() {
            let err = error_of(&path);
            prop_assert!(err.contains(&format!("random.{extension}")), "{}", err);
        }
    }

    /// The legacy fixture (a real `torch.save`) with bytes overwritten:
    /// its pickles and storage counts, mangled.
    #[test]
    fn mangled_legacy_checkpoints_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let fixture = super::fixtures().join("tiny_state_dict_legacy.pth");
        let mut bytes = fs_err::read(fixture).unwrap();
        for (index, value) in edits {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        if cut.index(4) == 0 {
            bytes.truncate(cut.index(bytes.len()));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mangled.pth");
        fs_err::write(&path, bytes).unwrap();
        if read_named_tensors(&path).is_err() {
            let err = error_of(&path);
            prop_assert!(err.contains("mangled.pth"), "{}", err);
        }
    }
}
