//! The built-in manifest against FiftyOne's own and torchvision's weight
//! registry. Oracle: `tests/fixtures/fiftyone-torchvision.json`, written by
//! `cargo xtask builtin-manifest` (`xtask/fixtures/builtin_manifest.py`)
//! from FiftyOne 1.22.1's `fiftyone/zoo/models/manifest-torch.json` and
//! torchvision 0.28's `get_weight(entrypoint_args.weights).url`.

use serde_json::Value;
use zoo_manifest::{Manifest, Origin, ZooModel};
use zoo_registry::{NAMED_WEIGHTS_FIELD, Registry, RegistryConfig, named_weights};
use zoo_sources::NoProgress;
use zoo_test_support::TestServer;

fn oracle() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fiftyone-torchvision.json"
    );
    serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap()
}

fn builtin_text() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/builtin/manifest-torch.json");
    serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap()
}

/// The built-in torchvision models (the hub ones have no named weights;
/// `hub_weights.rs` covers them).
fn builtin_models() -> Vec<ZooModel> {
    zoo_registry::builtin_manifest()
        .models
        .into_iter()
        .filter(|model| model.extra.contains_key(NAMED_WEIGHTS_FIELD))
        .map(|model| ZooModel {
            model,
            origin: Origin::Builtin,
        })
        .collect()
}

/// Issue 12: the built-in entries are FiftyOne's, field for field; the only
/// addition is zoo's `zoo_named_weights` (squeezenet versions stay `1.0` and
/// `1.1`, descriptions and tags are 1.22.1's).
#[test]
fn builtin_manifest_entries_equal_fiftyones_field_for_field() {
    let oracle = oracle();
    assert_eq!(oracle["fiftyone"], "1.22.1");
    let theirs: Vec<&Value> = oracle["models"].as_array().unwrap().iter().collect();
    let ours = builtin_text();
    // The torchvision entries of the built-in torch manifest (which holds
    // all of FiftyOne's torch entries): all 39 are built natively.
    let ours: Vec<&Value> = ours["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|model| {
            model["default_deployment_config_dict"]["type"]
                == "fiftyone.zoo.models.torch.TorchvisionImageModel"
        })
        .collect();
    assert_eq!(ours.len(), 39);
    for entry in &ours {
        let name = entry["base_name"].as_str().unwrap();
        let fiftyone = theirs
            .iter()
            .find(|model| model["base_name"] == name)
            .unwrap_or_else(|| panic!("`{name}` is not one of FiftyOne's torchvision models"));
        let mut entry = entry.as_object().unwrap().clone();
        assert!(entry.remove(NAMED_WEIGHTS_FIELD).is_some(), "{name}");
        assert_eq!(&Value::Object(entry), *fiftyone, "{name}");
    }
    let squeezenet = ours
        .iter()
        .find(|model| model["base_name"] == "squeezenet-1.1-imagenet-torch")
        .unwrap();
    assert_eq!(squeezenet["version"], "1.1");
    // FiftyOne 1.22.1 lists the versioned names with eta's quirk
    // (`splitext` of `squeezenet-1.1-imagenet-torch` splits at `.1`), and
    // resolves the base names to them; zoo does the same.
    let root = tempfile::tempdir().unwrap();
    let mut config = RegistryConfig::new(root.path());
    config.builtin = Some(zoo_registry::builtin_manifest());
    let registry = Registry::new(config);
    for (base_name, listed) in [
        (
            "squeezenet-1.1-imagenet-torch",
            "squeezenet-1@1.1.1-imagenet-torch",
        ),
        ("squeezenet-imagenet-torch", "squeezenet-imagenet-torch@1.0"),
    ] {
        assert_eq!(registry.model(base_name).unwrap().name(), listed);
        assert_eq!(registry.model(listed).unwrap().name(), listed);
    }
}

