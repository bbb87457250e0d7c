//! A dataset moves FiftyOne -> zoo -> FiftyOne unchanged, and FiftyOne
//! loads what zoo's models wrote (issue 12: labels, export, import).
//!
//! Oracle: real FiftyOne 1.22.1 (`ZOO_TEST_FIFTYONE_PYTHON`, the venv
//! `cargo xtask ci` provisions), one Python process for this file:
//! `dataset.export(DIR, dataset_type=fo.types.FiftyOneDataset)` makes the
//! folder zoo imports, and `fo.Dataset.from_dir` loads zoo's exports.

use serde_json::{Value, json};
use zoo_test_support::{FiftyOne, TestServer};

use crate::apply::classifier_source;
use crate::util::Sandbox;

/// FiftyOne makes a dataset with every label type zoo knows, extra
/// sample fields, tags, metadata and dataset info, and exports it.
const MAKE: &str = r#"
dataset = fo.Dataset()
dataset.info = {"author": "zoo tests"}
dataset.classes = {"det": ["person", "dog"]}
samples = []
for index, path in enumerate(args["images"]):
    sample = fo.Sample(filepath=path, tags=["train"] if index == 0 else [])
    sample["notes"] = "sample %d" % index
    sample["count"] = index
    sample["cls"] = fo.Classification(label="cat", confidence=0.75, logits=np.array([0.5, -1.0, 2.25], np.float32), tags=["checked"])
    sample["empty"] = fo.Classification()
    sample["many"] = fo.Classifications(classifications=[fo.Classification(label="a", confidence=0.5)])
    sample["det"] = fo.Detections(detections=[
        fo.Detection(label="person", bounding_box=[0.1, 0.2, 0.3, 0.4], confidence=0.9,
                     mask=np.array([[True, False, True], [False, True, True]]), iscrowd=0),
        fo.Detection(label="dog", bounding_box=[0.5, 0.5, 0.25, 0.125]),
    ])
    sample["kp"] = fo.Keypoints(keypoints=[fo.Keypoint(label="person", points=[[0.5, 0.25], [0.125, 1.0]], confidence=[0.8, 0.25])])
    sample["seg"] = fo.Segmentation(mask=np.arange(6, dtype=np.uint8).reshape(2, 3))
    sample["emb"] = np.array([1.5, -2.0, 0.1 * index], np.float32)
    samples.append(sample)
dataset.add_samples(samples)
dataset.compute_metadata()
dataset.export(export_dir=args["out"], dataset_type=fo.types.FiftyOneDataset)
dataset.delete()
result = len(samples)
"#;

/// Loads two FiftyOne dataset folders and lists every difference: sample
/// documents (ids, tags, labels with their ids, arrays by dtype and
/// values, metadata, extra fields; files by name), schema, info, classes.
const COMPARE: &str = r#"
import datetime, os
from bson import Binary, ObjectId
import fiftyone.core.utils as fou
def plain(value):
    if isinstance(value, Binary):
        array = fou.deserialize_numpy_array(value)
        return {"dtype": str(array.dtype), "shape": list(array.shape), "values": array.tolist()}
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k not in ("created_at", "last_modified_at", "_dataset_id")}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
def load(path):
    dataset = fo.Dataset.from_dir(path, dataset_type=fo.types.FiftyOneDataset)
    samples = {}
    for sample in dataset:
        d = plain(sample.to_dict())
        d["filepath"] = os.path.basename(d["filepath"])
        samples[d["filepath"]] = d
    out = {
        "samples": samples,
        "schema": {k: str(v) for k, v in dataset.get_field_schema(flat=True).items()},
        "info": dataset.info,
        "classes": dataset.classes,
    }
    dataset.delete()
    return out
a, b = load(args["a"]), load(args["b"])
differences = []
for key in ("schema", "info", "classes"):
    if a[key] != b[key]:
        differences.append({key: [a[key], b[key]]})
if sorted(a["samples"]) != sorted(b["samples"]):
    differences.append({"files": [sorted(a["samples"]), sorted(b["samples"])]})
for name, sample in a["samples"].items():
    other = b["samples"].get(name, {})
    for key in sorted(set(sample) | set(other)):
        if sample.get(key) != other.get(key):
            differences.append({name + ":" + key: [sample.get(key), other.get(key)]})
result = {"differences": differences, "count": len(a["samples"])}
"#;

