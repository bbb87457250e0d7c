//! Issue 15: DINOv2 built-ins embed end to end, with FiftyOne's numbers.
//!
//! Oracle: `crates/torch-backend/tests/fixtures/dinov2_oracle.json`,
//! written by `cargo xtask dinov2-oracle HUB_DIR`
//! (`xtask/fixtures/dinov2_oracle.py`): FiftyOne 1.22.1's `TorchImageModel`
//! built from its own `dinov2-vits14-torch` config (the hub code of
//! facebookresearch/dinov2) and `embed_all`, on the formula weights of
//! `torch_oracle.py`, which this test writes with `torch.save`'s zip layout
//! under the hub's key names and serves as the hub's weights file.

use serde_json::Value;
use zoo_test_support::{TestServer, torch_save_zip_lazy};

use crate::util::{Sandbox, exported_samples, fixtures};

/// `xtask/fixtures/torch_oracle.py`'s `formula_weights` for one tensor of
/// the hub model's state dict.
fn formula_values(name: &str, shape: &[i64]) -> Vec<f32> {
    let n: i64 = shape.iter().product();
    let base: u64 = name.bytes().map(u64::from).sum::<u64>() % 1000;
    (0..n as u64)
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
        .collect()
}

/// `layout`'s `[name, shape]` pairs (the hub model's state dict).
fn names_and_shapes(layout: &[Value]) -> Vec<(String, Vec<i64>)> {
    layout
        .iter()
        .map(|pair| {
            let shape = pair[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|side| side.as_i64().unwrap())
                .collect();
            (pair[0].as_str().unwrap().to_owned(), shape)
        })
        .collect()
}

/// The hub checkpoint for `layout` with formula weights, as `torch.save`
/// writes it under `stem`.
fn hub_checkpoint(stem: &str, layout: &[Value]) -> Vec<u8> {
    torch_save_zip_lazy(stem, &names_and_shapes(layout), formula_values)
}

/// Checks that `dataset`'s exported `emb` field holds, for each of
/// `entries` (oracle pictures), `name`'s embedding within 1e-4.
fn assert_embeddings_match(sandbox: &Sandbox, dataset: &str, name: &str, entries: &[&Value]) {
    let mut seen = 0;
    for (picture, sample) in exported_samples(sandbox, dataset) {
        let theirs = entries
            .iter()
            .find(|entry| entry["file"] == picture.as_str())
            .unwrap()["embeddings"][name]
            .as_array()
            .unwrap();
        let ours = sample["emb"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name} {picture}");
        let difference = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs())
            .fold(0.0, f64::max);
        assert!(
            difference <= 1e-4,
            "{name} {picture}: max |diff| {difference}"
        );
        seen += 1;
    }
    assert_eq!(seen, entries.len(), "{name}");
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
    let server = TestServer::start();
    let path = "/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth";
    server.file(
        path,
        hub_checkpoint(
            "dinov2_vits14_pretrain",
            oracle["layouts"]["dinov2_vits14"].as_array().unwrap(),
        ),
    );
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
    let all: Vec<&Value> = entries.iter().collect();
    assert_embeddings_match(&sandbox, &dataset, "dinov2-vits14-torch", &all);

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

