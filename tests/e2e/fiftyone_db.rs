//! Issue 32: `zoo models apply MODEL fiftyone:NAME FIELD` and `embed`
//! write straight into FiftyOne's own database, as FiftyOne's
//! `apply_model` / `compute_embeddings` would.
//!
//! Oracle: real FiftyOne 1.22.1 and its bundled `mongod`
//! (`ZOO_TEST_FIFTYONE_PYTHON`). FiftyOne makes the dataset (its private
//! `mongod`, which zoo finds as FiftyOne's default setup does: by its
//! `database_dir`); after zoo's runs FiftyOne loads, counts and filters
//! zoo's fields, and writes the same label and vector values into a clone
//! with its own `set_values` (its `add_sample_field` / `_expand_schema`):
//! both datasets' documents and schema entries must be equal (up to
//! timestamps and sample ids).

use serde_json::{Value, json};
use zoo_test_support::{FiftyOne, MongoServer, TestServer};

use crate::apply::classifier_source;
use crate::util::Sandbox;

/// FiftyOne makes a persistent image dataset of `images`, the first
/// `tagged` tagged `first`, each with a string field `notes`.
const MAKE: &str = r#"
dataset = fo.Dataset(args["name"])
dataset.persistent = True
samples = []
for index, path in enumerate(args["images"]):
    sample = fo.Sample(filepath=path, tags=["first"] if index < args["tagged"] else [])
    sample["notes"] = "sample %d" % index
    samples.append(sample)
dataset.add_samples(samples)
result = len(dataset)
"#;

/// Which samples (by file name) have `field` set, and each label's id.
const LABELLED: &str = r#"
import os
dataset = fo.load_dataset(args["name"])
dataset.reload()
result = {}
for sample in dataset if dataset.has_sample_field(args["field"]) else []:
    value = sample[args["field"]]
    if value is not None:
        result[os.path.basename(sample.filepath)] = value.id
"#;

/// FiftyOne's view of zoo's fields, and the same values written by
/// FiftyOne into a clone: every difference between the two.
const CHECK: &str = r#"
from bson import Binary
from fiftyone import ViewField as F
import fiftyone.core.odm as foo
import fiftyone.core.utils as fou
dataset = fo.load_dataset(args["name"])
dataset.reload()
schema = {k: str(v) for k, v in dataset.get_field_schema(flat=True).items()}
seen = {
    "count_cls": dataset.count("cls"),
    "count_emb": dataset.count("emb"),
    "labels": sorted(set(dataset.values("cls.label"))),
    "confident": len(dataset.match(F("cls.confidence") > 0)),
    "logits_shapes": sorted({tuple(c.logits.shape) for c in dataset.values("cls") if c is not None}),
    "emb_dims": sorted({len(e) for e in dataset.values("emb") if e is not None}),
    "schema_cls": schema.get("cls"),
    "schema_emb": schema.get("emb"),
    "schema_cls_label": schema.get("cls.label"),
    # Which model made the field: FiftyOne's field metadata.
    "info_cls": dataset.get_field("cls").info,
    "description_cls": dataset.get_field("cls").description,
    "info_emb": dataset.get_field("emb").info,
}
clone = dataset.clone(args["name"] + "-fiftyone")
clone.delete_sample_fields(["cls", "emb"])
clone.set_values("cls", dataset.values("cls"))
clone.set_values("emb", dataset.values("emb"))
db = foo.get_db_conn()
def plain(value):
    # FiftyOne's arrays: `.npy` bytes, zlib-compressed (compared decoded:
    # the compressor's bytes may differ, the array may not).
    if isinstance(value, (Binary, bytes)):
        array = fou.deserialize_numpy_array(value)
        return {"dtype": str(array.dtype), "shape": list(array.shape), "values": array.tolist()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k not in ("created_at", "last_modified_at", "_dataset_id")}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value) if not isinstance(value, (int, float, str, bool, type(None))) else value
def documents(ds):
    out = {}
    for document in db[ds._sample_collection_name].find():
        document.pop("_id")
        out[document["filepath"]] = plain(document)
    return out
def fields(ds):
    document = db.datasets.find_one({"name": ds.name})
    # `info` and `description` hold zoo's provenance (checked apart).
    return {
        f["name"]: {k: v for k, v in plain(f).items() if k not in ("info", "description")}
        for f in document["sample_fields"] if f["name"] in ("cls", "emb")
    }
differences = []
ours, theirs = documents(dataset), documents(clone)
for path in sorted(set(ours) | set(theirs)):
    if ours.get(path) != theirs.get(path):
        differences.append({"sample": path, "zoo": ours.get(path), "fiftyone": theirs.get(path)})
