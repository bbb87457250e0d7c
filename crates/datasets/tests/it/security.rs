//! The datasets side of "seal the trust boundary": exact field matching,
//! reserved names, concurrent creation, byte-exact file names, and image
//! reads that neither hang nor grow without bound.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zoo_datasets::{
    DatasetError, Datasets, FileLoader, ImageLimits, LoadError, decode_image, decode_image_within,
};
use zoo_model_core::{EmbedOutcome, ImageLoader, Label, Outcome, Sample};

fn png(path: &Path, width: u32, height: u32) {
    image::RgbImage::from_pixel(width, height, image::Rgb([200, 10, 10]))
        .save_with_format(path, image::ImageFormat::Png)
        .unwrap();
}

fn label(name: &str) -> Option<Label> {
    Some(Label::Classification {
        label: name.into(),
        confidence: Some(0.5),
        logits: None,
    })
}

fn labels(store: &mut Datasets, run: &str, fields: &[&str], samples: &[Sample]) {
    let outcomes: Vec<Outcome> = samples
        .iter()
        .map(|sample| Outcome::Labels {
            sample_id: sample.id,
            fields: fields
                .iter()
                .map(|field| ((*field).to_owned(), label(field)))
                .collect(),
        })
        .collect();
    store
        .write_labels(&store.pin("pics").unwrap(), run, &outcomes)
        .unwrap();
}

#[test]
fn overwrite_of_pred_keeps_predictions_and_other_runs() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dir.path().join("pics");
    fs_err::create_dir_all(&pics).unwrap();
    png(&pics.join("a.png"), 4, 4);
    png(&pics.join("b.png"), 4, 4);
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    store.create("pics", &pics).unwrap();
    let samples = store.pending("pics", "pred", false).unwrap();
    // Run `pred` stored a map prediction: `pred_boxes`, `pred_masks`.
    labels(&mut store, "pred", &["pred_boxes", "pred_masks"], &samples);
    // Other runs whose names `LIKE 'pred_%'` matched: `predictions` (`_`
    // is a one-character wildcard), `pred_old` (a run of its own), and
    // `PRED_x` (LIKE ignores ASCII case).
    for run in ["predictions", "pred_old", "PRED_x"] {
        labels(&mut store, run, &[run], &samples);
    }
    let outcomes: Vec<EmbedOutcome> = samples
        .iter()
        .map(|sample| EmbedOutcome::Vector {
            sample_id: sample.id,
            values: vec![1.0],
        })
        .collect();
    store
        .write_embeddings(&store.pin("pics").unwrap(), "predx", &outcomes)
        .unwrap();

    assert_eq!(store.pending("pics", "pred", true).unwrap().len(), 2);
    let info = store.info("pics").unwrap();
    let fields: Vec<&str> = info.label_fields.keys().map(String::as_str).collect();
    assert_eq!(fields, ["PRED_x", "pred_old", "predictions"]);
    assert_eq!(info.embedding_fields["predx"], 2);
    // The other runs are still finished; `pred` starts over.
    assert!(
        store
            .pending("pics", "predictions", false)
            .unwrap()
            .is_empty()
    );
    assert!(store.pending("pics", "pred_old", false).unwrap().is_empty());
    assert_eq!(store.finished("pics", "pred").unwrap(), 0);
    assert_eq!(store.finished("pics", "predictions").unwrap(), 2);
}

#[test]
fn reserved_field_names_are_refused_by_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dir.path().join("pics");
    fs_err::create_dir_all(&pics).unwrap();
    png(&pics.join("a.png"), 4, 4);
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    store.create("pics", &pics).unwrap();
    for field in [
        "filepath", "", "id", "_id", "tags", "metadata", "_rand", "a.b", "$set",
    ] {
        let err = store.pending("pics", field, false).unwrap_err();
        assert!(
            matches!(err, DatasetError::InvalidField { .. }),
            "{field:?}: {err}"
        );
        assert!(
            store
                .write_embeddings(&store.pin("pics").unwrap(), field, &[])
                .is_err(),
            "{field:?}"
        );
    }
    // A map key from the model cannot name a reserved field either.
    let samples = store.pending("pics", "pred", false).unwrap();
    let outcome = Outcome::Labels {
        sample_id: samples[0].id,
        fields: vec![("_media_type".into(), label("x"))],
    };
    let err = store
        .write_labels(&store.pin("pics").unwrap(), "pred", &[outcome])
        .unwrap_err();
    assert!(err.to_string().contains("_media_type"), "{err}");
    assert_eq!(
        store.finished("pics", "pred").unwrap(),
        0,
        "nothing written"
    );
}

