//! Inputs and configs that used to panic a run: each is now an error for
//! the config, or for the one batch, and the model keeps working.

use std::path::Path;

use serde_json::{Value, json};
use zoo_model_core::{
    Image, Input, InputData, Label, Model, ModelErrorKind, ModelSpec, Prediction, Preprocess,
};
use zoo_torch_backend::{Preprocessing, TorchImageModel, write_untrained_weights};

fn squeezenet(dir: &Path) -> TorchImageModel {
    let entrypoint = "torchvision.models.squeezenet.squeezenet1_1";
    let weights = dir.join("squeezenet1_1.safetensors");
    write_untrained_weights(entrypoint, &weights, 3).unwrap();
    let config = json!({"entrypoint_fcn": entrypoint, "output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor", "classes": (0..1000).map(|i| i.to_string()).collect::<Vec<_>>(), "device": "cpu"});
    TorchImageModel::from_spec(&super::spec(config, &weights)).unwrap()
}

fn input(channels: usize, height: usize, width: usize) -> Input {
    Input {
        shape: [channels, height, width],
        data: InputData::Values(
            (0..channels * height * width)
                .map(|value| (value % 17) as f32 / 17.0)
                .collect(),
        ),
        original_size: (width as u32, height as u32),
    }
}

fn classified(prediction: Prediction) -> bool {
    matches!(
        prediction,
        Prediction::Label(Some(Label::Classification { .. }))
    )
}

#[test]
fn libtorch_error_in_forward_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = squeezenet(dir.path());
    // Four channels: libtorch raises in the first convolution.
    let err = model.predict(&input(4, 40, 40)).unwrap_err();
    assert_eq!(err.kind(), ModelErrorKind::Inference, "{err}");
    let err = err.to_string();
    assert!(
        err.contains("`squeezenet1_1`") && err.contains("4x40x40") && err.contains("channels"),
        "{err}"
    );
    // The model still works.
    assert!(classified(model.predict(&input(3, 40, 40)).unwrap()));
    // The same through TorchScript and through embeddings.
    let config = json!({"output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor",
        "classes": ["a", "b", "c"], "embeddings_layer": "embed"});
    let mut script = TorchImageModel::from_spec(&ModelSpec {
        kind: "fiftyone.utils.torch.TorchImageModel".into(),
        config: config.as_object().unwrap().clone(),
        model_path: Some(super::fixtures().join("script_classifier.pt")),
    })
    .unwrap();
    let err = script.predict(&input(4, 30, 30)).unwrap_err().to_string();
    assert!(
        err.contains("`script_classifier.pt`") && err.contains("4x30x30"),
        "{err}"
    );
    let err = script
        .embed_all(&[input(4, 30, 30)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`script_classifier.pt`"), "{err}");
    assert!(classified(script.predict(&input(3, 30, 30)).unwrap()));
}

#[test]
fn inputs_below_the_network_minimum_are_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = squeezenet(dir.path());
    for (height, width) in [(16, 40), (40, 16), (1, 1)] {
        let err = model
            .predict(&input(3, height, width))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`squeezenet1_1` needs images of at least 17x17 pixels")
                && err.contains(&format!("got {width}x{height}"))
                && err.contains("image_min_dim"),
            "{err}"
        );
    }
    assert!(classified(model.predict(&input(3, 17, 17)).unwrap()));
}

#[test]
fn inputs_whose_values_do_not_fill_their_shape_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = squeezenet(dir.path());
    let mut short = input(3, 20, 20);
    short.data = InputData::Values(vec![0.0; 10]);
    let err = model.predict(&short).unwrap_err().to_string();
    assert!(err.contains("does not hold 3x20x20 values"), "{err}");
}

/// Builds a model from a config with `key` set to `value`; the weights are
/// never reached.
fn config_error(key: &str, value: Value) -> String {
    let mut config = json!({
        "entrypoint_fcn": "torchvision.models.vgg.vgg11",
        "image_min_dim": 224,
        "image_max_dim": 2048,
        "device": "cpu",
    });
    config[key] = value;
    let path = Path::new("/nonexistent/weights.pth");
    match TorchImageModel::from_spec(&super::spec(config, path)) {
        Err(err) if err.kind() == ModelErrorKind::Config => err.message().to_owned(),
        Err(other) => panic!("{key}: not a config error: {other}"),
        Ok(_) => panic!("{key}: accepted"),
    }
}

#[test]
fn cudnn_benchmark_that_is_not_a_boolean_is_a_config_error() {
    let message = config_error("cudnn_benchmark", json!("yes"));
    assert!(
        message.contains("`cudnn_benchmark` must be true or false"),
        "{message}"
    );
}

