//! Issue 18: one model name, the same weights and predictions as FiftyOne.
//!
//! Oracle: `crates/torch-backend/tests/fixtures/fiftyone_named_weights.json`,
//! written by `cargo xtask named-weights-oracle`
//! (`xtask/fixtures/fiftyone_named_weights.py`): FiftyOne 1.22.1's
//! `foz.load_zoo_model(name).apply_model(dataset, "pred",
//! store_logits=True)` with torch 2.13 / torchvision 0.28, where the file
//! torchvision's named weights point at holds formula weights (in the
//! hosted file's key layout, written by `torch.save`) and the manifest's
//! own file holds different ones.

use std::path::Path;

use serde_json::Value;
use zoo_test_support::{TestServer, formula_state_dict, torch_save_zip};

use crate::util::{Sandbox, fixtures, json_fixture};

/// The formula weights of `architecture` in its hosted file's key layout,
/// as `torch.save` writes them; `gain` as the oracle used.
pub(crate) fn seeded_weights(architecture: &str, gain: f64) -> Vec<u8> {
    let layouts = json_fixture("real_layouts.json");
    let state = formula_state_dict(layouts[architecture]["keys"].as_array().unwrap(), gain);
    torch_save_zip(architecture, &state)
}

/// The logits of every sample's `field`, by file name, from an export.
pub(crate) fn exported_logits(
    sandbox: &Sandbox,
    dataset: &str,
    field: &str,
) -> Vec<(String, Vec<f32>)> {
    let export = sandbox.dir.path().join(format!("{dataset}.jsonl"));
    sandbox.ok(&["datasets", "export", dataset, export.to_str().unwrap()]);
    fs_err::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|sample| {
            let file = Path::new(sample["filepath"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            // Logits as FiftyOne stores them: a float32 `.npy` in `$binary`.
            let logits = zoo_model_core::array_from_json(&sample[field]["logits"])
                .unwrap_or_else(|err| panic!("{file}: no logits in {}: {err}", sample[field]))
                .to_f32()
                .unwrap();
            (file, logits)
        })
        .collect()
}

/// `zoo models info` shows the manifest's URL and torchvision's, and runs
/// torchvision's; `zoo models download` asks the mirror for torchvision's
/// file only, and refuses a file whose sha256 does not start with the hash
/// in its name; `zoo models apply` runs the file torchvision's named weights
/// point at (seeded weights under torchvision's file name, different ones
/// under the manifest's) and gives FiftyOne's own logits within 1e-4, for
/// ResNet-50, MobileNetV2 and Inception v3 (its auxiliary head in the file,
/// `transform_input=True`).
#[test]
fn builtin_models_run_torchvisions_named_weights_like_fiftyone() {
    let oracle = json_fixture("fiftyone_named_weights.json");
    let server = TestServer::start();
    let mut sandbox = Sandbox::new();
    sandbox.env.push((
        "ZOO_DOWNLOAD_MIRRORS".into(),
        format!(
            "https://download.pytorch.org/models/={}",
            server.url("/mirror/")
        ),
    ));
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    for file in ["wide.png", "tall.png"] {
        fs_err::copy(
            fixtures().join("named_weights").join(file),
            images.join(file),
        )
        .unwrap();
    }
    for name in [
        "resnet50-imagenet-torch",
        "mobilenet-v2-imagenet-torch",
        "inception-v3-imagenet-torch",
    ] {
        let expected = &oracle["models"][name];
        let architecture = expected["architecture"].as_str().unwrap();
        let named_file = expected["named_file"].as_str().unwrap();
        let manifest_file = expected["manifest_file"].as_str().unwrap();
        assert_ne!(named_file, manifest_file);

        let info = sandbox.ok(&["models", "info", name, "--json"]).json();
        let torchvision_url = format!("https://download.pytorch.org/models/{named_file}");
        let manifest_url = format!("https://download.pytorch.org/models/{manifest_file}");
        assert_eq!(
            info["weights"]["manifest_url"],
            manifest_url.as_str(),
            "{name}"
        );
        assert_eq!(
            info["weights"]["named_weights_url"],
            torchvision_url.as_str()
        );
        assert_eq!(info["weights"]["runs"], torchvision_url.as_str());
        assert_eq!(
            info["model_path"],
            sandbox.zoo_dir().join(named_file).display().to_string()
        );
        let text = sandbox.ok(&["models", "info", name]).stdout();
        assert!(
            text.contains(&format!("manifest url: {manifest_url}"))
                && text.contains(&format!("runs:       {torchvision_url}")),
            "{text}"
        );

        let weights = seeded_weights(architecture, expected["gain"].as_f64().unwrap());
        let other = seeded_weights(architecture, 0.5);
        server.file(&format!("/mirror/{named_file}"), weights.clone());
        server.file(&format!("/mirror/{manifest_file}"), other.clone());
        let err = sandbox.fails(&["models", "download", name]).stderr();
        assert!(
            err.contains("the file name's hash expects"),
            "{name}: {err}"
        );
        assert!(
            !server
                .requests_to(&format!("/mirror/{named_file}"))
                .is_empty()
        );
        assert!(
            server
                .requests_to(&format!("/mirror/{manifest_file}"))
                .is_empty()
        );

        // The files where FiftyOne keeps them: torchvision's under its own
        // name, the manifest's under `base_filename`.
        fs_err::write(sandbox.zoo_dir().join(named_file), &weights).unwrap();
        fs_err::write(sandbox.zoo_dir().join(manifest_file), &other).unwrap();
        let dataset = architecture.replace('_', "-");
        sandbox.ok(&["datasets", "create", &dataset, images.to_str().unwrap()]);
        sandbox.ok(&["models", "apply", name, &dataset, "pred", "--store-logits"]);
        for (file, ours) in exported_logits(&sandbox, &dataset, "pred") {
            let theirs = &expected["images"][file.as_str()];
            let theirs: Vec<f32> = theirs["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|value| value.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(ours.len(), theirs.len(), "{name} {file}");
            let difference = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            println!("parity {name} on {file}: max |diff| {difference:.3e}");
            assert!(
                difference <= 1e-4,
                "{name} on {file}: max |diff| {difference}"
            );
        }
        fs_err::remove_file(sandbox.zoo_dir().join(named_file)).unwrap();
        fs_err::remove_file(sandbox.zoo_dir().join(manifest_file)).unwrap();
    }
}
