//! Models whose weights, configs or inputs are hostile (issue: seal the
//! trust boundary, torch backend): a clear error, or one failed sample,
//! never a panic that ends the run.

use std::path::Path;

use zoo_test_support::TestServer;

use crate::util::{Sandbox, manifest_source};

/// A source with one squeezenet1_1 model whose weights file is `weights`
/// and whose config is `config` (merged over a plain one).
fn squeezenet_source(server: &TestServer, weights: Vec<u8>, config: serde_json::Value) -> String {
    server.file("/weights/squeeze.pth", weights);
    let mut merged = serde_json::json!({
        "entrypoint_fcn": "torchvision.models.squeezenet.squeezenet1_1",
        "output_processor_cls": "fiftyone.utils.torch.ClassifierOutputProcessor",
        "labels_path": "{{eta-resources}}/imagenet-labels-no-background.txt",
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        "device": "cpu"
    });
    for (key, value) in config.as_object().unwrap() {
        merged[key] = value.clone();
    }
    let manifest = serde_json::json!({"name": "acme/squeeze", "models": [{
        "base_name": "acme/squeeze",
        "base_filename": "squeeze.pth",
        "tags": ["classification", "torch"],
        "manager": {"type": "fiftyone.core.models.ModelManager", "config": {"url": server.url("/weights/squeeze.pth")}},
        "default_deployment_config_dict": {"type": "fiftyone.zoo.models.torch.TorchvisionImageModel", "config": merged}
    }]});
    manifest_source(server, "/squeeze-source.tar.gz", &manifest)
}

fn untrained_squeezenet(dir: &Path) -> Vec<u8> {
    let path = dir.join("squeezenet1_1.safetensors");
    zoo_torch_backend::write_untrained_weights(
        "torchvision.models.squeezenet.squeezenet1_1",
        &path,
        1,
    )
    .unwrap();
    fs_err::read(&path).unwrap()
}

fn picture(path: &Path, width: u32, height: u32) {
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 3) as u8, 90])
    })
    .save(path)
    .unwrap();
}

#[test]
fn apply_on_an_image_below_the_network_minimum_fails_that_sample_only() {
    let server = TestServer::start();
    let sandbox = Sandbox::new();
    let weights = untrained_squeezenet(sandbox.dir.path());
    // No `image_min_dim`: images keep their size, and a 10x12 one is too
    // small for SqueezeNet 1.1 (17x17 at least).
    let source = squeezenet_source(&server, weights, serde_json::json!({}));
    sandbox.ok(&["models", "register-source", &source]);
    let pics = sandbox.dir.path().join("pics");
    fs_err::create_dir_all(&pics).unwrap();
    picture(&pics.join("a.png"), 64, 48);
    picture(&pics.join("b.png"), 40, 70);
    picture(&pics.join("tiny.png"), 10, 12);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);
    let report = sandbox
        .ok(&["models", "apply", "acme/squeeze", "pics", "pred", "--json"])
        .json();
    assert_eq!(report["processed"], 3, "{report}");
    assert_eq!(report["failed"], 1, "{report}");
    let failure = &report["failures"][0];
    assert!(
        failure["filepath"].as_str().unwrap().ends_with("tiny.png"),
        "{report}"
    );
    assert!(
        failure
            .to_string()
            .contains("needs images of at least 17x17 pixels, got 10x12"),
        "{report}"
    );
}

/// A legacy `torch.save` file whose only tensor has a negative stride.
fn negative_stride_checkpoint() -> Vec<u8> {
    let text = |value: &str| {
        let mut bytes = vec![b'X'];
        bytes.extend((value.len() as u32).to_le_bytes());
        bytes.extend(value.as_bytes());
        bytes
    };
    let mut data = vec![0x80, 2, 0x8a, 10];
    data.extend([0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
    data.extend(b".\x80\x02M\xe9\x03.\x80\x02}.");
    data.extend(b"\x80\x02ccollections\nOrderedDict\n)R(");
    data.extend(text("features.0.weight"));
    data.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    data.extend(text("storage"));
    data.extend(b"ctorch\nFloatStorage\n");
    data.extend(text("0"));
    data.extend(text("cpu"));
    data.extend(b"K\x0ctQK\x0bK\x03K\x04\x86J\xfc\xff\xff\xffK\x01\x86\x89}tRu.");
    data.extend(b"\x80\x02](");
    data.extend(text("0"));
    data.extend(b"e.");
    data.extend(12u64.to_le_bytes());
    data.extend((0..12).flat_map(|value| (value as f32).to_le_bytes()));
    data
}

#[test]
fn apply_with_a_negative_stride_checkpoint_is_a_clear_error() {
    let server = TestServer::start();
    let sandbox = Sandbox::new();
    let source = squeezenet_source(&server, negative_stride_checkpoint(), serde_json::json!({}));
    sandbox.ok(&["models", "register-source", &source]);
    let pics = sandbox.dir.path().join("pics");
    fs_err::create_dir_all(&pics).unwrap();
    picture(&pics.join("a.png"), 64, 48);
    let run = sandbox.fails(&[
        "models",
        "apply",
        "acme/squeeze",
        pics.to_str().unwrap(),
        "pred",
    ]);
    let stderr = run.stderr();
    assert!(
        stderr.contains("squeeze.pth")
            && stderr.contains("tensor `features.0.weight`")
            && stderr.contains("negative stride `-4`"),
        "{stderr}"
    );
}

#[test]
fn apply_with_image_size_zero_is_a_config_error() {
    let server = TestServer::start();
    let sandbox = Sandbox::new();
    let weights = untrained_squeezenet(sandbox.dir.path());
    let source = squeezenet_source(
        &server,
        weights,
        serde_json::json!({"image_size": [0, 224]}),
    );
    sandbox.ok(&["models", "register-source", &source]);
    let pics = sandbox.dir.path().join("pics");
    fs_err::create_dir_all(&pics).unwrap();
    picture(&pics.join("a.png"), 64, 48);
    let run = sandbox.fails(&[
        "models",
        "apply",
        "acme/squeeze",
        pics.to_str().unwrap(),
        "pred",
    ]);
    let stderr = run.stderr();
    assert!(
        stderr.contains("`image_size` must be [height, width]") && stderr.contains("`[0,224]`"),
        "{stderr}"
    );
}

#[test]
fn a_cudnn_benchmark_variable_that_is_not_1_or_0_is_a_clear_error() {
    let server = TestServer::start();
    let mut sandbox = Sandbox::new();
    let weights = untrained_squeezenet(sandbox.dir.path());
    let source = squeezenet_source(&server, weights, serde_json::json!({}));
    sandbox.ok(&["models", "register-source", &source]);
    let pics = sandbox.dir.path().join("pics");
    fs_err::create_dir_all(&pics).unwrap();
    picture(&pics.join("a.png"), 64, 48);
    let apply = [
        "models",
        "apply",
        "acme/squeeze",
        pics.to_str().unwrap(),
        "pred",
    ];
    sandbox
        .env
        .push(("ZOO_CUDNN_BENCHMARK".into(), "maybe\u{1b}[31m".into()));
    let stderr = sandbox.fails(&apply).stderr();
    assert!(
        stderr.contains("`ZOO_CUDNN_BENCHMARK` must be `1` or `0`") && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
    // On the CPU the search is a no-op: `1` runs as usual.
    sandbox.env = vec![("ZOO_CUDNN_BENCHMARK".into(), "1".into())];
    sandbox.ok(&apply);
}