if fields(dataset) != fields(clone):
    differences.append({"schema": {"zoo": fields(dataset), "fiftyone": fields(clone)}})
clone.delete()
seen["differences"] = differences
result = seen
"#;

/// FiftyOne on a `mongod` of this test's own (FiftyOne's bundled one):
/// FiftyOne's private database service is shared by every FiftyOne process
/// of the machine and ends with the test that started it.
fn fiftyone_on_ownmongod() -> Option<(MongoServer, FiftyOne)> {
    let python = FiftyOne::python_from_env()?;
    let mongo = MongoServer::start(&python);
    let fiftyone = FiftyOne::start_on(&python, &mongo.uri);
    Some((mongo, fiftyone))
}

/// `FIFTYONE_DATABASE_DIR` for zoo: the folder `mongod` serves. With no
/// URI, zoo finds the server as FiftyOne's default setup does: the running
/// `mongod` of that folder.
fn database_dir(mongo: &MongoServer) -> (String, String) {
    (
        "FIFTYONE_DATABASE_DIR".to_owned(),
        mongo.dir.path().to_str().unwrap().to_owned(),
    )
}

fn pictures(dir: &std::path::Path, count: usize) -> Vec<String> {
    fs_err::create_dir_all(dir).unwrap();
    (0..count)
        .map(|index| {
            let image = image::RgbImage::from_fn(64 + index as u32 * 8, 48, |x, y| {
                image::Rgb([
                    (x * 5 + index as u32 * 40) as u8,
                    (y * 3) as u8,
                    (x ^ y) as u8,
                ])
            });
            let path = dir.join(format!("img{index}.png"));
            image.save(&path).unwrap();
            path.to_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn apply_and_embed_write_fiftyone_datasets_as_fiftyone_does() {
    let Some((mongo, mut fiftyone)) = fiftyone_on_ownmongod() else {
        return;
    };
    let server = TestServer::start();
    let mut sandbox = Sandbox::new();
    let images = pictures(&sandbox.dir.path().join("pics"), 5);
    let made = fiftyone.run(
        MAKE,
        json!({"name": "zoo-db", "images": images, "tagged": 2}),
    );
    assert_eq!(made, json!(5));
    // No URI: zoo finds the `mongod` FiftyOne started, by its folder.
    sandbox.env.push(database_dir(&mongo));
    sandbox.ok(&["models", "register-source", &classifier_source(&server)]);

    // Only the tagged samples first; then the rest, the first two kept.
    let first = sandbox
        .ok(&[
            "models",
            "apply",
            "acme/tiny-classifier",
            "fiftyone:zoo-db",
            "cls",
            "--store-logits",
            "--tags",
            "first",
            "--json",
        ])
        .json();
    assert_eq!(first["processed"], json!(2), "{first}");
    let labelled = fiftyone.run(LABELLED, json!({"name": "zoo-db", "field": "cls"}));
    assert_eq!(
        labelled.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["img0.png", "img1.png"]
    );
    let rest = sandbox
        .ok(&[
            "models",
            "apply",
            "acme/tiny-classifier",
            "fiftyone:zoo-db",
            "cls",
            "--store-logits",
            "--json",
        ])
        .json();
    assert_eq!(rest["processed"], json!(3), "{rest}");
    assert_eq!(rest["succeeded"], json!(3), "{rest}");
    let after = fiftyone.run(LABELLED, json!({"name": "zoo-db", "field": "cls"}));
    assert_eq!(after.as_object().unwrap().len(), 5);
    for name in ["img0.png", "img1.png"] {
        assert_eq!(after[name], labelled[name], "{name} was labelled again");
    }
    let embedded = sandbox
        .ok(&[
            "models",
            "embed",
            "acme/tiny-classifier",
            "fiftyone:zoo-db",
            "emb",
            "--json",
        ])
        .json();
    assert_eq!(embedded["processed"], json!(5), "{embedded}");
    // Nothing left to do.
    let again = sandbox
        .ok(&[
            "models",
            "embed",
            "acme/tiny-classifier",
            "fiftyone:zoo-db",
            "emb",
            "--json",
        ])
        .json();
    assert_eq!(again["processed"], json!(0), "{again}");

    // Two shards, each writing straight into the database: every sample
    // once.
    let mut processed = 0;
    for shard in ["0/2", "1/2"] {
        let run = sandbox
            .ok(&[
                "models",
                "embed",
                "acme/tiny-classifier",
                "fiftyone:zoo-db",
                "emb_sharded",
                "--shard",
                shard,
                "--json",
            ])
            .json();
        processed += run["processed"].as_u64().unwrap();
    }
    assert_eq!(processed, 5);
    let sharded = fiftyone.run(
        "dataset = fo.load_dataset('zoo-db')\ndataset.reload()\nresult = dataset.count('emb_sharded')",
        json!({}),
    );
    assert_eq!(sharded, json!(5));
    let refused = sandbox.fails(&[
        "models",
        "embed",
        "acme/tiny-classifier",
        "fiftyone:zoo-db",
        "emb_sharded",
        "--shard",
        "0/2",
        "--results",
        "/tmp/parts",
    ]);
    assert!(
        refused.stderr().contains("leave `--results` out"),
        "{}",
        refused.stderr()
    );

    let seen = fiftyone.run(CHECK, json!({"name": "zoo-db"}));
    assert_eq!(seen["differences"], json!([]), "{seen:#}");
    for field in ["cls", "emb"] {
        let provenance = &seen[format!("info_{field}")]["zoo_provenance"];
        assert_eq!(provenance["model"], "acme/tiny-classifier", "{seen:#}");
        assert_eq!(provenance["runs"], "native", "{seen:#}");
        assert_eq!(
            provenance["weights_sha256"].as_str().map(str::len),
            Some(64),
            "{seen:#}"
        );
    }
    assert!(
        seen["description_cls"]
            .as_str()
            .is_some_and(|line| line.starts_with("made by zoo ")),
        "{seen:#}"
    );
    assert_eq!(seen["count_cls"], json!(5), "{seen}");
    assert_eq!(seen["count_emb"], json!(5), "{seen}");
    assert_eq!(seen["confident"], json!(5), "{seen}");
    assert_eq!(seen["logits_shapes"], json!([[3]]), "{seen}");
    assert_eq!(
        seen["schema_cls"],
        json!("fiftyone.core.fields.EmbeddedDocumentField(fiftyone.core.labels.Classification)"),
        "{seen}"
    );
    assert!(
        seen["schema_emb"].as_str().unwrap().contains("VectorField"),
        "{seen}"
    );
    assert!(
        seen["schema_cls_label"]
            .as_str()
            .unwrap()
            .contains("StringField"),
        "{seen}"
    );
    let labels: Vec<Value> = seen["labels"].as_array().unwrap().clone();
    assert!(
        labels
            .iter()
            .all(|label| ["red", "green", "blue"].contains(&label.as_str().unwrap())),
        "{seen}"
    );

    // `zoo datasets info fiftyone:NAME`: its samples and fields' types.
    let info = sandbox
        .ok(&["datasets", "info", "fiftyone:zoo-db", "--json"])
        .json();
    assert_eq!(info["samples"], json!(5), "{info}");
    assert_eq!(
        info["fields"]["cls"],
        json!("fiftyone.core.labels.Classification"),
        "{info}"
    );
    assert_eq!(
        info["fields"]["emb"],
        json!("fiftyone.core.fields.VectorField"),
        "{info}"
    );
    assert_eq!(
        info["fields"]["notes"],
        json!("fiftyone.core.fields.StringField"),
        "{info}"
    );
    let text = sandbox
        .ok(&["datasets", "info", "fiftyone:zoo-db"])
        .stdout();
    assert!(text.contains("samples:  5"), "{text}");
    assert!(
        text.contains("field     cls: fiftyone.core.labels.Classification"),
        "{text}"
    );

    let listed = sandbox
        .ok(&["datasets", "list", "--fiftyone", "--json"])
        .json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .contains(&json!({"name": "fiftyone:zoo-db", "samples": 5, "media_type": "image"})),
        "{listed}"
    );
    let table = sandbox.ok(&["datasets", "list", "--fiftyone"]).stdout();
    assert!(table.contains("fiftyone:zoo-db"), "{table}");

    // A field of another type is refused, naming both types.
    let wrong = sandbox.fails(&[
        "models",
        "apply",
        "acme/tiny-classifier",
        "fiftyone:zoo-db",
        "notes",
    ]);
    let stderr = wrong.stderr();
    assert!(
        stderr.contains("StringField") && stderr.contains("labels"),
        "{stderr}"
    );
    let wrong = sandbox.fails(&[
        "models",
        "embed",
        "acme/tiny-classifier",
        "fiftyone:zoo-db",
        "cls",
    ]);
    let stderr = wrong.stderr();
    assert!(
        stderr.contains("Classification") && stderr.contains("VectorField"),
        "{stderr}"
    );
    // An unknown dataset names the ones there are.
    let missing = sandbox.fails(&[
        "models",
        "apply",
        "acme/tiny-classifier",
        "fiftyone:nope",
        "cls",
    ]);
    assert!(
        missing.stderr().contains("`zoo-db`"),
        "{}",
        missing.stderr()
    );
}

/// Makes a database that FiftyOne 0.21.0 would have written, and an empty
/// one, beside FiftyOne's own.
const OTHER_DATABASES: &str = r#"
import fiftyone.core.odm as foo
client = foo.get_db_conn().client
client["zoo-old"].config.insert_one({"version": "0.21.0", "type": "fiftyone"})
client["zoo-empty"].things.insert_one({"x": 1})
result = True
"#;

#[test]
fn other_versions_other_databases_and_no_database_are_refused_clearly() {
    let Some((mongo, mut fiftyone)) = fiftyone_on_ownmongod() else {
        return;
    };
    fiftyone.run(OTHER_DATABASES, json!({}));
    let server = TestServer::start();
    let mut sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &classifier_source(&server)]);
    sandbox.env.push(database_dir(&mongo));
    sandbox
        .env
        .push(("FIFTYONE_DATABASE_NAME".into(), "zoo-old".into()));
    let old = sandbox.fails(&[
        "models",
        "apply",
        "acme/tiny-classifier",
        "fiftyone:any",
        "cls",
    ]);
    let stderr = old.stderr();
    assert!(
        stderr.contains("0.21.0") && stderr.contains("1.22.1"),
        "{stderr}"
    );
    sandbox.env.pop();
    sandbox
        .env
        .push(("FIFTYONE_DATABASE_NAME".into(), "zoo-empty".into()));
    let empty = sandbox.fails(&[
        "models",
        "apply",
        "acme/tiny-classifier",
        "fiftyone:any",
        "cls",
    ]);
    assert!(
        empty.stderr().contains("is not FiftyOne's"),
        "{}",
        empty.stderr()
    );
    sandbox.env.clear();
    sandbox
        .env
        .push(("FIFTYONE_DATABASE_DIR".into(), "/nonexistent/zoo-db".into()));
    let none = sandbox.fails(&[
        "models",
        "apply",
        "acme/tiny-classifier",
        "fiftyone:any",
        "cls",
    ]);
    let stderr = none.stderr();
    assert!(
        stderr.contains("no FiftyOne database") && stderr.contains("FIFTYONE_DATABASE_URI"),
        "{stderr}"
    );
}

