//! Datasets, part files and labels zoo did not write (issue #28): each test
//! is named after an attack that worked on the old code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use zoo_datasets::{
    DatasetError, Datasets, ImportOptions, MergePlan, ResultsKind, ResultsLocation, Shard,
    ShardResults, stable_key,
};
use zoo_model_core::{EmbedOutcome, Label, Outcome, array_to_json};

use crate::images;

/// Writes a FiftyOne dataset folder: `metadata.json` declaring `fields`
/// (`(name, ftype, embedded_doc_type)`) and `samples.json` with `samples`.
pub(crate) fn fiftyone_folder(dir: &Path, fields: &[(&str, &str, Option<&str>)], samples: Value) {
    fs_err::create_dir_all(dir).unwrap();
    let fields: Vec<Value> = fields
        .iter()
        .map(|(name, ftype, embedded)| {
            json!({"name": name, "ftype": format!("fiftyone.core.fields.{ftype}"),
                   "embedded_doc_type": embedded.map(|class| format!("fiftyone.core.labels.{class}"))})
        })
        .collect();
    fs_err::write(
        dir.join("metadata.json"),
        json!({"name": "x", "media_type": "image", "sample_fields": fields}).to_string(),
    )
    .unwrap();
    fs_err::write(
        dir.join("samples.json"),
        json!({ "samples": samples }).to_string(),
    )
    .unwrap();
}

fn png(path: &Path) {
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]))
        .save(path)
        .unwrap();
}

/// A FiftyOne vector whose `.npy` header declares `bytes / 4` floats,
/// followed by `bytes` zeros: a zlib bomb of about `bytes / 1000` bytes.
pub(crate) fn vector_bomb(bytes: usize) -> Value {
    use base64::Engine;
    use std::io::Write;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(&zoo_model_core::npy_bytes("<f4", &[bytes / 4], &[]))
        .unwrap();
    let zeros = vec![0; 1 << 20];
    for _ in 0..bytes >> 20 {
        encoder.write_all(&zeros).unwrap();
    }
    let compressed = encoder.finish().unwrap();
    json!({"$binary": {"base64": base64::engine::general_purpose::STANDARD.encode(compressed),
                       "subType": "00"}})
}

fn vector(values: &[f32]) -> Value {
    let bytes: Vec<u8> = values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    array_to_json("<f4", &[values.len()], &bytes)
}

#[test]
fn an_embed_whose_dataset_was_deleted_and_recreated_writes_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    images(&dir.path().join("pics"), 4);
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    store.create("old", &dir.path().join("pics")).unwrap();
    let pin = store.pin("old").unwrap();
    let pending = store.pending("old", "emb", false).unwrap();
    // `zoo datasets delete old`, then `create new` while the run goes on:
    // SQLite hands the new samples the deleted ones' row ids.
    store.delete("old").unwrap();
    store.create("new", &dir.path().join("pics")).unwrap();
    let reused = store.pending("new", "emb", false).unwrap();
    assert_eq!(reused[0].id, pending[0].id, "the attack needs reused ids");
    let outcomes: Vec<EmbedOutcome> = pending
        .iter()
        .map(|sample| EmbedOutcome::Vector {
            sample_id: sample.id,
            values: vec![1.0, 2.0],
        })
        .collect();
    let error = store.write_embeddings(&pin, "emb", &outcomes).unwrap_err();
    assert!(
        matches!(error, DatasetError::Gone(ref name) if name == "old"),
        "{error}"
    );
    assert!(error.to_string().contains("was deleted"), "{error}");
    let labels = vec![Outcome::Labels {
        sample_id: pending[0].id,
        fields: vec![("pred".into(), None)],
    }];
    assert!(matches!(
        store.write_labels(&pin, "pred", &labels),
        Err(DatasetError::Gone(_))
    ));
    let info = store.info("new").unwrap();
    assert!(info.embedding_fields.is_empty(), "{info:?}");
    assert!(info.label_fields.is_empty(), "{info:?}");
}