#[test]
fn image_size_zero_is_a_config_error() {
    let cases = [
        ("image_size", json!([0, 224]), "`[0,224]`"),
        ("image_size", json!([224, 0]), "`[224,0]`"),
        ("image_size", json!([224, -1]), "`[224,-1]`"),
        ("image_size", json!([224.5, 224]), "`[224.5,224]`"),
        ("image_size", json!([16385, 224]), "`[16385,224]`"),
        (
            "image_size",
            json!([4294967296u64, 224]),
            "`[4294967296,224]`",
        ),
        ("image_size", json!([224]), "`[224]`"),
        ("image_size", json!("224x224"), "`\"224x224\"`"),
        ("image_min_dim", json!(0), "`0`"),
        ("image_min_dim", json!(-224), "`-224`"),
        ("image_min_dim", json!(2.5), "`2.5`"),
        ("image_min_dim", json!(100000), "`100000`"),
        ("image_max_dim", json!(0), "`0`"),
        ("image_max_dim", json!(1e12), "`1000000000000.0`"),
    ];
    for (key, value, shown) in cases {
        let message = config_error(key, value.clone());
        assert!(
            message.contains(&format!("`{key}` must be"))
                && message.contains(shown)
                && message.contains("16384"),
            "{key} = {value}: {message}"
        );
    }
}

/// FiftyOne config fields that carry Python (custom transforms, a module,
/// an output processor object) or raw images: refused by name, never
/// silently ignored (the model would run unlike FiftyOne's).
#[test]
fn python_only_config_fields_are_refused_by_name() {
    for (key, value) in [
        ("transforms_fcn", json!("my_pkg.transforms.build")),
        ("transforms", json!(["ToTensor"])),
        ("output_processor", json!({"cls": "x"})),
        ("model", json!("my_pkg.Net")),
        ("raw_inputs", json!(true)),
    ] {
        let mut config = json!({
            "entrypoint_fcn": "torchvision.models.vgg.vgg11",
            "output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor",
        });
        config[key] = value;
        let path = Path::new("/nonexistent/weights.pth");
        match TorchImageModel::from_spec(&super::spec(config, path)) {
            Err(err) if err.is_unsupported() => assert!(
                err.message().contains(&format!("`{key}`")) && err.message().contains("Python"),
                "{key}: {err}"
            ),
            Err(other) => panic!("{key}: expected Unsupported, got {other}"),
            Ok(_) => panic!("{key}: accepted"),
        }
    }
    let message = config_error("raw_inputs", json!("yes"));
    assert!(
        message.contains("`raw_inputs` must be true or false"),
        "{message}"
    );
}

#[test]
fn zero_std_and_huge_class_lists_are_config_errors() {
    let message = config_error("image_std", json!([0.229, 0, 0.225]));
    assert!(message.contains("`image_std` must not hold 0"), "{message}");
    let message = config_error("image_mean", json!([0.5, "x", 0.5]));
    assert!(
        message.contains("`image_mean` must hold finite numbers"),
        "{message}"
    );
    let message = config_error("output_processor_cls", json!(["a"]));
    assert!(
        message.contains("`output_processor_cls` must be a class name"),
        "{message}"
    );
    // Ten million classes would allocate a 40 GB last layer before the
    // weights are even read.
    let classes: Vec<String> = (0..100_001).map(|index| index.to_string()).collect();
    let message = config_error("classes", json!(classes));
    assert!(message.contains("100001 classes"), "{message}");
}

#[test]
fn extreme_aspect_ratio_upscale_is_a_preprocess_error() {
    let preprocessing = Preprocessing {
        min_dim: Some(224),
        ..Preprocessing::default()
    };
    // 1x200: upscaled to 224 wide, it would be 44,800 pixels high.
    let strip = Image::new(1, 200, vec![7; 600]).unwrap();
    let err = preprocessing.preprocess(strip).unwrap_err();
    assert!(
        err.kind() == ModelErrorKind::Preprocess
            && err.message().contains("1x200")
            && err.message().contains("224x44800"),
        "{err}"
    );
}

#[test]
fn detector_boxes_without_four_coordinates_are_an_error() {
    let config = json!({"classes": ["background", "a", "b"],
        "output_processor_cls": "fiftyone.utils.torch.DetectorOutputProcessor"});
    let mut model = TorchImageModel::from_spec(&ModelSpec {
        kind: "fiftyone.utils.torch.TorchImageModel".into(),
        config: config.as_object().unwrap().clone(),
        model_path: Some(super::fixtures().join("script_bad_detector.pt")),
    })
    .unwrap();
    let err = model.predict(&input(3, 20, 20)).unwrap_err().to_string();
    assert!(
        err.contains("`script_bad_detector.pt` returned boxes of 2 coordinates"),
        "{err}"
    );
}
