//! zoo's labels and FiftyOne dataset folders, checked by real FiftyOne
//! 1.22.1 (`ZOO_TEST_FIFTYONE_PYTHON`, provisioned by `cargo xtask ci`).
//!
//! Oracle: `fiftyone.core.labels.Label.from_dict` / `to_dict(extended=True)`
//! and `fo.Dataset.from_dir(DIR, dataset_type=fo.types.FiftyOneDataset)`.

use serde_json::{Value, json};
use zoo_datasets::{Datasets, ImportOptions};
use zoo_model_core::{
    Detection, EmbedOutcome, Keypoint, Label, Outcome, SegmentationMask, array_from_json,
};
use zoo_test_support::FiftyOne;

/// One label of every type zoo produces.
fn every_label() -> Vec<(&'static str, Label)> {
    vec![
        (
            "cls",
            Label::Classification {
                label: "cat".into(),
                confidence: Some(0.75),
                logits: Some(vec![0.5, -1.0, 2.25]),
            },
        ),
        ("empty", Label::EmptyClassification),
        (
            "many",
            Label::Classifications(vec![
                Label::Classification {
                    label: "a".into(),
                    confidence: Some(0.5),
                    logits: None,
                },
                Label::Classification {
                    label: "b".into(),
                    confidence: None,
                    logits: None,
                },
            ]),
        ),
        (
            "det",
            Label::Detections(vec![
                Detection {
                    label: "person".into(),
                    bounding_box: [0.1, 0.2, 0.3, 0.4],
                    confidence: Some(0.9),
                    mask: Some((2, 3, vec![1, 0, 1, 0, 1, 1])),
                },
                Detection {
                    label: "dog".into(),
                    bounding_box: [0.5, 0.5, 0.25, 0.125],
                    confidence: None,
                    mask: None,
                },
            ]),
        ),
        (
            "kp",
            Label::Keypoints(vec![Keypoint {
                label: Some("person".into()),
                points: vec![[0.5, 0.25], [0.125, 1.0]],
                confidence: Some(vec![0.8, 0.25]),
            }]),
        ),
        (
            "seg",
            Label::Segmentation {
                height: 2,
                width: 3,
                mask: SegmentationMask::U8(vec![0, 1, 2, 3, 4, 5]),
            },
        ),
        (
            "seg16",
            Label::Segmentation {
                height: 1,
                width: 2,
                mask: SegmentationMask::U16(vec![300, 7]),
            },
        ),
    ]
}

/// Every label's JSON through `from_dict` and back; FiftyOne's answer and
/// zoo's reading of it.
const ROUND_TRIP: &str = r#"
import fiftyone.core.labels as fol
out = []
for d in args["labels"]:
    d = json_util.loads(json.dumps(d))
    label = fol.Label.from_dict(d) if "_cls" in d else None
    out.append(label.to_dict(extended=True))
result = out
"#;

/// Loads a FiftyOne dataset folder and returns, per sample (by file name),
/// every field as `to_dict(extended=True)` (arrays decoded to lists, with
/// their dtype) and the schema's types.
const LOAD: &str = r#"
import os
def plain(value):
    if isinstance(value, np.ndarray):
        return {"dtype": str(value.dtype), "shape": list(value.shape), "values": value.tolist()}
    if isinstance(value, fo.core.odm.DynamicEmbeddedDocument):
        d = {"_cls": type(value).__name__}
        for k in value.field_names:
            v = getattr(value, k)
            if v is not None:
                d[k] = plain(v)
        return d
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
name = args.get("name") or None
dataset = fo.Dataset.from_dir(args["dir"], dataset_type=fo.types.FiftyOneDataset, name=name)
schema = {k: str(v) for k, v in dataset.get_field_schema().items()}
samples = {}
for sample in dataset:
    fields = {}
    for key in sample.field_names:
        if key in ("id", "filepath", "created_at", "last_modified_at", "metadata"):
            continue
        fields[key] = plain(sample[key])
    samples[os.path.basename(sample.filepath)] = fields
result = {"schema": schema, "samples": samples, "count": len(dataset)}
dataset.delete()
"#;

/// `value` with each `{"$binary": ...}` array replaced by its dtype, shape
/// and bytes: FiftyOne compresses with zlib, zoo with another deflate
/// encoder, so the base64 differs while the `.npy` inside is the same.
fn decoded(value: &Value) -> Value {
    match value {
        Value::Object(object) if object.contains_key("$binary") => {
            let array = array_from_json(value).unwrap();
            json!({"dtype": array.dtype, "shape": array.shape, "data": array.data})
        }
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(key, value)| (key.clone(), decoded(value)))
                .collect(),
        ),
        Value::Array(values) => Value::Array(values.iter().map(decoded).collect()),
        other => other.clone(),
    }
}