#[test]
fn absolute_filepaths_are_refused_unless_allowed_and_then_shard_completely() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    let mut samples = Vec::new();
    for index in 0..40 {
        let path = media.join(format!("p{index}.png"));
        png(&path);
        samples.push(json!({"filepath": path.to_str().unwrap(), "tags": []}));
    }
    let folder = dir.path().join("export");
    fiftyone_folder(&folder, &[], Value::Array(samples));
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    let error = store
        .import_fiftyone("fo", &folder)
        .unwrap_err()
        .to_string();
    assert!(error.contains("outside the imported folder"), "{error}");
    assert!(error.contains("--allow-outside-paths"), "{error}");
    assert!(error.contains("p0.png"), "{error}");
    assert!(!store.exists("fo"));

    store
        .import_fiftyone_with("fo", &folder, ImportOptions::allow_outside_paths(true))
        .unwrap();
    // FiftyOne's usual form: every sample in exactly one of 3 shards.
    let mut seen = Vec::new();
    for index in 0..3 {
        let shard = Shard::new(index, 3).unwrap();
        for (key, sample) in store.shard_samples("fo", shard).unwrap() {
            assert!(key.starts_with(b"/"), "{}", String::from_utf8_lossy(&key));
            seen.push(sample.id);
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 40);

    // And their results merge back by those keys.
    let location = ResultsLocation::parse(dir.path().join("results").to_str().unwrap()).unwrap();
    for index in 0..3 {
        let shard = Shard::new(index, 3).unwrap();
        let samples = store.shard_samples("fo", shard).unwrap();
        let mut results = ShardResults::open(
            &location,
            "pred",
            ResultsKind::Labels,
            shard,
            4,
            samples.clone(),
            false,
        )
        .unwrap();
        let outcomes: Vec<Outcome> = samples
            .iter()
            .map(|(_, sample)| Outcome::Labels {
                sample_id: sample.id,
                fields: vec![("pred".into(), Some(Label::EmptyClassification))],
            })
            .collect();
        results.record_labels(&outcomes).unwrap();
        results.finish().unwrap();
    }
    let plan = MergePlan::scan(&location, "pred").unwrap();
    let summary = store.merge_results("fo", &plan, "pred", false).unwrap();
    assert_eq!((summary.records, summary.unknown), (40, 0));
    assert_eq!(store.info("fo").unwrap().label_fields["pred"], 40);
}

#[test]
fn paths_that_climb_out_or_leave_through_a_link_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    fs_err::write(&secret, "secret").unwrap();
    let folder = dir.path().join("export");
    png(&folder.join("data/a.png"));
    #[cfg(unix)]
    std::os::unix::fs::symlink(&secret, folder.join("data/link.png")).unwrap();
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    let cases = [
        json!({"filepath": "../secret.txt"}),
        json!({"filepath": "data/../../secret.txt"}),
        json!({"filepath": "data/a.png",
               "seg": {"_cls": "Segmentation", "mask_path": secret.to_str().unwrap()}}),
        json!({"filepath": "data/a.png",
               "seg": {"_cls": "Segmentation", "mask_path": "../secret.txt"}}),
        json!({"filepath": "data/a.png", "dets": {"_cls": "Detections", "detections": [
               {"_cls": "Detection", "label": "x", "bounding_box": [0, 0, 1, 1],
                "mask_path": "/etc/passwd"}]}}),
        #[cfg(unix)]
        json!({"filepath": "data/link.png"}),
    ];
    for (index, sample) in cases.into_iter().enumerate() {
        fiftyone_folder(&folder, &[], json!([sample]));
        let error = store
            .import_fiftyone(&format!("d{index}"), &folder)
            .unwrap_err();
        assert!(
            matches!(error, DatasetError::Import { .. }),
            "{sample}: {error}"
        );
        assert!(!store.exists(&format!("d{index}")));
    }
}

