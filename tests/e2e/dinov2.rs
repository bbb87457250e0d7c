//! Issue 15: DINOv2 built-ins embed end to end, with FiftyOne's numbers.
//!
//! Oracle: `crates/torch-backend/tests/fixtures/dinov2_oracle.json`,
//! written by `cargo xtask dinov2-oracle HUB_DIR`
//! (`xtask/fixtures/dinov2_oracle.py`): FiftyOne 1.22.1's `TorchImageModel`
//! built from its own `dinov2-vits14-torch` config (the hub code of
//! facebookresearch/dinov2) and `embed_all`, on the formula weights of
//! `torch_oracle.py`, which this test writes with `torch.save`'s zip layout
//! under the hub's key names and serves as the hub's weights file.

use std::path::Path;

use serde_json::Value;
use zoo_test_support::{StateTensor, TestServer, torch_save_zip};

use crate::util::{Sandbox, fixtures};

/// `xtask/fixtures/torch_oracle.py`'s `formula_weights` for `layout`
/// (`[name, shape]` pairs, the hub model's state dict).
fn formula_state(layout: &[Value]) -> Vec<StateTensor> {
    layout
        .iter()
        .map(|pair| {
            let name = pair[0].as_str().unwrap().to_owned();
            let shape: Vec<i64> = pair[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|side| side.as_i64().unwrap())
                .collect();
            let n: i64 = shape.iter().product();
            let base: u64 = name.bytes().map(u64::from).sum::<u64>() % 1000;
            let values = (0..n as u64)
                .map(|k| {
                    let s = (((k + base) as f64) * 0.618).sin();
                    let value = if shape.len() == 1 && name.ends_with("weight") {
                        1.0 + 0.1 * s
                    } else if shape.len() == 1 {
                        0.1 * s
                    } else {
                        s / ((n / shape[0]) as f64).sqrt()
                    };
                    value as f32
                })
                .collect();
            StateTensor {
                name,
                shape,
                values: Some(values),
            }
        })
        .collect()
}

/// `zoo models embed dinov2-vits14-torch DIR FIELD` downloads the hub's
/// `dinov2_vits14_pretrain.pth` (a `torch.save` zip, from a loopback mirror
/// of dl.fbaipublicfiles.com) into the zoo dir, runs FiftyOne's
/// preprocessing (`image_min_dim` 14, `image_patch_size` 14) and the
/// network natively, and stores FiftyOne's `head` embeddings within 1e-4
/// for images of five sizes (cropped, upscaled, and at the training size).
#[test]
fn dinov2_builtin_embeds_like_fiftyone_through_zoo() {
    let oracle: Value =
        serde_json::from_slice(&fs_err::read(fixtures().join("dinov2_oracle.json")).unwrap())
            .unwrap();
    let state = formula_state(oracle["layouts"]["dinov2_vits14"].as_array().unwrap());
    let server = TestServer::start();
    let path = "/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth";
    server.file(path, torch_save_zip("dinov2_vits14_pretrain", &state));
    let mut sandbox = Sandbox::new();
    sandbox.env.push((
        "ZOO_DOWNLOAD_MIRRORS".into(),
        format!("https://dl.fbaipublicfiles.com/={}", server.url("/")),
    ));
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    let entries = oracle["images"].as_array().unwrap();
    for entry in entries {
        let file = entry["file"].as_str().unwrap();
        fs_err::copy(fixtures().join("dinov2").join(file), images.join(file)).unwrap();
    }
    let summary = sandbox
        .ok(&[
            "models",
            "embed",
            "dinov2-vits14-torch",
            images.to_str().unwrap(),
            "emb",
            "--json",
        ])
        .json();
    assert_eq!(summary["succeeded"], entries.len());
    assert_eq!(summary["dimension"], 384);
    assert_eq!(server.requests_to(path).len(), 1);
    assert!(
        sandbox
            .zoo_dir()
            .join("dinov2_vits14_pretrain.pth")
            .exists()
    );
    let dataset = summary["dataset"].as_str().unwrap().to_owned();
    let export = sandbox.dir.path().join("emb.jsonl");
    sandbox.ok(&["datasets", "export", &dataset, export.to_str().unwrap()]);
    let text = fs_err::read_to_string(&export).unwrap();
    let mut seen = 0;
    for line in text.lines() {
        let sample: Value = serde_json::from_str(line).unwrap();
        let file = Path::new(sample["filepath"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let expected = entries
            .iter()
            .find(|entry| entry["file"] == file.as_str())
            .unwrap();
        let ours = sample["emb"].as_array().unwrap();
        let theirs = expected["embeddings"]["dinov2-vits14-torch"]
            .as_array()
            .unwrap();
        assert_eq!(ours.len(), theirs.len(), "{file}");
        let difference = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs())
            .fold(0.0, f64::max);
        assert!(difference <= 1e-4, "{file}: max |diff| {difference}");
        seen += 1;
    }
    assert_eq!(seen, entries.len());

    // DINOv2's entries name no output processor: FiftyOne's
    // `TorchImageModel` returns raw arrays that `apply_model` cannot store,
    // so zoo refuses `apply` up front instead of inventing a classification.
    let refused = sandbox
        .fails(&[
            "models",
            "apply",
            "dinov2-vits14-torch",
            images.to_str().unwrap(),
            "label",
        ])
        .stderr();
    assert!(
        refused.contains("dinov2-vits14-torch")
            && refused.contains("output_processor_cls")
            && refused.contains("zoo models embed"),
        "{refused}"
    );
    let fields = sandbox.ok(&["datasets", "info", &dataset, "--json"]).json();
    assert!(!fields.to_string().contains("\"label\""), "{fields}");
}