#[test]
fn concurrent_creation_of_one_folder_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dir.path().join("pics");
    fs_err::create_dir_all(&pics).unwrap();
    for index in 0..50 {
        png(&pics.join(format!("{index}.png")), 2, 2);
    }
    let db = dir.path().join("db");
    let barrier = std::sync::Barrier::new(8);
    let names: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    // Each its own connection, as separate processes have,
                    // opened on a fresh database at once; then all index
                    // the folder at once.
                    barrier.wait();
                    let mut store = Datasets::open(&db).unwrap();
                    barrier.wait();
                    store.for_dir(&pics).unwrap()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    assert!(names.iter().all(|name| *name == names[0]), "{names:?}");
    let store = Datasets::open(&db).unwrap();
    let all = store.list().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].samples, 50);
    // Creating a taken name is still a clear error.
    let mut store = store;
    let err = store.create(&names[0], &pics).unwrap_err();
    assert!(matches!(err, DatasetError::Exists(_)), "{err}");
}

#[test]
fn a_folder_name_taken_by_another_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    for folder in [&one, &two] {
        fs_err::create_dir_all(folder).unwrap();
        png(&folder.join("a.png"), 2, 2);
    }
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    let name = fs_err::canonicalize(&one)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // A dataset named like folder `one` but made from folder `two`.
    store.create(&name, &two).unwrap();
    let err = store.for_dir(&one).unwrap_err();
    assert!(matches!(err, DatasetError::OtherRoot { .. }), "{err}");
}

#[cfg(unix)]
fn non_utf8(dir: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    dir.join(std::ffi::OsStr::from_bytes(b"caf\xe9-\xff.png"))
}

#[cfg(unix)]
#[test]
fn non_utf8_file_name_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dir.path().join("pics");
    fs_err::create_dir_all(&pics).unwrap();
    let odd = non_utf8(&pics);
    png(&odd, 3, 2);
    png(&pics.join("plain.png"), 2, 2);
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    store.create("pics", &pics).unwrap();
    let samples = store.pending("pics", "pred", false).unwrap();
    let canonical = fs_err::canonicalize(&pics).unwrap();
    let paths: Vec<&PathBuf> = samples.iter().map(|sample| &sample.filepath).collect();
    assert!(paths.contains(&&non_utf8(&canonical)), "{paths:?}");
    // Found again, byte for byte, and decoded.
    let odd_sample = samples
        .iter()
        .find(|sample| sample.filepath == non_utf8(&canonical))
        .unwrap();
    assert_eq!(decode_image(&odd_sample.filepath).unwrap().width, 3);
    // A failure on it names the same file.
    store
        .write_labels(
            &store.pin("pics").unwrap(),
            "pred",
            &[Outcome::Failed {
                sample_id: odd_sample.id,
                error: "x".into(),
            }],
        )
        .unwrap();
    assert_eq!(
        store.failures("pics", "pred").unwrap()[0].0,
        non_utf8(&canonical)
    );
    // JSON shows the name lossily; the FiftyOne export copies the real file.
    let mut out = Vec::new();
    store.export_jsonl("pics", &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("caf\u{fffd}-\u{fffd}.png"), "{text}");
    let fiftyone = dir.path().join("fo");
    assert_eq!(store.export_fiftyone("pics", &fiftyone).unwrap(), 2);
    let copied: Vec<PathBuf> = fs_err::read_dir(fiftyone.join("data"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().contains("caf"))
        .collect();
    assert_eq!(copied.len(), 1);
    assert_eq!(
        fs_err::read(&copied[0]).unwrap(),
        fs_err::read(&odd).unwrap()
    );
}

