//! The built-in DINOv2 entries (in `builtin/manifest-torch.json`) against
//! FiftyOne's own. Oracle: `tests/fixtures/fiftyone-hub.json`, written by
//! `cargo xtask builtin-manifest` (`xtask/fixtures/builtin_manifest.py`,
//! `hub_builtin`) from FiftyOne 1.22.1's `manifest-torch.json`.

use serde_json::Value;
use zoo_registry::{Registry, RegistryConfig};
use zoo_sources::NoProgress;
use zoo_test_support::TestServer;

fn oracle() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fiftyone-hub.json"
    );
    serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap()
}

/// The built-in entries the oracle holds, in its order, from the built-in
/// torch manifest (which holds all of FiftyOne's torch entries).
fn builtin_entries(oracle: &Value) -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/builtin/manifest-torch.json");
    let builtin: Value = serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap();
    let models = builtin["models"].as_array().unwrap();
    oracle["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|theirs| {
            models
                .iter()
                .find(|model| model["base_name"] == theirs["base_name"])
                .unwrap_or_else(|| panic!("{} is not a built-in", theirs["base_name"]))
                .clone()
        })
        .collect()
}

/// Issue 15: the eight DINOv2 built-ins are FiftyOne's entries field for
/// field (and `clip-vit-base32-torch` is FiftyOne's unchanged); zoo adds only `base_filename`, `manager` (FiftyOne's entries have
/// none: torch hub downloads the weights) and `zoo_hub_weights`, whose URL
/// is the hub's `<_DINOV2_BASE_URL>/<base>/<full>_pretrain.pth`.
#[test]
fn dinov2_builtins_are_fiftyones_entries_plus_the_hubs_weights_file() {
    let oracle = oracle();
    assert_eq!(oracle["fiftyone"], "1.22.1");
    let theirs = oracle["models"].as_array().unwrap();
    let ours = builtin_entries(&oracle);
    assert_eq!(ours.len(), 9);
    assert_eq!(theirs.len(), 9);
    // FiftyOne's CLIP is kept as it is (it has its own manager).
    assert_eq!(ours[8]["base_name"], "clip-vit-base32-torch");
    assert_eq!(ours[8], theirs[8]);
    for (entry, fiftyone) in ours.iter().zip(theirs).take(8) {
        let name = entry["base_name"].as_str().unwrap();
        let mut entry = entry.as_object().unwrap().clone();
        let hub = entry.remove("zoo_hub_weights").unwrap();
        let manager = entry.remove("manager").unwrap();
        let filename = entry.remove("base_filename").unwrap();
        assert_eq!(&Value::Object(entry), fiftyone, "{name}");
        let model = hub["model"].as_str().unwrap();
        assert_eq!(
            fiftyone["default_deployment_config_dict"]["config"]["entrypoint_args"]["model"],
            model
        );
        let base = model.trim_end_matches("_reg");
        let full = if model.ends_with("_reg") {
            format!("{base}_reg4")
        } else {
            base.to_owned()
        };
        let url = format!("https://dl.fbaipublicfiles.com/dinov2/{base}/{full}_pretrain.pth");
        assert_eq!(hub["url"], url, "{name}");
        assert_eq!(manager["config"]["url"], url, "{name}");
        assert_eq!(filename, format!("{full}_pretrain.pth"), "{name}");
    }
}

/// `zoo models download dinov2-vits14-reg-torch` fetches the hub's file
/// (here from a loopback mirror of dl.fbaipublicfiles.com) into the zoo dir
/// under the hub's file name.
#[test]
fn dinov2_builtin_downloads_the_hubs_weights_file() {
    let server = TestServer::start();
    let path = "/dinov2/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth";
    server.file(path, b"weights".to_vec());
    let root = tempfile::tempdir().unwrap();
    let mut config = RegistryConfig::new(root.path());
    config.builtin = Some(zoo_registry::builtin_manifest());
    config.mirrors = vec![(
        "https://dl.fbaipublicfiles.com/".to_owned(),
        server.url("/"),
    )];
    config.transfer.retries = 0;
    let registry = Registry::new(config);
    registry
        .download_model("dinov2-vits14-reg-torch", false, &NoProgress)
        .unwrap();
    let file = root.path().join("dinov2_vits14_reg4_pretrain.pth");
    assert_eq!(fs_err::read(&file).unwrap(), b"weights");
    assert_eq!(server.requests_to(path).len(), 1);
    let model = registry.model("dinov2-vits14-reg-torch").unwrap();
    assert_eq!(registry.model_path(&model).unwrap(), file);
}

/// A `TorchCLIPModel` whose `tokenizer_base_filename` climbs out of the
/// zoo dir is refused, naming the field, and nothing is written outside:
/// the tokenizer goes through the same name check, model lock and
/// containment check as the model's own file.
#[test]
fn clip_tokenizer_name_leaving_the_zoo_dir_is_refused_before_any_write() {
    let server = TestServer::start();
    server.file("/ViT-B-32.pt", b"weights".to_vec());
    server.file("/bpe_simple_vocab_16e6.txt.gz", b"vocabulary".to_vec());
    let text = include_str!("../../builtin/manifest-torch.json").replace(
        "\"clip_bpe_simple_vocab_16e6.txt.gz\"",
        "\"../outside.txt.gz\"",
    );
    assert!(text.contains("../outside.txt.gz"));
    let manifest = zoo_manifest::Manifest::from_slice(text.as_bytes(), "hostile.json").unwrap();
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("zoo");
    let mut config = RegistryConfig::new(&root);
    config.builtin = Some(manifest);
    config.mirrors = vec![
        (
            "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/".to_owned(),
            server.url("/"),
        ),
        ("https://github.com/openai/CLIP/raw/main/clip/".to_owned(), server.url("/")),
    ];
    config.transfer.retries = 0;
    let registry = Registry::new(config);
    let error = registry
        .download_model("clip-vit-base32-torch", false, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(error.contains("tokenizer_base_filename"), "{error}");
    assert!(!base.path().join("outside.txt.gz").exists());
    assert!(
        server
            .requests_to("/bpe_simple_vocab_16e6.txt.gz")
            .is_empty()
    );
}