#[test]
fn a_killed_run_into_fiftyone_resumes_and_labels_each_sample_once() {
    let Some((mongo, mut fiftyone)) = fiftyone_on_ownmongod() else {
        return;
    };
    let server = TestServer::start();
    let mut sandbox = Sandbox::new();
    let images = pictures(&sandbox.dir.path().join("many"), 60);
    fiftyone.run(
        MAKE,
        json!({"name": "zoo-kill", "images": images, "tagged": 0}),
    );
    sandbox.env.push(database_dir(&mongo));
    sandbox.ok(&["models", "register-source", &classifier_source(&server)]);
    let mut child = sandbox
        .command(&[
            "models",
            "apply",
            "acme/tiny-classifier",
            "fiftyone:zoo-kill",
            "cls",
            "--batch-size",
            "2",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let before = loop {
        let labelled = fiftyone.run(LABELLED, json!({"name": "zoo-kill", "field": "cls"}));
        if labelled.as_object().unwrap().len() >= 6 {
            // SIGKILL: no chance to finish the batch in flight.
            child.kill().unwrap();
            child.wait().unwrap();
            break fiftyone.run(LABELLED, json!({"name": "zoo-kill", "field": "cls"}));
        }
        assert!(
            child.try_wait().unwrap().is_none() && started.elapsed().as_secs() < 120,
            "the run ended before it could be killed"
        );
    };
    let killed_at = before.as_object().unwrap().len();
    assert!((6..60).contains(&killed_at), "killed at {killed_at}");
    let resumed = sandbox
        .ok(&[
            "models",
            "apply",
            "acme/tiny-classifier",
            "fiftyone:zoo-kill",
            "cls",
            "--json",
        ])
        .json();
    assert_eq!(resumed["processed"], json!(60 - killed_at), "{resumed}");
    let after = fiftyone.run(LABELLED, json!({"name": "zoo-kill", "field": "cls"}));
    assert_eq!(after.as_object().unwrap().len(), 60);
    for (name, id) in before.as_object().unwrap() {
        assert_eq!(&after[name], id, "{name} was labelled twice");
    }
}