/// Runs `work` on a thread and fails the test if it takes over `limit`
/// (the old code blocked forever on a FIFO).
fn within<T: Send + 'static>(limit: Duration, work: impl FnOnce() -> T + Send + 'static) -> T {
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
fn fifo_named_jpg_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dir.path().join("pics");
    fs_err::create_dir_all(&pics).unwrap();
    png(&pics.join("a.png"), 2, 2);
    mkfifo(&pics.join("fifo.jpg"));
    std::os::unix::fs::symlink(pics.join("fifo.jpg"), pics.join("link-to-fifo.jpg")).unwrap();
    let db = dir.path().join("db");
    let (pics_for_thread, db_for_thread) = (pics.clone(), db.clone());
    // Indexing skips both (with a warning).
    let info = within(Duration::from_secs(30), move || {
        let mut store = Datasets::open(&db_for_thread).unwrap();
        store.create("pics", &pics_for_thread).unwrap()
    });
    assert_eq!(info.samples, 1);
    // Loading one fails as that sample's failure, without blocking.
    for name in ["fifo.jpg", "link-to-fifo.jpg"] {
        let sample = Sample {
            id: 1,
            filepath: pics.join(name),
        };
        let error = within(Duration::from_secs(30), move || {
            FileLoader::default().load(&sample).unwrap_err()
        });
        assert!(
            error.contains("is not a regular file but a FIFO"),
            "{error}"
        );
        assert!(error.contains(name), "{error}");
    }
    // The FiftyOne export copies images: one swapped for a FIFO after
    // indexing fails the export at once (the old copy blocked on it).
    fs_err::remove_file(pics.join("a.png")).unwrap();
    mkfifo(&pics.join("a.png"));
    let out = dir.path().join("fo");
    let error = within(Duration::from_secs(30), move || {
        let store = Datasets::open(&db).unwrap();
        store.export_fiftyone("pics", &out).unwrap_err()
    });
    assert!(matches!(error, DatasetError::Export { .. }), "{error}");
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(cause.contains("a.png") && cause.contains("FIFO"), "{cause}");
}

#[cfg(unix)]
#[test]
fn symlink_to_dev_zero_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let pics = dir.path().join("pics");
    fs_err::create_dir_all(&pics).unwrap();
    png(&pics.join("a.png"), 2, 2);
    std::os::unix::fs::symlink("/dev/zero", pics.join("zero.jpg")).unwrap();
    std::os::unix::fs::symlink(pics.join("nowhere"), pics.join("dangling.png")).unwrap();
    std::os::unix::fs::symlink(pics.join("a.png"), pics.join("good-link.png")).unwrap();
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    let info = store.create("pics", &pics).unwrap();
    assert_eq!(info.samples, 2, "a.png and the link to it");
    let started = Instant::now();
    let error = decode_image_within(&pics.join("zero.jpg"), &ImageLimits::default()).unwrap_err();
    assert!(
        matches!(
            error,
            LoadError::NotRegular {
                kind: "a character device",
                ..
            }
        ),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn oversized_image_fails_that_sample() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.png");
    png(&path, 60, 50);
    // 3000 pixels: below the limit, between it and twice it (a warning, as
    // Pillow), and over twice it.
    let limits = |max_pixels| ImageLimits {
        max_pixels,
        max_bytes: ImageLimits::DEFAULT_MAX_BYTES,
    };
    assert_eq!(decode_image_within(&path, &limits(3000)).unwrap().width, 60);
    assert_eq!(
        decode_image_within(&path, &limits(1500)).unwrap().height,
        50
    );
    let error = decode_image_within(&path, &limits(1499)).unwrap_err();
    assert!(
        matches!(error, LoadError::TooManyPixels { pixels: 3000, .. }),
        "{error}"
    );
    let message = FileLoader::new(limits(1000))
        .load(&Sample {
            id: 0,
            filepath: path.clone(),
        })
        .unwrap_err();
    for part in [
        "big.png",
        "60x50 = 3000 pixels",
        "1000 pixels",
        "`ZOO_MAX_IMAGE_PIXELS`",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }
    // A file over the byte cap is refused before it is read.
    let size = fs_err::metadata(&path).unwrap().len();
    let small = ImageLimits {
        max_pixels: ImageLimits::DEFAULT_MAX_PIXELS,
        max_bytes: size - 1,
    };
    let message = FileLoader::new(small)
        .load(&Sample {
            id: 0,
            filepath: path.clone(),
        })
        .unwrap_err();
    assert!(message.contains("`ZOO_MAX_IMAGE_BYTES`"), "{message}");
    assert!(message.contains(&format!("{size} bytes")), "{message}");
}

#[test]
fn a_three_gigabyte_jpg_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.jpg");
    // Sparse: no disk used, and the old code read all 3 GB into memory.
    fs_err::File::create(&path)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let started = Instant::now();
    let error = decode_image(&path).unwrap_err();
    assert!(
        matches!(error, LoadError::TooManyBytes { size, limit, .. } if size == 3 << 30 && limit == 1 << 30),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