/// Loads a FiftyOne dataset folder; per file: `pred` (label, confidence,
/// logits) and `emb2`, with the schema of both.
const LOAD_PREDICTIONS: &str = r#"
import os
dataset = fo.Dataset.from_dir(args["dir"], dataset_type=fo.types.FiftyOneDataset)
schema = dataset.get_field_schema()
samples = {}
for sample in dataset:
    pred = sample["pred"]
    samples[os.path.basename(sample.filepath)] = {
        "label": pred.label, "confidence": pred.confidence,
        "logits_dtype": str(pred.logits.dtype), "logits": pred.logits.tolist(),
        "emb2_dtype": str(sample["emb2"].dtype), "emb2": sample["emb2"].tolist(),
    }
result = {
    "pred": str(schema["pred"]), "emb2": str(schema["emb2"]), "samples": samples,
    "pred_info": dataset.get_field("pred").info,
    "pred_description": dataset.get_field("pred").description,
    "emb2_info": dataset.get_field("emb2").info,
}
dataset.delete()
"#;

fn images(dir: &std::path::Path, count: usize) -> Vec<String> {
    fs_err::create_dir_all(dir).unwrap();
    (0..count)
        .map(|index| {
            let path = dir.join(format!("im{index}.png"));
            image::RgbImage::from_fn(40, 30, |x, y| {
                image::Rgb([(x * 5) as u8, (y * 7 + index as u32 * 40) as u8, 90])
            })
            .save(&path)
            .unwrap();
            path.to_str().unwrap().to_owned()
        })
        .collect()
}

/// The JSON lines `zoo datasets export` writes, by file name.
fn jsonl(sandbox: &Sandbox, dataset: &str) -> serde_json::Map<String, Value> {
    let path = sandbox.dir.path().join(format!("{dataset}.jsonl"));
    sandbox.ok(&["datasets", "export", dataset, path.to_str().unwrap()]);
    fs_err::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            let name = std::path::Path::new(value["filepath"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, value)
        })
        .collect()
}

/// FiftyOne's export imports into zoo with its labels, and zoo's export of
/// it loads in FiftyOne with nothing changed: samples, ids, labels, arrays,
/// schema, info.
fn a_dataset_moves_fiftyone_to_zoo_and_back_unchanged(fiftyone: &mut FiftyOne, sandbox: &Sandbox) {
    let root = sandbox.dir.path();
    let paths = images(&root.join("pics"), 3);
    let original = root.join("from-fiftyone");
    let made = fiftyone.run(MAKE, json!({"images": paths, "out": original}));
    assert_eq!(made, 3);
    sandbox.ok(&["datasets", "import", "moved", original.to_str().unwrap()]);
    let info = sandbox.ok(&["datasets", "info", "moved", "--json"]).json();
    assert_eq!(info["samples"], 3);
    for field in ["cls", "empty", "many", "det", "kp", "seg"] {
        assert_eq!(info["label_fields"][field], 3, "{field}: {info}");
    }
    assert_eq!(info["embedding_fields"]["emb"], 3, "{info}");
    // zoo reads every imported label as its own type.
    for (_, sample) in jsonl(sandbox, "moved") {
        for field in ["cls", "empty", "many", "det", "kp", "seg"] {
            zoo_model_core::Label::from_json(&sample[field])
                .unwrap_or_else(|err| panic!("{field}: {err}: {}", sample[field]));
        }
    }
    let back = root.join("back-from-zoo");
    sandbox.ok(&[
        "datasets",
        "export",
        "moved",
        back.to_str().unwrap(),
        "--format",
        "fiftyone",
    ]);
    let compared = fiftyone.run(COMPARE, json!({"a": original, "b": back}));
    assert_eq!(compared["count"], 3);
    assert_eq!(
        compared["differences"],
        json!([]),
        "FiftyOne -> zoo -> FiftyOne changed the dataset"
    );
}