/// Issue 18: for every built-in, the URL zoo downloads and runs is the one
/// torchvision's named weights (`entrypoint_args.weights`) use, and the
/// model file is stored under torchvision's file name, as FiftyOne's
/// patched `load_state_dict_from_url` stores it in the model zoo dir.
#[test]
fn every_builtin_runs_the_url_torchvisions_named_weights_use() {
    let oracle = oracle();
    let table = oracle["named_weights"].as_object().unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut config = RegistryConfig::new(root.path());
    config.builtin = Some(zoo_registry::builtin_manifest());
    let registry = Registry::new(config);
    let mut differing = 0;
    for model in builtin_models() {
        let base_name = &model.model.base_name;
        let expected = &table[base_name.as_str()];
        let named = named_weights(&model).unwrap().unwrap();
        assert_eq!(named.url, expected["url"].as_str().unwrap(), "{base_name}");
        assert_eq!(named.resolved, expected["resolved"].as_str().unwrap());
        assert_eq!(named.weights, expected["weights"].as_str().unwrap());
        let file = expected["url"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        let from_registry = registry.model(&model.name()).unwrap();
        assert_eq!(
            registry.model_path(&from_registry).unwrap(),
            root.path().join(file),
            "{base_name}"
        );
        let manifest_url = model.model.download_manager().unwrap().config["url"].clone();
        if manifest_url != expected["url"] {
            differing += 1;
        }
    }
    // Of the 38 zoo builds, these differ: resnet18/34/50/101/152,
    // mobilenet_v2, both squeezenets, vgg11, vgg13, alexnet, inception_v3,
    // resnext50_32x4d, resnext101_32x8d, wide_resnet50_2, wide_resnet101_2.
    assert_eq!(differing, 16);
}

/// The table is trusted only in the built-in manifest: a custom manifest
/// (or a source) giving `zoo_named_weights` does not redirect a download,
/// and a malformed entry is an error naming the model and the field.
#[test]
fn named_weights_from_other_manifests_are_ignored_and_bad_ones_rejected() {
    let mut entry = builtin_text()["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["base_name"] == "resnet50-imagenet-torch")
        .unwrap()
        .clone();
    let manifest: Manifest =
        serde_json::from_value(serde_json::json!({"models": [entry.clone()]})).unwrap();
    let custom = ZooModel {
        model: manifest.models[0].clone(),
        origin: Origin::Custom("custom.json".into()),
    };
    assert_eq!(named_weights(&custom).unwrap(), None);
    let cases = [
        (
            "url",
            serde_json::json!("file:///etc/passwd"),
            "not an http(s) URL",
        ),
        (
            "filename",
            serde_json::json!("../escape.pth"),
            "zoo_named_weights.filename",
        ),
        ("sha256_prefix", serde_json::json!("xyz"), "hex digits"),
        ("sha256_prefix", serde_json::json!(""), "hex digits"),
        (
            "weights",
            serde_json::json!("ResNet50_Weights.IMAGENET1K_V1"),
            "entrypoint_args.weights",
        ),
    ];
    for (field, value, expected) in cases {
        let mut bad = entry.clone();
        bad[NAMED_WEIGHTS_FIELD][field] = value;
        let manifest: Manifest =
            serde_json::from_value(serde_json::json!({"models": [bad]})).unwrap();
        let model = ZooModel {
            model: manifest.models[0].clone(),
            origin: Origin::Builtin,
        };
        let err = named_weights(&model).unwrap_err().to_string();
        assert!(
            err.contains("resnet50-imagenet-torch") && err.contains(expected),
            "{field}: {err}"
        );
    }
    entry[NAMED_WEIGHTS_FIELD] = serde_json::json!(null);
    let manifest: Manifest =
        serde_json::from_value(serde_json::json!({"models": [entry]})).unwrap();
    let model = ZooModel {
        model: manifest.models[0].clone(),
        origin: Origin::Builtin,
    };
    assert!(named_weights(&model).is_err());
}

/// A file served under torchvision's name whose sha256 does not start with
/// the hash in that name is refused and removed, as torch hub's
/// `check_hash` refuses it; the manifest's URL is never asked for.
#[test]
fn named_weights_with_a_wrong_hash_prefix_are_refused() {
    let server = TestServer::start();
    server.file(
        "/models/resnet50-11ad3fa6.pth",
        b"not the real weights".to_vec(),
    );
    server.file(
        "/models/resnet50-19c8e357.pth",
        b"the manifest's file".to_vec(),
    );
    let root = tempfile::tempdir().unwrap();
    let mut config = RegistryConfig::new(root.path());
    config.builtin = Some(zoo_registry::builtin_manifest());
    config.mirrors = vec![(
        "https://download.pytorch.org/models/".to_owned(),
        server.url("/models/"),
    )];
    config.transfer.retries = 0;
    let registry = Registry::new(config);
    let err = registry
        .download_model("resnet50-imagenet-torch", false, &NoProgress)
        .unwrap_err();
    let mut chain = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(inner) = cause {
        chain.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    assert!(chain.contains("start with `11ad3fa6`"), "{chain}");
    assert!(!root.path().join("resnet50-11ad3fa6.pth").exists());
    assert!(
        !server
            .requests_to("/models/resnet50-11ad3fa6.pth")
            .is_empty()
    );
    assert!(
        server
            .requests_to("/models/resnet50-19c8e357.pth")
            .is_empty()
    );
}
