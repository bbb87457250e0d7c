//! Property tests over the readers of files zoo did not write: FiftyOne
//! folders, part files and the labels in them. Any input gives a clean
//! error or a valid result (nothing outside the folder named, nothing
//! stored when refused), never a panic, within the readers' caps.

use proptest::prelude::*;
use serde_json::{Value, json};
use zoo_datasets::{Datasets, MergePlan, ResultsLocation};
use zoo_model_core::{Label, array_to_json};

use crate::hostile::fiftyone_folder;

/// Paths a hostile folder might name.
fn path_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("data/a.png".to_owned()),
        Just("../a.png".to_owned()),
        Just("/etc/passwd".to_owned()),
        Just("data/../../x".to_owned()),
        Just(String::new()),
        Just(".".to_owned()),
        "[a-z./]{0,12}",
        any::<String>(),
    ]
}

/// Field names a hostile folder might use.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("pred".to_owned()),
        Just("/tmp/x".to_owned()),
        Just("a/b".to_owned()),
        Just("..".to_owned()),
        Just("_id".to_owned()),
        Just("filepath".to_owned()),
        "[a-z_/.$]{0,6}",
    ]
}

/// Label-like JSON.
fn label_value() -> impl Strategy<Value = Value> {
    let class = prop_oneof![
        Just("Classification"),
        Just("Detections"),
        Just("Segmentation"),
        Just("Heatmap"),
        Just("Nonsense"),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(|number| json!(number)),
        path_text().prop_map(Value::String),
        Just(array_to_json("|u1", &[2, 2], &[0, 1, 2, 3])),
        Just(json!({"$binary": {"base64": "eJzLSM3JyVcozy/KSQEAGgQEXQ==", "subType": "00"}})),
    ];
    (
        class,
        path_text(),
        leaf.clone(),
        proptest::collection::vec(leaf, 0..3),
    )
        .prop_map(|(class, path, leaf, items)| {
            json!({"_cls": class, "mask_path": path, "mask": leaf, "label": "x",
                   "detections": items.into_iter().map(|item| json!({"_cls": "Detection",
                       "mask_path": item, "bounding_box": [0, 0, 1, 1]})).collect::<Vec<_>>()})
        })
}

fn sample() -> impl Strategy<Value = Value> {
    (
        path_text(),
        field_name(),
        prop_oneof![
            label_value(),
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool)
        ],
    )
        .prop_map(|(path, field, value)| {
            let mut sample = serde_json::Map::new();
            sample.insert("filepath".into(), json!(path));
            sample.insert(field, value);
            Value::Object(sample)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn an_imported_folder_is_stored_inside_itself_or_refused(
        samples in proptest::collection::vec(sample(), 1..4),
        vector_field in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("export");
        fs_err::create_dir_all(folder.join("data")).unwrap();
        let fields: &[(&str, &str, Option<&str>)] =
            if vector_field { &[("pred", "VectorField", None)] } else { &[] };
        fiftyone_folder(&folder, fields, Value::Array(samples));
        let mut store = Datasets::open(&dir.path().join("db")).unwrap();
        match store.import_fiftyone("fo", &folder) {
            Ok(info) => {
                let root = fs_err::canonicalize(&folder).unwrap();
                for sample in store.samples_json("fo").unwrap() {
                    let path = sample["filepath"].as_str().unwrap();
                    prop_assert!(path.starts_with(root.to_str().unwrap()), "{path}");
                    for (field, value) in &sample {
                        prop_assert!(!field.contains('/'), "{field}");
                        let text = value.to_string();
                        prop_assert!(!text.contains("/etc/passwd"), "{text}");
                    }
                }
                prop_assert_eq!(info.root, root);
            }
            Err(error) => {
                prop_assert!(!error.to_string().is_empty());
                prop_assert!(!store.exists("fo"));
            }
        }
    }

    #[test]
    fn samples_json_of_any_bytes_is_refused_or_read(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("export");
        fiftyone_folder(&folder, &[], json!([]));
        fs_err::write(folder.join("samples.json"), &bytes).unwrap();
        let mut store = Datasets::open(&dir.path().join("db")).unwrap();
        if store.import_fiftyone("fo", &folder).is_err() {
            prop_assert!(!store.exists("fo"));
        }
    }

    #[test]
    fn a_part_file_is_merged_whole_or_not_at_all(
        lines in proptest::collection::vec(
            prop_oneof![
                (path_text(), field_name(), label_value()).prop_map(|(key, field, label)| {
                    let mut labels = serde_json::Map::new();
                    labels.insert(field, label);
                    json!({"key": key, "labels": labels}).to_string()
                }),
                path_text().prop_map(|key| json!({"key": key, "labels": {"pred": Label::EmptyClassification.to_json()}}).to_string()),
                path_text().prop_map(|key| json!({"key": key, "embedding": [1.0, 2.0]}).to_string()),
                any::<String>(),
            ],
            1..5,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let pics = dir.path().join("pics");
        fs_err::create_dir_all(pics.join("data")).unwrap();
        image::RgbImage::from_pixel(2, 2, image::Rgb([1, 2, 3]))
            .save(pics.join("data/a.png"))
            .unwrap();
        let mut store = Datasets::open(&dir.path().join("db")).unwrap();
        store.create("pics", &pics).unwrap();
        let shard = dir.path().join("results/pred/shard-00000-of-00001");
        fs_err::create_dir_all(&shard).unwrap();
        let header = json!({"zoo_results": 1, "kind": "labels", "field": "pred", "shard": 0,
            "shards": 1, "chunk": 0, "chunks": 1, "chunk_size": 10, "samples": lines.len(),
            "keys_sha256": ""});
        let mut text = format!("{header}\n");
        for line in &lines {
            text.push_str(line);
            text.push('\n');
        }
        fs_err::write(shard.join("part-000000.jsonl"), text).unwrap();
        fs_err::write(shard.join("done.json"), json!({"zoo_results": 1, "kind": "labels",
            "field": "pred", "shard": 0, "shards": 1, "chunks": 1, "chunk_size": 10,
            "samples": lines.len()}).to_string()).unwrap();
        let location = ResultsLocation::parse(dir.path().join("results").to_str().unwrap()).unwrap();
        let plan = MergePlan::scan(&location, "pred").unwrap();
        match store.merge_results("pics", &plan, "pred", false) {
            Ok(summary) => prop_assert_eq!(summary.unknown, 0),
            Err(error) => {
                prop_assert!(!error.to_string().is_empty());
                let info = store.info("pics").unwrap();
                prop_assert!(info.label_fields.is_empty(), "{:?}", info);
                prop_assert!(info.embedding_fields.is_empty(), "{:?}", info);
            }
        }
    }
}