#[test]
fn a_relative_mask_path_is_read_from_the_imported_folder_and_kept_by_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("export");
    png(&folder.join("data/a.png"));
    png(&folder.join("masks/m.png"));
    // A Detection without `_id` (zoo's old form, which the export rewrites)
    // with a mask in a file; no `fields/` folder.
    fiftyone_folder(
        &folder,
        &[],
        json!([{"filepath": "data/a.png",
                "dets": {"_cls": "Detections", "detections": [
                    {"_cls": "Detection", "label": "x", "bounding_box": [0, 0, 1, 1],
                     "mask_path": "masks/m.png", "custom": 7}]},
                "seg": {"_cls": "Segmentation", "mask_path": "masks/m.png"}}]),
    );
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    store.import_fiftyone("fo", &folder).unwrap();
    let out = dir.path().join("out");
    store.export_fiftyone("fo", &out).unwrap();
    let samples: Value =
        serde_json::from_slice(&fs_err::read(out.join("samples.json")).unwrap()).unwrap();
    let sample = &samples["samples"][0];
    let detection = &sample["dets"]["detections"][0];
    assert_eq!(detection["mask_path"], "fields/dets.detections/m.png");
    assert_eq!(detection["custom"], 7);
    assert_eq!(sample["seg"]["mask_path"], "fields/seg/m.png");
    assert_eq!(
        fs_err::read(out.join("fields/seg/m.png")).unwrap(),
        fs_err::read(folder.join("masks/m.png")).unwrap()
    );
}

#[test]
fn field_names_that_are_paths_never_become_fields_or_folders() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("export");
    png(&folder.join("data/a.png"));
    let escape = dir.path().join("escape");
    for (index, name) in [escape.to_str().unwrap(), "a/b", "..", "a\\b"]
        .into_iter()
        .enumerate()
    {
        for (kind, label) in [
            json!({"_cls": "Segmentation", "mask_path": "data/a.png"}),
            json!({"_cls": "Detections", "detections": [{"_cls": "Detection", "label": "x",
                   "bounding_box": [0, 0, 1, 1], "mask_path": "data/a.png"}]}),
        ]
        .into_iter()
        .enumerate()
        {
            let mut sample = serde_json::Map::new();
            sample.insert("filepath".into(), json!("data/a.png"));
            sample.insert(name.into(), label);
            fiftyone_folder(
                &folder,
                &[(name, "EmbeddedDocumentField", Some("Segmentation"))],
                json!([sample]),
            );
            let mut store = Datasets::open(&dir.path().join("db")).unwrap();
            let dataset = format!("d{index}-{kind}");
            let info = store.import_fiftyone(&dataset, &folder).unwrap();
            assert!(info.label_fields.is_empty(), "{name}: {info:?}");
            let out = dir.path().join(format!("out-{dataset}"));
            store.export_fiftyone(&dataset, &out).unwrap();
            let entries: Vec<String> = fs_err::read_dir(&out)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                !entries.contains(&"fields".to_owned()),
                "{name}: {entries:?}"
            );
            // Kept as FiftyOne wrote it, as JSON only.
            let samples: Value =
                serde_json::from_slice(&fs_err::read(out.join("samples.json")).unwrap()).unwrap();
            assert_eq!(samples["samples"][0][name]["_cls"], label_class(kind));
        }
    }
    assert!(!escape.exists());
    assert!(!dir.path().join("escape.detections").exists());
}

fn label_class(kind: usize) -> &'static str {
    if kind == 0 {
        "Segmentation"
    } else {
        "Detections"
    }
}

#[test]
fn a_vector_zlib_bomb_is_refused_before_it_inflates() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("export");
    png(&folder.join("data/a.png"));
    let bomb = vector_bomb(256 << 20);
    fiftyone_folder(
        &folder,
        &[("emb", "VectorField", None)],
        json!([{"filepath": "data/a.png", "emb": bomb}]),
    );
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    let error = store
        .import_fiftyone("fo", &folder)
        .unwrap_err()
        .to_string();
    assert!(error.contains("over the limit"), "{error}");
    assert!(error.contains("`emb`"), "{error}");
}

