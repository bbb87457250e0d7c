//! Issue 14: a built-in semantic segmenter end to end through the `zoo`
//! binary, against FiftyOne's own `apply_model`.
//!
//! Oracle: `crates/torch-backend/tests/fixtures/fiftyone_named_weights.json`
//! (`cargo xtask named-weights-oracle`): FiftyOne 1.22.1's
//! `foz.load_zoo_model("deeplabv3-resnet50-coco-torch").apply_model(...)`,
//! its built-in config unchanged (`image_dim` 520, softmax, VOC mask
//! targets), where the file torchvision's named weights point at holds
//! formula weights in the hosted file's key layout (`aux_classifier`
//! included), written by `torch.save`.

use std::path::Path;

use serde_json::Value;
use zoo_test_support::{TestServer, formula_state_dict, torch_save_zip};

use crate::util::{Sandbox, fixtures, json_fixture};

/// `zoo models info` names torchvision's file; `zoo models download` asks
/// the loopback mirror for it (and refuses the seeded file, whose sha256
/// cannot start with the hash in torchvision's file name); with the file
/// in the model dir, `zoo models apply deeplabv3-resnet50-coco-torch`
/// stores, for each picture, the mask FiftyOne stores: `int64` (`<i8`), of
/// the resized input's size (shorter side 520), identical byte for byte.
#[test]
fn builtin_deeplabv3_masks_equal_fiftyones_apply_model() {
    let name = "deeplabv3-resnet50-coco-torch";
    let oracle = json_fixture("fiftyone_named_weights.json");
    let expected = &oracle["models"][name];
    let architecture = expected["architecture"].as_str().unwrap();
    let named_file = expected["named_file"].as_str().unwrap();
    let server = TestServer::start();
    let mut sandbox = Sandbox::new();
    sandbox.env.push((
        "ZOO_DOWNLOAD_MIRRORS".into(),
        format!(
            "https://download.pytorch.org/models/={}",
            server.url("/mirror/")
        ),
    ));
    let info = sandbox.ok(&["models", "info", name, "--json"]).json();
    assert_eq!(
        info["weights"]["runs"],
        format!("https://download.pytorch.org/models/{named_file}").as_str()
    );

    let layouts = json_fixture("real_layouts.json");
    let keys = layouts[architecture]["keys"].as_array().unwrap();
    assert!(
        keys.iter()
            .any(|key| key[0].as_str().unwrap().starts_with("aux_classifier.")),
        "the hosted layout holds the auxiliary head"
    );
    let state = formula_state_dict(keys, expected["gain"].as_f64().unwrap());
    let weights = torch_save_zip(architecture, &state);
    server.file(&format!("/mirror/{named_file}"), weights.clone());
    let err = sandbox.fails(&["models", "download", name]).stderr();
    assert!(err.contains("the file name's hash expects"), "{err}");
    assert!(
        !server
            .requests_to(&format!("/mirror/{named_file}"))
            .is_empty()
    );
    fs_err::write(sandbox.zoo_dir().join(named_file), &weights).unwrap();

    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    for file in ["wide.png", "tall.png"] {
        fs_err::copy(
            fixtures().join("named_weights").join(file),
            images.join(file),
        )
        .unwrap();
    }
    sandbox.ok(&["datasets", "create", "voc", images.to_str().unwrap()]);
    sandbox.ok(&["models", "apply", name, "voc", "seg"]);
    let export = sandbox.dir.path().join("voc.jsonl");
    sandbox.ok(&["datasets", "export", "voc", export.to_str().unwrap()]);
    let text = fs_err::read_to_string(&export).unwrap();
    let mut seen = 0;
    for line in text.lines() {
        let sample: Value = serde_json::from_str(line).unwrap();
        let file = Path::new(sample["filepath"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let theirs = &expected["images"][file.as_str()];
        assert_eq!(sample["seg"]["_cls"], "Segmentation", "{file}");
        let mask = zoo_model_core::array_from_json(&sample["seg"]["mask"]).unwrap();
        assert_eq!(mask.dtype, theirs["mask_dtype"].as_str().unwrap(), "{file}");
        assert_eq!(
            serde_json::json!(mask.shape),
            theirs["mask_shape"],
            "{file}"
        );
        let (digest, classes) = crate::every_builtin::mask_digest(&mask);
        println!("parity {name} on {file}: classes {classes:?}");
        assert_eq!(serde_json::json!(classes), theirs["mask_classes"], "{file}");
        assert_eq!(digest, theirs["mask_sha256"].as_str().unwrap(), "{file}");
        seen += 1;
    }
    assert_eq!(seen, 2);
}
