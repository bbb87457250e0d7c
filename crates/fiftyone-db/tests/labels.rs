//! Every label type zoo writes, written into FiftyOne's database by this
//! crate, equals what FiftyOne 1.22.1's own `set_values` writes for the
//! same labels: documents (label ids aside) and `sample_fields` entries.
//!
//! Oracle: real FiftyOne and its bundled `mongod`
//! (`ZOO_TEST_FIFTYONE_PYTHON`). FiftyOne makes the labels (a detector's
//! with masks, a segmenter's, keypoints, heatmaps, polylines, regressions,
//! classifications with logits) and hands them over as its extended JSON;
//! zoo reads them as any label and writes them through
//! `Dataset::write_labels`.

use serde_json::{Value, json};
use zoo_fiftyone_db::{Connection, FiftyOne, ResultKind};
use zoo_model_core::{EmbedOutcome, Label, Outcome};
use zoo_test_support::{FiftyOne as Driver, MongoServer};

/// FiftyOne makes a dataset of two samples and, for each, one label per
/// field; answers where its database is and the labels as extended JSON.
const MAKE: &str = r#"
import fiftyone.core.odm as foo
rng = np.random.default_rng(5)
dataset = fo.Dataset(args["name"])
dataset.add_samples([fo.Sample(filepath="/data/a.jpg", tags=["x"]), fo.Sample(filepath="/data/b.png")])
def labels(i):
    return {
        "cls": fo.Classification(label="cat", confidence=0.25 + i, logits=rng.standard_normal(4).astype(np.float32)),
        "many": fo.Classifications(classifications=[fo.Classification(label="a", confidence=0.5), fo.Classification(label="b")]),
        "det": fo.Detections(detections=[
            fo.Detection(label="person", bounding_box=[0.1, 0.2, 0.3, 0.4], confidence=0.875, mask=rng.random((3, 5)) > 0.5),
            fo.Detection(label="dog", bounding_box=[0.5, 0.5, 0.25, 0.125], confidence=0.5),
        ]),
        "kp": fo.Keypoints(keypoints=[fo.Keypoint(label="person", points=[[0.5, 0.25], [0.125, 1.0]], confidence=[0.75, 0.5])]),
        "seg": fo.Segmentation(mask=rng.integers(0, 21, (4, 6)).astype(np.uint8)),
        "heat": fo.Heatmap(map=rng.random((3, 4)).astype(np.float32), range=[0.0, 1.0]),
        "poly": fo.Polylines(polylines=[fo.Polyline(label="ship", points=[[[0.1, 0.2], [0.3, 0.2], [0.3, 0.4]]], confidence=0.625, closed=True, filled=True)]),
        "reg": fo.Regression(value=2.5 * i, confidence=0.125),
    }
made = [labels(i) for i in range(2)]
# Kept in the driver for `COMPARE` (a dataset's `info` cannot hold labels).
fo._zoo_test_made = made
host, port = foo.get_db_conn().client.address
result = {
    "uri": "mongodb://%s:%d" % (host, port),
    "database": fo.config.database_name,
    "labels": [{k: json.loads(json_util.dumps(v.to_dict())) for k, v in m.items()} for m in made],
}
"#;

/// FiftyOne writes its own labels (kept by `MAKE`) into a clone with
/// `set_values`; every difference with zoo's documents and schema entries.
const COMPARE: &str = r#"
from bson import Binary
import fiftyone.core.odm as foo
import fiftyone.core.utils as fou
dataset = fo.load_dataset(args["name"])
dataset.reload()
fields = args["fields"]
clone = dataset.clone(args["name"] + "-fiftyone")
clone.delete_sample_fields([f for f in fields if clone.has_sample_field(f)])
made = fo._zoo_test_made
for field in fields:
    if field == "emb":
        clone.set_values(field, [np.array([0.5, -1.0, 2.0], np.float32), np.array([3.0, 0.0, -0.25], np.float32)])
    else:
        clone.set_values(field, [m[field] for m in made])
db = foo.get_db_conn()
def plain(value):
    if isinstance(value, (Binary, bytes)):
        array = fou.deserialize_numpy_array(value)
        return {"dtype": str(array.dtype), "shape": list(array.shape), "values": array.tolist()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k not in ("_id", "created_at", "last_modified_at", "_dataset_id")}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
