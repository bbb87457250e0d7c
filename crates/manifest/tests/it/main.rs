//! Integration tests: the real manifests of `shared/corpus` parse, merge and
//! round-trip.
#![allow(clippy::unwrap_used)]

mod paths;

use std::path::PathBuf;

use zoo_manifest::{Filter, Manifest, Origin, Zoo};

fn corpus() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus");
    let mut files: Vec<PathBuf> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "corpus missing from {}", dir.display());
    files
}

#[test]
fn every_corpus_manifest_parses_and_round_trips() {
    for path in corpus() {
        let manifest = Manifest::read(&path).unwrap_or_else(|err| panic!("{err}"));
        assert!(!manifest.models.is_empty(), "{}", path.display());
        let original: serde_json::Value =
            serde_json::from_slice(&fs_err::read(&path).unwrap()).unwrap();
        let written: serde_json::Value = serde_json::from_str(&manifest.to_json_pretty()).unwrap();
        assert_eq!(
            strip_nulls(original),
            strip_nulls(written),
            "{} does not round-trip",
            path.display()
        );
    }
}

#[test]
fn the_corpus_merges_into_one_zoo() {
    let mut zoo = Zoo::new();
    let mut total = 0;
    for path in corpus() {
        let manifest = Manifest::read(&path).unwrap();
        total += manifest.models.len();
        let origin = Origin::Source {
            url: format!("https://example.test/{}", path.display()),
            dir: path.display().to_string(),
        };
        zoo.merge(origin, manifest);
    }
    assert_eq!(zoo.models().len() + zoo.warnings().len(), total);
    let clip = zoo.get("voxel51/clip-vit-base32-torch").unwrap();
    assert_eq!(clip.model.author.as_deref(), Some("OpenAI"));
    assert_eq!(clip.model.filename().as_deref(), Some("CLIP-ViT-B-32.pt"));
    let detection = Filter {
        tags: vec!["detection".into(), "yolo".into()],
        ..Filter::default()
    };
    assert!(zoo.filter(&detection).count() >= 10);
}

/// `null` means absent: compare documents without their null fields.
fn strip_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(key, value)| (key, strip_nulls(value)))
            .collect(),
        serde_json::Value::Array(items) => items.into_iter().map(strip_nulls).collect(),
        other => other,
    }
}