fn image(path: &std::path::Path) {
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(4, 3, image::Rgb([10, 20, 30]))
        .save(path)
        .unwrap();
}

/// The label's JSON as FiftyOne's `from_dict`/`to_dict` gives it back is
/// the JSON zoo wrote (ids included), and zoo reads FiftyOne's answer as
/// the label it started from.
fn labels_round_trip_through_fiftyone(fiftyone: &mut FiftyOne) {
    let labels = every_label();
    let written: Vec<Value> = labels.iter().map(|(_, label)| label.to_json()).collect();
    let answers = fiftyone.run(ROUND_TRIP, json!({"labels": written}));
    for (((field, label), written), answer) in
        labels.iter().zip(&written).zip(answers.as_array().unwrap())
    {
        assert_eq!(
            decoded(answer),
            decoded(written),
            "{field}: FiftyOne's to_dict differs"
        );
        assert_eq!(&Label::from_json(answer).unwrap(), label, "{field}");
    }
}

/// FiftyOne loads zoo's export of every label type and embeddings, with
/// the same values and every field's type.
fn fiftyone_loads_zoos_export(fiftyone: &mut FiftyOne) {
    let dir = tempfile::tempdir().unwrap();
    image(&dir.path().join("pics/a.png"));
    image(&dir.path().join("pics/b.png"));
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    store.create("pics", &dir.path().join("pics")).unwrap();
    let samples = store.pending("pics", "run", false).unwrap();
    let labels = every_label();
    store
        .write_labels(
            &store.pin("pics").unwrap(),
            "run",
            &[Outcome::Labels {
                sample_id: samples[0].id,
                fields: labels
                    .iter()
                    .map(|(field, label)| ((*field).to_owned(), Some(label.clone())))
                    .collect(),
            }],
        )
        .unwrap();
    store
        .write_embeddings(
            &store.pin("pics").unwrap(),
            "emb",
            &[
                EmbedOutcome::Vector {
                    sample_id: samples[0].id,
                    values: vec![1.5, -2.0, 0.1],
                },
                EmbedOutcome::Vector {
                    sample_id: samples[1].id,
                    values: vec![0.0, 3.0, f32::MIN_POSITIVE],
                },
            ],
        )
        .unwrap();
    let out = dir.path().join("export");
    assert_eq!(store.export_fiftyone("pics", &out).unwrap(), 2);
    let loaded = fiftyone.run(LOAD, json!({"dir": out}));
    assert_eq!(loaded["count"], 2);
    let schema = &loaded["schema"];
    assert_eq!(schema["emb"], "fiftyone.core.fields.VectorField");
    for (field, class) in [
        ("cls", "Classification"),
        ("empty", "Classification"),
        ("many", "Classifications"),
        ("det", "Detections"),
        ("kp", "Keypoints"),
        ("seg", "Segmentation"),
    ] {
        assert_eq!(
            schema[field],
            format!("fiftyone.core.fields.EmbeddedDocumentField(fiftyone.core.labels.{class})"),
            "{field}"
        );
    }
    let a = &loaded["samples"]["a.png"];
    assert_eq!(a["emb"]["dtype"], "float32");
    assert_eq!(a["emb"]["values"], json!([1.5, -2.0, 0.10000000149011612]));
    assert_eq!(
        loaded["samples"]["b.png"]["emb"]["values"][2],
        json!(f64::from(f32::MIN_POSITIVE))
    );
    assert_eq!(a["cls"]["label"], "cat");
    assert_eq!(a["cls"]["confidence"], 0.75);
    assert_eq!(
        a["cls"]["logits"],
        json!({"dtype": "float32", "shape": [3], "values": [0.5, -1.0, 2.25]})
    );
    assert_eq!(a["empty"]["_cls"], "Classification");
    assert!(a["empty"].get("label").is_none(), "{}", a["empty"]);
    assert_eq!(a["many"]["classifications"][1]["label"], "b");
    let person = &a["det"]["detections"][0];
    assert_eq!(person["bounding_box"], json!([0.1, 0.2, 0.3, 0.4]));
    assert_eq!(person["confidence"], 0.9);
    assert_eq!(
        person["mask"],
        json!({"dtype": "bool", "shape": [2, 3], "values": [[true, false, true], [false, true, true]]})
    );
    assert_eq!(person["attributes"], json!({}));
    assert_eq!(
        a["kp"]["keypoints"][0]["points"],
        json!([[0.5, 0.25], [0.125, 1.0]])
    );
    assert_eq!(a["kp"]["keypoints"][0]["confidence"], json!([0.8, 0.25]));
    assert_eq!(
        a["seg"]["mask"],
        json!({"dtype": "uint8", "shape": [2, 3], "values": [[0, 1, 2], [3, 4, 5]]})
    );
    assert_eq!(
        a["seg16"]["mask"],
        json!({"dtype": "uint16", "shape": [1, 2], "values": [[300, 7]]})
    );
    // The ids zoo gave its labels are the ids FiftyOne shows.
    let exported: Value =
        serde_json::from_slice(&fs_err::read(out.join("samples.json")).unwrap()).unwrap();
    let first = &exported["samples"][0];
    assert_eq!(first["cls"]["_id"]["$oid"], a["cls"]["id"]);
    assert_eq!(first["_media_type"], "image");
    // What FiftyOne's exporter makes for fields that may hold mask files.
    assert!(out.join("fields/det.detections").is_dir());
    assert!(out.join("fields/seg").is_dir());
}