/// zoo's own predictions (a classification with logits) and embeddings,
/// written by `zoo models apply/embed` into the imported dataset, load in
/// FiftyOne with their types and zoo's values.
fn fiftyone_loads_what_zoos_models_wrote(fiftyone: &mut FiftyOne, sandbox: &Sandbox) {
    let server = TestServer::start();
    sandbox.ok(&["models", "register-source", &classifier_source(&server)]);
    sandbox.ok(&[
        "models",
        "apply",
        "acme/tiny-classifier",
        "moved",
        "pred",
        "-l",
    ]);
    sandbox.ok(&["models", "embed", "acme/tiny-classifier", "moved", "emb2"]);
    let out = sandbox.dir.path().join("with-predictions");
    sandbox.ok(&[
        "datasets",
        "export",
        "moved",
        out.to_str().unwrap(),
        "--format",
        "fiftyone",
    ]);
    let loaded = fiftyone.run(LOAD_PREDICTIONS, json!({"dir": out}));
    assert_eq!(
        loaded["pred"],
        "fiftyone.core.fields.EmbeddedDocumentField(fiftyone.core.labels.Classification)"
    );
    assert_eq!(loaded["emb2"], "fiftyone.core.fields.VectorField");
    // Which model made each field reaches FiftyOne as the field's `info`
    // and `description`, equal to what `zoo datasets info` shows.
    let info = sandbox.ok(&["datasets", "info", "moved", "--json"]).json();
    for field in ["pred", "emb2"] {
        let ours = &info["provenance"][field];
        assert_eq!(ours["model"], "acme/tiny-classifier", "{info}");
        assert_eq!(ours["weights_sha256"].as_str().unwrap().len(), 64, "{info}");
        assert_eq!(
            loaded[format!("{field}_info")]["zoo_provenance"],
            *ours,
            "{loaded}"
        );
    }
    let description = loaded["pred_description"].as_str().unwrap();
    assert!(
        description.starts_with("made by zoo ") && description.contains("acme/tiny-classifier"),
        "{description}"
    );
    let zoo = jsonl(sandbox, "moved");
    assert_eq!(loaded["samples"].as_object().unwrap().len(), 3);
    for (name, theirs) in loaded["samples"].as_object().unwrap() {
        let ours = &zoo[name];
        let Ok(zoo_model_core::Label::Classification {
            label,
            confidence,
            logits: Some(logits),
        }) = zoo_model_core::Label::from_json(&ours["pred"])
        else {
            panic!("{name}: {}", ours["pred"])
        };
        assert_eq!(theirs["label"], json!(label), "{name}");
        assert_eq!(theirs["confidence"], json!(confidence), "{name}");
        assert_eq!(theirs["logits_dtype"], "float32");
        // Compared as f32: serde_json's default float parser may be one ulp
        // off in f64, never in f32.
        let floats = |value: &Value| -> Vec<f32> {
            value
                .as_array()
                .unwrap()
                .iter()
                .map(|value| value.as_f64().unwrap() as f32)
                .collect()
        };
        assert_eq!(floats(&theirs["logits"]), logits, "{name}");
        assert_eq!(theirs["emb2_dtype"], "float32");
        assert_eq!(floats(&theirs["emb2"]), floats(&ours["emb2"]), "{name}");
    }
}

#[test]
fn fiftyone_and_zoo_exchange_datasets() {
    let Some(mut fiftyone) = FiftyOne::from_env() else {
        return;
    };
    let sandbox = Sandbox::new();
    a_dataset_moves_fiftyone_to_zoo_and_back_unchanged(&mut fiftyone, &sandbox);
    fiftyone_loads_what_zoos_models_wrote(&mut fiftyone, &sandbox);
}

#[test]
fn import_of_a_folder_that_is_not_fiftyones_is_a_clear_error() {
    let sandbox = Sandbox::new();
    let pics = sandbox.dir.path().join("pics");
    images(&pics, 2);
    let err = sandbox
        .fails(&["datasets", "import", "x", pics.to_str().unwrap()])
        .stderr();
    assert!(err.contains("no `metadata.json`"), "{err}");
    assert!(err.contains("pics"), "{err}");
    // `--format dir` indexes the images, as `zoo datasets create`.
    sandbox.ok(&[
        "datasets",
        "import",
        "x",
        pics.to_str().unwrap(),
        "--format",
        "dir",
    ]);
    assert_eq!(
        sandbox.ok(&["datasets", "info", "x", "--json"]).json()["samples"],
        2
    );
    fs_err::write(pics.join("metadata.json"), "{\"media_type\": \"video\"}").unwrap();
    let err = sandbox
        .fails(&["datasets", "import", "y", pics.to_str().unwrap()])
        .stderr();
    assert!(err.contains("media type is `video`"), "{err}");
    fs_err::write(pics.join("metadata.json"), "{not json").unwrap();
    let err = sandbox
        .fails(&["datasets", "import", "y", pics.to_str().unwrap()])
        .stderr();
    assert!(err.contains("metadata.json` is not valid JSON"), "{err}");
    let err = sandbox
        .fails(&[
            "datasets",
            "import",
            "y",
            pics.to_str().unwrap(),
            "--format",
            "coco",
        ])
        .stderr();
    assert!(err.contains("unknown import format `coco`"), "{err}");
}