#[test]
fn ragged_embeddings_are_refused_by_the_npy_export_naming_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("export");
    png(&folder.join("data/a.png"));
    png(&folder.join("data/b.png"));
    fiftyone_folder(
        &folder,
        &[("emb", "VectorField", None)],
        json!([{"filepath": "data/a.png", "emb": vector(&[1.0; 8])},
               {"filepath": "data/b.png", "emb": vector(&[1.0; 3])}]),
    );
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    store.import_fiftyone("fo", &folder).unwrap();
    let npy = dir.path().join("emb.npy");
    let error = store.export_embeddings_npy("fo", "emb", &npy).unwrap_err();
    assert!(
        matches!(
            error,
            DatasetError::Ragged {
                found: 3,
                expected: 8,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("b.png"), "{error}");
    assert!(!npy.exists());
}

/// A part file as a shard run writes it, with `lines` as its samples.
fn write_part(results: &Path, field: &str, lines: &[Value]) {
    let shard = results.join(field).join("shard-00000-of-00001");
    fs_err::create_dir_all(&shard).unwrap();
    let header = json!({"zoo_results": 1, "kind": "labels", "field": field, "shard": 0,
        "shards": 1, "chunk": 0, "chunks": 1, "chunk_size": 100,
        "samples": lines.len(), "keys_sha256": ""});
    let mut text = format!("{header}\n");
    for line in lines {
        text.push_str(&format!("{line}\n"));
    }
    fs_err::write(shard.join("part-000000.jsonl"), text).unwrap();
    fs_err::write(
        shard.join("done.json"),
        json!({"zoo_results": 1, "kind": "labels", "field": field, "shard": 0, "shards": 1,
               "chunks": 1, "chunk_size": 100, "samples": lines.len()})
        .to_string(),
    )
    .unwrap();
}

fn label_json() -> Value {
    Label::EmptyClassification.to_json()
}

#[test]
fn hostile_parts_are_refused_whole_and_nothing_is_merged() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dir.path().join("pics");
    images(&pics, 4);
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    store.create("pics", &pics).unwrap();
    let root = store.root("pics").unwrap();
    let good = json!({"key": "img0.png", "labels": {"pred": label_json()}});
    let absolute = root.join("img2.png");
    let cases: Vec<(Value, &str)> = vec![
        // A label naming a file to copy at export.
        (
            json!({"key": "img2.png", "labels": {"pred": {"_cls": "Segmentation",
                   "mask_path": "/etc/passwd"}}}),
            "names a file",
        ),
        (
            json!({"key": "img2.png", "labels": {"pred": {"_cls": "Detections", "detections": [
                   {"_cls": "Detection", "label": "x", "bounding_box": [0, 0, 1, 1],
                    "mask_path": "/etc/passwd"}]}}}),
            "names a file",
        ),
        // Not a label at all.
        (
            json!({"key": "img2.png", "labels": {"pred": {"_cls": "Nonsense"}}}),
            "not a label",
        ),
        // A key that is an absolute path, or climbs out.
        (
            json!({"key": absolute.to_str().unwrap(), "labels": {"pred": label_json()}}),
            "is not the path of a sample",
        ),
        (
            json!({"key": "../pics/img2.png", "labels": {"pred": label_json()}}),
            "is not the path of a sample",
        ),
        // A key naming no sample: refused before anything is written.
        (
            json!({"key": "missing.png", "labels": {"pred": label_json()}}),
            "name no sample",
        ),
    ];
    for (index, (bad, expected)) in cases.into_iter().enumerate() {
        let results = dir.path().join(format!("results{index}"));
        write_part(&results, "pred", &[good.clone(), bad.clone()]);
        let location = ResultsLocation::parse(results.to_str().unwrap()).unwrap();
        let plan = MergePlan::scan(&location, "pred").unwrap();
        let error = store
            .merge_results("pics", &plan, "pred", false)
            .unwrap_err();
        let message = format!(
            "{error}: {}",
            std::error::Error::source(&error)
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        assert!(message.contains(expected), "{bad}: {message}");
        assert!(
            store.info("pics").unwrap().label_fields.is_empty(),
            "{bad}: something was merged"
        );
    }
}

#[test]
fn a_done_marker_that_disowns_its_parts_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    write_part(&results, "pred", &[json!({"key": "a.png", "error": "x"})]);
    let shard = results.join("pred/shard-00000-of-00001");
    fs_err::write(
        shard.join("done.json"),
        json!({"zoo_results": 1, "kind": "labels", "field": "pred", "shard": 0, "shards": 1,
               "chunks": 0, "chunk_size": 100, "samples": 0})
        .to_string(),
    )
    .unwrap();
    let location = ResultsLocation::parse(results.to_str().unwrap()).unwrap();
    let error = MergePlan::scan(&location, "pred").unwrap_err().to_string();
    assert!(error.contains("part 0 exists"), "{error}");
}