#[test]
fn fiftyone_reads_zoos_labels_and_export() {
    let Some(mut fiftyone) = FiftyOne::from_env() else {
        return;
    };
    labels_round_trip_through_fiftyone(&mut fiftyone);
    fiftyone_loads_zoos_export(&mut fiftyone);
}

/// A hand-written FiftyOne folder with `samples` and `metadata`.
fn folder(dir: &std::path::Path, metadata: &Value, samples: &Value) {
    fs_err::create_dir_all(dir).unwrap();
    fs_err::write(dir.join("metadata.json"), metadata.to_string()).unwrap();
    fs_err::write(
        dir.join("samples.json"),
        json!({"samples": samples}).to_string(),
    )
    .unwrap();
}

#[test]
fn hostile_fiftyone_folders_are_clear_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Datasets::open(&dir.path().join("db")).unwrap();
    let metadata = json!({"media_type": "image", "sample_fields": "not a list"});
    let cases = [
        (json!([1]), "sample 0 is not a JSON object"),
        (json!([{"tags": []}]), "sample 0 has no `filepath`"),
        (
            json!([{"filepath": "data/a.png"}, {"filepath": "data/a.png"}]),
            "two samples have the file",
        ),
    ];
    for (index, (samples, expected)) in cases.into_iter().enumerate() {
        let folder_path = dir.path().join(format!("case{index}"));
        folder(&folder_path, &metadata, &samples);
        let error = store
            .import_fiftyone("hostile", &folder_path)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error}");
        assert!(error.contains(&format!("case{index}")), "{error}");
        assert!(
            !store.exists("hostile"),
            "nothing is left of a failed import"
        );
    }
    // Keys that cannot be zoo fields (`_rand`, a reserved name, a label
    // under a bad name) are kept as they are, not refused; Polylines are
    // labels zoo models; Python's `NaN` reads as null.
    let odd = dir.path().join("odd");
    fs_err::create_dir_all(&odd).unwrap();
    fs_err::write(odd.join("metadata.json"), r#"{"media_type": "image"}"#).unwrap();
    fs_err::write(
        odd.join("samples.json"),
        r#"{"samples": [{"filepath": "/abs/a.png", "_rand": 0.9995, "a.b": {"_cls": "Classification", "label": "x"}, "poly": {"_cls": "Polylines", "polylines": []}, "kp": {"_cls": "Keypoints", "keypoints": [{"_cls": "Keypoint", "points": [[NaN, NaN]]}]}}]}"#,
    )
    .unwrap();
    let info = store
        .import_fiftyone_with("odd", &odd, ImportOptions::allow_outside_paths(true))
        .unwrap();
    assert_eq!(info.samples, 1);
    assert_eq!(info.label_fields.keys().collect::<Vec<_>>(), ["kp", "poly"]);
    let out = dir.path().join("odd-out");
    store.export_fiftyone("odd", &out).unwrap_err();
    let exported = store.samples_json("odd").unwrap();
    assert_eq!(exported[0]["filepath"], "/abs/a.png");
    assert_eq!(
        exported[0]["kp"]["keypoints"][0]["points"],
        json!([[null, null]])
    );
}
