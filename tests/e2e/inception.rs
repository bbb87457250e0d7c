//! Issue 12: Inception v3's embeddings, end to end, with FiftyOne's numbers.
//!
//! Oracle: `crates/torch-backend/tests/fixtures/fiftyone_builtins.json`,
//! written by `cargo xtask named-weights-oracle`
//! (`xtask/fixtures/fiftyone_named_weights.py`): FiftyOne 1.22.1's
//! `compute_embeddings` with `inception-v3-imagenet-torch` (its
//! `embeddings_layer: "<fc"`, the 2048-d pooled features) on every branch of
//! the resize chain, PNG and JPEG, where the file torchvision's named weights
//! point at holds formula weights in the hosted file's key layout; summarised
//! (first values, sum, L2 norm).

use std::path::Path;

use serde_json::Value;
use zoo_test_support::{formula_state_dict, torch_save_zip};

use crate::util::{Sandbox, fixtures, json_fixture};

/// Asserts `ours` matches FiftyOne's summary: same length, first values
/// within 1e-4, sum and L2 norm within 1e-4 per element.
pub(crate) fn assert_matches_summary(ours: &[f64], theirs: &Value, what: &str) {
    assert_eq!(ours.len() as u64, theirs["len"].as_u64().unwrap(), "{what}");
    let difference = ours
        .iter()
        .zip(theirs["head"].as_array().unwrap())
        .map(|(a, b)| (a - b.as_f64().unwrap()).abs())
        .fold(0.0, f64::max);
    assert!(difference <= 1e-4, "{what}: max |diff| {difference}");
    let len = ours.len() as f64;
    let sum: f64 = ours.iter().sum();
    let l2 = ours.iter().map(|value| value * value).sum::<f64>().sqrt();
    assert!(
        (sum - theirs["sum"].as_f64().unwrap()).abs() <= 1e-4 * len,
        "{what}: sum {sum}"
    );
    assert!(
        (l2 - theirs["l2"].as_f64().unwrap()).abs() <= 1e-4 * len.sqrt(),
        "{what}: L2 norm {l2}"
    );
}

/// `zoo models embed inception-v3-imagenet-torch` stores the 2048-d `<fc`
/// input FiftyOne's `compute_embeddings` returns (before, zoo ran
/// `tch::vision`'s Inception v3 whole and had no embeddings for it), on
/// PNG and JPEG pictures that hit every branch of FiftyOne's resize chain,
/// from the hosted file's layout (`AuxLogits.*` included) with
/// `transform_input=True`.
#[test]
fn inception_v3_builtin_embeds_like_fiftyone_through_zoo() {
    let name = "inception-v3-imagenet-torch";
    let expected = &json_fixture("fiftyone_builtins.json")["models"][name];
    let layouts = json_fixture("real_layouts.json");
    let state = formula_state_dict(
        layouts["inception_v3"]["keys"].as_array().unwrap(),
        expected["gain"].as_f64().unwrap(),
    );
    assert!(
        state
            .iter()
            .any(|tensor| tensor.name.starts_with("AuxLogits.")),
        "the hosted layout holds the auxiliary classifier"
    );
    let sandbox = Sandbox::new();
    fs_err::create_dir_all(sandbox.zoo_dir()).unwrap();
    fs_err::write(
        sandbox
            .zoo_dir()
            .join(expected["named_file"].as_str().unwrap()),
        torch_save_zip("inception_v3", &state),
    )
    .unwrap();
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    let branches = expected["branches"].as_object().unwrap();
    assert_eq!(branches.len(), 8);
    for file in branches.keys() {
        fs_err::copy(fixtures().join("fiftyone").join(file), images.join(file)).unwrap();
    }
    let summary = sandbox
        .ok(&[
            "models",
            "embed",
            name,
            images.to_str().unwrap(),
            "emb",
            "--json",
        ])
        .json();
    assert_eq!(summary["succeeded"], 8, "{summary}");
    assert_eq!(summary["dimension"], 2048, "{summary}");
    let dataset = summary["dataset"].as_str().unwrap().to_owned();
    let export = sandbox.dir.path().join("emb.jsonl");
    sandbox.ok(&["datasets", "export", &dataset, export.to_str().unwrap()]);
    let mut seen = 0;
    for line in fs_err::read_to_string(&export).unwrap().lines() {
        let sample: Value = serde_json::from_str(line).unwrap();
        let file = Path::new(sample["filepath"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let ours: Vec<f64> = sample["emb"]
            .as_array()
            .unwrap_or_else(|| panic!("{file}: no embedding in {sample}"))
            .iter()
            .map(|value| value.as_f64().unwrap())
            .collect();
        assert_matches_summary(&ours, &branches[&file]["embedding"], &file);
        seen += 1;
    }
    assert_eq!(seen, 8);
}