#[test]
fn a_huge_shard_count_in_a_folder_name_is_not_counted_up_to() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    fs_err::create_dir_all(results.join("pred/shard-00000-of-99999999999999")).unwrap();
    let location = ResultsLocation::parse(results.to_str().unwrap()).unwrap();
    let error = crate::hostile::within(Duration::from_secs(60), move || {
        MergePlan::scan(&location, "pred").map(|plan| plan.count)
    });
    assert!(error.is_err(), "{error:?}");
    // The largest count allowed is listed, not walked folder by folder.
    fs_err::remove_dir_all(results.join("pred")).unwrap();
    fs_err::create_dir_all(results.join("pred/shard-00007-of-100000")).unwrap();
    let location = ResultsLocation::parse(results.to_str().unwrap()).unwrap();
    let plan = MergePlan::scan(&location, "pred").unwrap();
    assert_eq!(plan.count, 100_000);
    assert_eq!(plan.unfinished().len(), 100_000);
}

/// Runs `work` on a thread and fails the test if it takes over `limit`
/// (the old code blocked forever on a FIFO).
pub(crate) fn within<T: Send + 'static>(
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(work());
    });
    receiver
        .recv_timeout(limit)
        .expect("the read blocked: it should fail at once")
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[cfg(unix)]
#[test]
fn a_fifo_part_does_not_hang_a_retried_shard() {
    // `apply --results` reads each part's header to skip finished chunks.
    let dir = tempfile::tempdir().unwrap();
    images(&dir.path().join("pics"), 3);
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    store.create("pics", &dir.path().join("pics")).unwrap();
    let results = dir.path().join("results");
    let shard = results.join("pred/shard-00000-of-00001");
    fs_err::create_dir_all(&shard).unwrap();
    mkfifo(&shard.join("part-000000.jsonl"));
    let samples = store.shard_samples("pics", Shard::ALL).unwrap();
    let location = ResultsLocation::parse(results.to_str().unwrap()).unwrap();
    let opened = within(Duration::from_secs(60), move || {
        ShardResults::open(
            &location,
            "pred",
            ResultsKind::Labels,
            Shard::ALL,
            10,
            samples,
            false,
        )
        .map(|results| results.todo().len())
        .map_err(|error| error.to_string())
    });
    let error = opened.unwrap_err();
    assert!(error.contains("FIFO"), "{error}");
}

#[cfg(unix)]
#[test]
fn samples_json_that_is_a_fifo_or_dev_zero_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("export");
    fiftyone_folder(&folder, &[], json!([]));
    fs_err::remove_file(folder.join("samples.json")).unwrap();
    mkfifo(&folder.join("samples.json"));
    let db = dir.path().join("db");
    let folder_copy = folder.clone();
    let error = within(Duration::from_secs(60), move || {
        let mut store = Datasets::open(&db).unwrap();
        store
            .import_fiftyone("fo", &folder_copy)
            .map(drop)
            .map_err(|error| error.to_string())
    })
    .unwrap_err();
    assert!(error.contains("FIFO"), "{error}");
    fs_err::remove_file(folder.join("samples.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", folder.join("samples.json")).unwrap();
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    let error = store
        .import_fiftyone("fo", &folder)
        .unwrap_err()
        .to_string();
    assert!(error.contains("character device"), "{error}");
}

#[test]
fn stable_keys_of_imported_absolute_paths_start_with_a_slash() {
    let root = PathBuf::from("/data/export");
    assert_eq!(
        stable_key(&root, Path::new("/media/a.png")).unwrap(),
        b"/media/a.png"
    );
    assert_eq!(
        stable_key(&root, &root.join("data/a.png")).unwrap(),
        b"data/a.png"
    );
}

#[test]
fn samples_json_over_its_cap_is_refused_naming_the_knob() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("export");
    fiftyone_folder(&folder, &[], json!([{"filepath": "data/a.png"}]));
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    let options = ImportOptions::default().with_max_samples_bytes(16);
    let error = store
        .import_fiftyone_with("fo", &folder, options)
        .unwrap_err()
        .to_string();
    assert!(error.contains("ZOO_MAX_IMPORT_BYTES"), "{error}");
    assert!(error.contains("samples.json"), "{error}");
    store.import_fiftyone("fo", &folder).unwrap();
}
