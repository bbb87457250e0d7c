//! The SQLite store: indexing, batches, resume, overwrite, export.
#![allow(clippy::unwrap_used)]

use zoo_datasets::{Datasets, decode_image};
use zoo_model_core::{EmbedOutcome, Label, Outcome};

pub(crate) fn images(dir: &std::path::Path, count: usize) {
    fs_err::create_dir_all(dir.join("nested")).unwrap();
    for index in 0..count {
        let image = image::RgbImage::from_pixel(8, 6, image::Rgb([index as u8 * 10, 20, 30]));
        let path = if index % 2 == 0 {
            dir.join(format!("img{index}.png"))
        } else {
            dir.join(format!("nested/img{index}.jpg"))
        };
        image.save(&path).unwrap();
    }
    fs_err::write(dir.join("notes.txt"), "not an image").unwrap();
    fs_err::write(dir.join("broken.png"), "not a png either").unwrap();
}

fn label(name: &str) -> Option<Label> {
    Some(Label::Classification {
        label: name.into(),
        confidence: Some(0.5),
        logits: None,
    })
}

#[test]
fn create_apply_in_batches_resume_and_export() {
    let dir = tempfile::tempdir().unwrap();
    images(&dir.path().join("pics"), 4);
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    let info = store.create("pics", &dir.path().join("pics")).unwrap();
    assert_eq!(
        info.samples, 5,
        "four images and one broken png; the txt is not indexed"
    );
    assert!(store.create("pics", &dir.path().join("pics")).is_err());

    let pending = store.pending("pics", "pred", false).unwrap();
    assert_eq!(pending.len(), 5);
    assert!(
        decode_image(&pending[0].filepath).is_err(),
        "broken.png sorts first"
    );
    // First batch: two samples, one failed.
    store
        .write_labels(
            &store.pin("pics").unwrap(),
            "pred",
            &[
                Outcome::Failed {
                    sample_id: pending[0].id,
                    error: "cannot decode".into(),
                },
                Outcome::Labels {
                    sample_id: pending[1].id,
                    fields: vec![("pred".into(), label("a"))],
                },
            ],
        )
        .unwrap();
    // Resume: the failure is retried, the finished one is not.
    let rest = store.pending("pics", "pred", false).unwrap();
    assert_eq!(rest.len(), 4);
    assert_eq!(rest[0].id, pending[0].id);
    let outcomes: Vec<Outcome> = rest[1..]
        .iter()
        .map(|sample| Outcome::Labels {
            sample_id: sample.id,
            fields: vec![("pred".into(), label("b"))],
        })
        .collect();
    store
        .write_labels(&store.pin("pics").unwrap(), "pred", &outcomes)
        .unwrap();
    let info = store.info("pics").unwrap();
    assert_eq!(info.label_fields["pred"], 4);
    assert_eq!(info.failures["pred"], 1);
    assert_eq!(
        store.failures("pics", "pred").unwrap()[0].1,
        "cannot decode"
    );

    let mut out = Vec::new();
    assert_eq!(store.export_jsonl("pics", &mut out).unwrap(), 5);
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(lines[1]["filepath"].as_str().unwrap().starts_with('/'));
    let mut pred = lines[1]["pred"].clone();
    let id = pred.as_object_mut().unwrap().shift_remove("_id").unwrap();
    assert_eq!(id["$oid"].as_str().unwrap().len(), 24);
    assert_eq!(
        pred,
        serde_json::json!({"_cls": "Classification", "tags": [], "label": "a", "confidence": 0.5})
    );

    // Overwrite clears the field and its map keys.
    assert_eq!(store.pending("pics", "pred", true).unwrap().len(), 5);
    assert!(store.info("pics").unwrap().label_fields.is_empty());

    let fiftyone = dir.path().join("fo");
    assert_eq!(store.export_fiftyone("pics", &fiftyone).unwrap(), 5);
    let samples: serde_json::Value =
        serde_json::from_slice(&fs_err::read(fiftyone.join("samples.json")).unwrap()).unwrap();
    let first = samples["samples"][1]["filepath"].as_str().unwrap();
    assert!(fiftyone.join(first).is_file(), "{first}");

    store.delete("pics").unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(
        store
            .info("pics")
            .unwrap_err()
            .to_string()
            .contains("zoo datasets list")
    );
}

#[test]
fn embeddings_export_as_npy() {
    let dir = tempfile::tempdir().unwrap();
    images(&dir.path().join("pics"), 2);
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    let name = store.for_dir(&dir.path().join("pics")).unwrap();
    assert_eq!(
        store.for_dir(&dir.path().join("pics")).unwrap(),
        name,
        "reused, not recreated"
    );
    let samples = store.pending(&name, "emb", false).unwrap();
    let outcomes: Vec<EmbedOutcome> = samples
        .iter()
        .map(|sample| EmbedOutcome::Vector {
            sample_id: sample.id,
            values: vec![sample.id as f32, 0.5, -1.0],
        })
        .collect();
    store
        .write_embeddings(&store.pin(&name).unwrap(), "emb", &outcomes)
        .unwrap();
    let path = dir.path().join("emb.npy");
    assert_eq!(
        store.export_embeddings_npy(&name, "emb", &path).unwrap(),
        (3, 3)
    );
    let bytes = fs_err::read(&path).unwrap();
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("'shape': (3, 3)"));
    assert_eq!(&bytes[bytes.len() - 4..], &(-1.0f32).to_le_bytes());
    assert!(store.export_embeddings_npy(&name, "nope", &path).is_err());
}

mod fiftyone;
mod hostile;
mod jpeg;
mod pillow;
mod properties;
mod results;
mod security;