def documents(ds):
    return {d["filepath"]: plain(d) for d in db[ds._sample_collection_name].find()}
def schema(ds):
    document = db.datasets.find_one({"name": ds.name})
    return {f["name"]: plain(f) for f in document["sample_fields"] if f["name"] in fields}
differences = []
ours, theirs = documents(dataset), documents(clone)
for path in sorted(set(ours) | set(theirs)):
    if ours.get(path) != theirs.get(path):
        differences.append({"sample": path, "zoo": ours.get(path), "fiftyone": theirs.get(path)})
a, b = schema(dataset), schema(clone)
for field in fields:
    if a.get(field) != b.get(field):
        differences.append({"field": field, "zoo": a.get(field), "fiftyone": b.get(field)})
loaded = {field: dataset.count(field) for field in fields}
clone.delete()
result = {"differences": differences, "counts": loaded}
"#;

#[test]
fn every_label_type_is_written_as_fiftyone_writes_it() {
    let Some(python) = Driver::python_from_env() else {
        return;
    };
    let mongo = MongoServer::start(&python);
    let mut driver = Driver::start_on(&python, &mongo.uri);
    let made = driver.run(MAKE, json!({"name": "zoo-labels"}));
    let connection = Connection::new(
        made["uri"].as_str().unwrap(),
        made["database"].as_str().unwrap(),
    );
    let fiftyone = FiftyOne::connect(connection).unwrap();
    let mut dataset = fiftyone.dataset("zoo-labels").unwrap();
    let pending = dataset
        .pending("cls", ResultKind::Labels, false, &[])
        .unwrap();
    assert_eq!(pending.len(), 2);
    assert!(pending[0].filepath.ends_with("a.jpg"));
    let outcomes: Vec<Outcome> = pending
        .iter()
        .zip(made["labels"].as_array().unwrap())
        .map(|(sample, labels)| Outcome::Labels {
            sample_id: sample.id,
            fields: labels
                .as_object()
                .unwrap()
                .iter()
                .map(|(field, value)| (field.clone(), Some(Label::from_json(value).unwrap())))
                .collect(),
        })
        .collect();
    dataset.write_labels(&outcomes).unwrap();
    let embed = dataset
        .pending("emb", ResultKind::Embeddings, false, &[])
        .unwrap();
    let vectors = [vec![0.5, -1.0, 2.0], vec![3.0, 0.0, -0.25]];
    let outcomes: Vec<EmbedOutcome> = embed
        .iter()
        .zip(vectors)
        .map(|(sample, values)| EmbedOutcome::Vector {
            sample_id: sample.id,
            values,
        })
        .collect();
    dataset.write_embeddings("emb", &outcomes).unwrap();

    let fields: Vec<String> = made["labels"][0]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .chain(["emb".to_owned()])
        .collect();
    let compared = driver.run(COMPARE, json!({"name": "zoo-labels", "fields": fields}));
    assert_eq!(compared["differences"], json!([]), "{compared:#}");
    for field in &fields {
        assert_eq!(compared["counts"][field], json!(2), "{compared}");
    }

    // Done samples are not pending; a field of another class is refused.
    assert!(
        dataset
            .pending("det", ResultKind::Labels, false, &[])
            .unwrap()
            .is_empty()
    );
    assert_eq!(dataset.count_results("det").unwrap(), 2);
    let again = dataset
        .pending("det", ResultKind::Labels, true, &["x".to_owned()])
        .unwrap();
    assert_eq!(again.len(), 1, "only the sample tagged `x`");
    let wrong = Outcome::Labels {
        sample_id: again[0].id,
        fields: vec![(
            "det".to_owned(),
            Some(Label::from_json(&made["labels"][0]["cls"]).unwrap()),
        )],
    };
    let error = dataset.write_labels(&[wrong]).unwrap_err().to_string();
    assert!(
        error.contains("Detections") && error.contains("Classification"),
        "{error}"
    );
    let info: Value = driver.run(
        "result = fo.load_dataset('zoo-labels').count('det.detections')",
        json!({}),
    );
    assert_eq!(info, json!(4), "the refused write changed nothing");
}