/// The seven other DINOv2 built-ins (ViT-S/14 with registers, ViT-B/14,
/// ViT-L/14 and ViT-g/14, with and without registers) through `zoo models
/// embed NAME DIR FIELD`, each entry unchanged: the hub file its manager
/// names is fetched once from a loopback mirror of dl.fbaipublicfiles.com,
/// and each picture's `head` embedding is FiftyOne's within 1e-4 (the
/// larger models on the three small pictures, as the oracle ran them).
/// `workers`: `--workers`.
#[allow(clippy::print_stdout)] // prints each model's peak memory, as the tests print their measurements
fn dinov2_builtins_embed_like_fiftyone(names: &[&str], workers: &str) {
    let oracle: Value =
        serde_json::from_slice(&fs_err::read(fixtures().join("dinov2_oracle.json")).unwrap())
            .unwrap();
    let builtin: Value = serde_json::from_str(include_str!(
        "../../crates/registry/builtin/manifest-torch.json"
    ))
    .unwrap();
    let entries = oracle["images"].as_array().unwrap();
    for name in names {
        let model = builtin["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|model| model["base_name"] == *name)
            .unwrap_or_else(|| panic!("{name} is not a built-in"));
        let url = model["manager"]["config"]["url"].as_str().unwrap();
        let path = url
            .strip_prefix("https://dl.fbaipublicfiles.com")
            .unwrap_or_else(|| panic!("{name}: {url}"));
        let file = path.rsplit('/').next().unwrap();
        let entrypoint =
            model["default_deployment_config_dict"]["config"]["entrypoint_args"]["model"]
                .as_str()
                .unwrap();
        let server = TestServer::start();
        server.file(
            path,
            hub_checkpoint(
                file.trim_end_matches(".pth"),
                oracle["layouts"][entrypoint].as_array().unwrap(),
            ),
        );
        let mut sandbox = Sandbox::new();
        sandbox.env.push((
            "ZOO_DOWNLOAD_MIRRORS".into(),
            format!("https://dl.fbaipublicfiles.com/={}", server.url("/")),
        ));
        let images = sandbox.dir.path().join("images");
        fs_err::create_dir_all(&images).unwrap();
        let expected: Vec<&Value> = entries
            .iter()
            .filter(|entry| entry["embeddings"].get(*name).is_some())
            .collect();
        assert!(
            expected.len() >= 3,
            "{name}: the oracle has too few pictures"
        );
        for entry in &expected {
            let picture = entry["file"].as_str().unwrap();
            fs_err::copy(
                fixtures().join("dinov2").join(picture),
                images.join(picture),
            )
            .unwrap();
        }
        let summary = sandbox
            .ok(&[
                "models",
                "embed",
                name,
                images.to_str().unwrap(),
                "emb",
                "--json",
                "--workers",
                workers,
            ])
            .json();
        assert_eq!(summary["succeeded"], expected.len(), "{name}: {summary}");
        println!(
            "{name}: workers {}, peak RSS {} bytes, weights file {} bytes",
            summary["workers"],
            summary["peak_rss_bytes"],
            fs_err::metadata(sandbox.zoo_dir().join(file)).map_or(0, |meta| meta.len())
        );
        assert_eq!(server.requests_to(path).len(), 1, "{name}");
        assert!(sandbox.zoo_dir().join(file).exists(), "{name}");
        let dataset = summary["dataset"].as_str().unwrap().to_owned();
        assert_embeddings_match(&sandbox, &dataset, name, &expected);
    }
}

/// ViT-S/14 with registers and the ViT-B/14 and ViT-L/14 models, as above.
#[test]
fn dinov2_small_base_and_large_builtins_embed_like_fiftyone() {
    dinov2_builtins_embed_like_fiftyone(
        &[
            "dinov2-vits14-reg-torch",
            "dinov2-vitb14-torch",
            "dinov2-vitb14-reg-torch",
            "dinov2-vitl14-torch",
            "dinov2-vitl14-reg-torch",
        ],
        "auto",
    );
}

/// The two ViT-g/14 models (SwiGLU feed-forward, 1.1B parameters: a 4.5 GB
/// file), as above, with one copy of the model. This test's own process
/// holds the 4.5 GB archive and serves it, so `--workers auto` would start
/// a second copy or not depending on what else runs beside it (the rule
/// asks for 13.5 GB available). One copy peaked at 4.8 GB here (it was
/// 9.1 GB before checkpoints streamed into the model); the test prints it.
#[test]
fn dinov2_giant_builtins_embed_like_fiftyone() {
    dinov2_builtins_embed_like_fiftyone(&["dinov2-vitg14-torch", "dinov2-vitg14-reg-torch"], "1");
}
