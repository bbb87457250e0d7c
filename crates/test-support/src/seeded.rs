//! FiftyOne built-ins with weights seeded by their own library and saved in
//! its release layout, for tests and benchmarks that run them in the model
//! host against FiftyOne's own `load_zoo_model` (they need a Python with
//! torch, the library and FiftyOne: the oracle venv).

use std::path::Path;

/// Where FiftyOne's entries fetch Ultralytics' release files.
pub const ULTRALYTICS_RELEASES: &str = "https://github.com/ultralytics/assets/releases/download/";

/// Seeds an Ultralytics model from its yaml (`sys.argv[2]`, e.g.
/// `yolov8n-seg.yaml`) and saves it as Ultralytics saves its releases
/// (`Model.save`: the model in half precision in a dict with its yaml,
/// names and stride) at `sys.argv[1]`; two classes' biases raised so that
/// it detects.
pub const SEED_YOLO: &str = r#"
import sys, torch
from ultralytics import YOLO
torch.manual_seed(0)
model = YOLO(sys.argv[2])
with torch.no_grad():
    for branch in model.model.model[-1].cv3:
        branch[-1].bias[0] += 9.0
        branch[-1].bias[2] += 8.5
model.save(sys.argv[1])
"#;

/// Seeds a small ConvNeXt classifier with transformers and saves it as a
/// Hub repo holds it (`save_pretrained`: `config.json`,
/// `model.safetensors`, `preprocessor_config.json`) in `sys.argv[1]`.
pub const SEED_CONVNEXT: &str = r#"
import sys, torch
from transformers import ConvNextConfig, ConvNextForImageClassification, ConvNextImageProcessor
torch.manual_seed(0)
labels = ["cat", "dog", "bird", "car", "tree"]
config = ConvNextConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_labels=len(labels),
                        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
ConvNextForImageClassification(config).eval().save_pretrained(sys.argv[1])
ConvNextImageProcessor(size={"shortest_edge": 224}).save_pretrained(sys.argv[1])
"#;

/// A small ViT classifier laid out as `google/vit-base-patch16-224`.
pub const SEED_VIT: &str = r#"
import sys, torch
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor
torch.manual_seed(0)
labels = ["cat", "dog", "bird", "car", "tree"]
config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                   image_size=224, patch_size=16, num_labels=len(labels),
                   id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
ViTForImageClassification(config).eval().save_pretrained(sys.argv[1])
ViTImageProcessor().save_pretrained(sys.argv[1])
"#;

/// EfficientNet-B0 at full size laid out as `google/efficientnet-b0`
/// (its processor: 224x224, nearest, `include_top`), five labels; He
/// initialisation and near-identity batch norms so that the pictures reach
/// the logits.
pub const SEED_EFFICIENTNET: &str = r#"
import sys, torch
from transformers import EfficientNetConfig, EfficientNetForImageClassification, EfficientNetImageProcessor
torch.manual_seed(0)
labels = ["cat", "dog", "bird", "car", "tree"]
config = EfficientNetConfig(width_coefficient=1.0, depth_coefficient=1.0, image_size=224, hidden_dim=1280,
                            dropout_rate=0.2, num_labels=len(labels),
                            id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
model = EfficientNetForImageClassification(config).eval()
with torch.no_grad():
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.weight.normal_(0.0, (2.0 / module.weight[0].numel()) ** 0.5)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.copy_(1.0 + 0.2 * torch.randn_like(module.weight))
            module.bias.copy_(0.1 * torch.randn_like(module.bias))
            module.running_mean.copy_(0.1 * torch.randn_like(module.running_mean))
            module.running_var.copy_(0.5 + torch.rand_like(module.running_var))
    model.classifier.weight.normal_(0.0, 0.05)
model.save_pretrained(sys.argv[1])
EfficientNetImageProcessor(size={"height": 224, "width": 224}, resample=0,
                           image_mean=[0.485, 0.456, 0.406],
                           image_std=[0.47853944, 0.4732864, 0.47434163]).save_pretrained(sys.argv[1])
"#;

/// Runs a seeding script with `python`: `args` after the script.
///
/// # Panics
///
/// When Python cannot start or the script fails (its stderr in the message).
pub fn seed(python: &str, script: &str, args: &[&str], home: &Path) {
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .env("HOME", home)
        .env("YOLO_OFFLINE", "1")
        .output()
        .unwrap_or_else(|err| panic!("cannot run `{python}`: {err}"));
    assert!(
        output.status.success(),
        "seeding failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// FiftyOne's own `load_zoo_model(args["name"])` with the weights (when
/// `args["weights"]`) where its zoo keeps them (`args["filename"]` under
/// `args["zoo"]`), `args["env"]` set first (`HF_ENDPOINT`), torch on
/// `args["threads"]` threads when given; `apply_model`
/// on `args["images"]` into `pred`; the labels by file name, and the
/// seconds `apply_model` took.
pub const FIFTYONE_APPLIES: &str = r#"
import os, shutil, time
os.environ["YOLO_OFFLINE"] = "1"
for key, value in args.get("env", {}).items():
    os.environ[key] = value
import fiftyone.zoo as foz
if args.get("threads"):
    import torch
    torch.set_num_threads(args["threads"])
fo.config.model_zoo_dir = args["zoo"]
os.makedirs(args["zoo"], exist_ok=True)
if args.get("weights"):
    shutil.copy(args["weights"], os.path.join(args["zoo"], args["filename"]))
model = foz.load_zoo_model(args["name"])
dataset = fo.Dataset()
dataset.add_samples([fo.Sample(filepath=path) for path in args["images"]])
started = time.perf_counter()
dataset.apply_model(model, "pred")
seconds = time.perf_counter() - started
labels = {}
for sample in dataset:
    value = sample["pred"] if sample.has_field("pred") else None
    labels[sample.filepath.rsplit("/", 1)[-1]] = None if value is None else value.to_dict(extended=True)
dataset.delete()
result = {"labels": labels, "seconds": seconds}
"#;
