//! Issue 29: the built-in catalogue is FiftyOne's whole zoo. `zoo models
//! list` names what `fiftyone zoo models list` names (oracle:
//! `crates/registry/tests/fixtures/fiftyone-zoo-models.json`, FiftyOne
//! 1.22.1's own `list_zoo_models`, written by `cargo xtask
//! builtin-manifest`), `zoo models info` says how each runs, a built-in zoo
//! does not build is refused before anything is fetched, and the models
//! whose weights are a Hugging Face repo download through a loopback Hub.

use std::collections::BTreeMap;

use serde_json::Value;
use zoo_test_support::{
    Archive, FakeGitHub, FakeHub, HubRepo, RepoSpec, TestServer, safetensors_bytes, sha256_hex,
};

use crate::util::Sandbox;

fn oracle() -> Value {
    serde_json::from_slice(
        &fs_err::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../registry/tests/fixtures/fiftyone-zoo-models.json"
        ))
        .unwrap(),
    )
    .unwrap()
}

/// The built-ins as `zoo models list --json` shows them: name to tags.
fn listed_builtins(sandbox: &Sandbox, extra: &[&str]) -> BTreeMap<String, Value> {
    let mut args = vec!["models", "list", "--json"];
    args.extend_from_slice(extra);
    sandbox
        .ok(&args)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|model| model["source"] == "builtin")
        .map(|model| {
            (
                model["name"].as_str().unwrap().to_owned(),
                model["tags"].clone(),
            )
        })
        .collect()
}

/// All 336 names with FiftyOne's tags, and `-t` selecting the same models
/// as FiftyOne's filter would.
#[test]
fn zoo_lists_every_fiftyone_builtin_with_its_tags() {
    let oracle = oracle();
    let theirs: BTreeMap<String, Value> = oracle["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| {
            let tags = if model["tags"].is_null() {
                Value::Array(Vec::new())
            } else {
                model["tags"].clone()
            };
            (model["name"].as_str().unwrap().to_owned(), tags)
        })
        .collect();
    assert_eq!(theirs.len(), 336);
    let sandbox = Sandbox::new();
    let ours = listed_builtins(&sandbox, &[]);
    assert_eq!(ours, theirs);
    let names = sandbox.ok(&["models", "list", "--names-only"]).lines();
    assert_eq!(names.len(), 336);
    assert!(names.contains(&"yolov8n-coco-torch".to_owned()));
    // `-t detection transformers`: argparse's `nargs="+"`, every tag.
    let both = listed_builtins(&sandbox, &["-t", "detection", "transformers"]);
    let expected: Vec<&String> = theirs
        .iter()
        .filter(|(_, tags)| {
            let tags = tags.as_array().unwrap();
            tags.contains(&Value::from("detection")) && tags.contains(&Value::from("transformers"))
        })
        .map(|(name, _)| name)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(both.keys().collect::<Vec<_>>(), expected);
}

/// `zoo models info NAME --json` for every built-in: `native` for the 154
/// zoo builds (YOLOv8, YOLO11, YOLOv5u, YOLO26, YOLOv10 and YOLOv9c/e detection, YOLOv8,
/// YOLOv9c/e, YOLO11 and YOLO26 segmentation, YOLO26 classification and pose, YOLOv8 oriented boxes,
/// the transformers ViT, ConvNeXt, EfficientNet and Swin V2 classifiers, CLIP
/// and SigLIP zero-shot classifiers, OWL-ViT zero-shot detectors, DINOv3
/// feature extractors, Depth Anything V2 depth estimators and SegFormer
/// semantic segmenters among them), `python
/// host (TensorFlow)` for FiftyOne's TensorFlow models, `python host`
/// naming FiftyOne's class and the entry's packages for the
/// rest; the text form says the same.
#[test]
fn info_says_how_every_builtin_runs() {
    let oracle = oracle();
    let sandbox = Sandbox::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for model in oracle["models"].as_array().unwrap() {
        let name = model["name"].as_str().unwrap();
        let info = sandbox.ok(&["models", "info", name, "--json"]).json();
        let runs_in = info["runs_in"].as_str().unwrap().to_owned();
        let kind = model["type"].as_str().unwrap();
        // What a CPU run needs: the packages, then the CPU's own.
        let packages: Vec<Value> = [
            &model["requirements"]["packages"],
            &model["requirements"]["cpu"]["packages"],
        ]
        .into_iter()
        .flat_map(|list| list.as_array().cloned().unwrap_or_default())
        .collect();
        match runs_in.as_str() {
            "native" => {
                assert_eq!(info["python_class"], Value::Null, "{name}");
                assert!(
                    kind.ends_with("TorchvisionImageModel")
                        || kind.ends_with("TorchCLIPModel")
                        || (kind.ends_with("FiftyOneYOLOModel")
                            && ["yolov8", "yolo11", "yolov5", "yolo26", "yolov10", "yolov9"]
                                .iter()
                                .any(|prefix| name.starts_with(prefix)))
                        || (kind.ends_with("FiftyOneTransformerForImageClassification")
                            && (name.starts_with("convnext-")
                                || name.starts_with("efficientnet-")
                                || name.starts_with("vit-")
                                || name.starts_with("swin-v2-")
                                || name == "classification-transformer-torch"))
                        || (kind.ends_with("FiftyOneTransformer") && name.starts_with("dinov3-"))
                        || (kind.ends_with("FiftyOneTransformerForDepthEstimation")
                            && name.starts_with("depth-anything-v2-"))
                        || (kind.ends_with("FiftyOneTransformerForSemanticSegmentation")
                            && (name.starts_with("segformer-")
                                || name == "segmentation-transformer-torch"))
                        || (kind.ends_with("FiftyOneZeroShotTransformerForImageClassification")
                            && [
                                "pubmed-clip-vit-base-patch32",
                                "monet-zero-torch",
                                "zero-shot-classification-transformer-torch",
                                "siglip-base-patch16-224-torch",
                                "medsiglip-448-zero-torch",
                            ]
                            .contains(&name))
                        || (kind.ends_with("FiftyOneZeroShotTransformerForObjectDetection")
                            && (name.starts_with("owlvit-")
                                || name == "zero-shot-detection-transformer-torch"))
                        || name.starts_with("dinov2-"),
                    "{name}: {kind}"
                );
            }
            "python host" | "python host (TensorFlow)" => {
                assert_eq!(info["python_class"], kind, "{name}");
                assert_eq!(info["python_packages"], Value::Array(packages), "{name}");
                assert_eq!(
                    runs_in == "python host (TensorFlow)",
                    kind == "fiftyone.utils.eta.ETAModel",
                    "{name}"
                );
            }
            other => panic!("{name}: runs in `{other}`"),
        }
        *counts.entry(runs_in).or_default() += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([
            ("native".to_owned(), 154),
            ("python host".to_owned(), 132),
            ("python host (TensorFlow)".to_owned(), 50),
        ])
    );
    let text = sandbox
        .ok(&["models", "info", "yolov8s-world-torch"])
        .stdout();
    assert!(text.contains("runs in:    python host\n"), "{text}");
    assert!(
        text.contains("python class: fiftyone.utils.ultralytics.FiftyOneYOLOModel\n"),
        "{text}"
    );
    assert!(text.contains("python packages: "), "{text}");
    assert!(text.contains("ultralytics"), "{text}");
    let text = sandbox
        .ok(&["models", "info", "resnet50-imagenet-torch"])
        .stdout();
    assert!(text.contains("runs in:    native\n"), "{text}");
    assert!(!text.contains("python class"), "{text}");
}

/// Before this change, `zoo models apply yolov8s-world-torch` answered "no
/// model named"; now it runs through FiftyOne's class in the model host,
/// and when `ZOO_PYTHON` lacks what that needs it fails up front, before any
/// download, naming the model, the class, the missing packages and the pip
/// command.
#[test]
fn applying_a_hosted_builtin_without_its_packages_fails_up_front() {
    let server = TestServer::start();
    server.file(
        "/ultralytics/assets/releases/download/v8.1.0/yolov8s-world.pt",
        b"weights".to_vec(),
    );
    let mut sandbox = Sandbox::new();
    sandbox.env.push((
        "ZOO_DOWNLOAD_MIRRORS".into(),
        format!("https://github.com/={}", server.url("/")),
    ));
    sandbox.env.push(("ZOO_PYTHON".into(), "python3".into()));
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
        .save(images.join("a.png"))
        .unwrap();
    let stderr = sandbox
        .fails(&[
            "models",
            "apply",
            "yolov8s-world-torch",
            images.to_str().unwrap(),
            "yolo",
        ])
        .stderr();
    for needle in [
        "`yolov8s-world-torch`",
        "`fiftyone.utils.ultralytics.FiftyOneYOLOModel`",
        "Python model host",
        "`python3` (`ZOO_PYTHON`) lacks",
        "ultralytics",
        "python3 -m pip install",
        "`-i`",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    assert!(!stderr.contains("no model named"), "{stderr}");
    assert!(server.requests().is_empty(), "nothing is downloaded first");
    assert!(!sandbox.zoo_dir().join("yolov8s-world.pt").exists());
}

/// A FiftyOne model class zoo does not build, from a manifest of the user's
/// own (`ZOO_MANIFEST_PATHS`, merged like the built-ins), runs through
/// FiftyOne 1.22.1's own `fiftyone.core.models.load_model` in the model
/// host, as `load_zoo_model` builds it: its config from the entry, `-k`
/// kwargs merged in, no model path for an entry without `base_filename`,
/// nothing to download; the labels are the class's own.
#[test]
fn a_manifest_entry_of_a_fiftyone_class_runs_through_fiftyones_load_model() {
    let Some(python) = crate::hosted::fiftyone_python() else {
        return;
    };
    let mut sandbox = Sandbox::new();
    let modules = sandbox.dir.path().join("modules");
    fs_err::create_dir_all(&modules).unwrap();
    fs_err::write(modules.join("zoo_tint_model.py"), TINT_MODEL).unwrap();
    let manifest = sandbox.dir.path().join("mine.json");
    fs_err::write(
        &manifest,
        serde_json::json!({"models": [{
            "base_name": "tint-classifier",
            "tags": ["classification"],
            "requirements": {"packages": ["numpy"]},
            "default_deployment_config_dict": {
                "type": "zoo_tint_model.Tint",
                "config": {"labels": ["dark", "light"]},
            },
        }]})
        .to_string(),
    )
    .unwrap();
    sandbox.env.push(("ZOO_PYTHON".into(), python));
    sandbox
        .env
        .push(("PYTHONPATH".into(), modules.to_str().unwrap().to_owned()));
    sandbox.env.push((
        "ZOO_MANIFEST_PATHS".into(),
        manifest.to_str().unwrap().to_owned(),
    ));
    let info = sandbox
        .ok(&["models", "info", "tint-classifier", "--json"])
        .json();
    assert_eq!(info["runs_in"], "python host");
    assert_eq!(info["python_class"], "zoo_tint_model.Tint");
    let download = sandbox
        .ok(&["models", "download", "tint-classifier"])
        .stderr();
    assert!(
        download.contains("nothing for zoo to download"),
        "{download}"
    );
    let images = sandbox.dir.path().join("tints");
    fs_err::create_dir_all(&images).unwrap();
    image::RgbImage::from_pixel(8, 8, image::Rgb([10, 20, 30]))
        .save(images.join("dark.png"))
        .unwrap();
    image::RgbImage::from_pixel(8, 8, image::Rgb([250, 240, 230]))
        .save(images.join("light.png"))
        .unwrap();
    sandbox.ok(&["datasets", "create", "tints", images.to_str().unwrap()]);
    sandbox.ok(&[
        "models",
        "apply",
        "tint-classifier",
        "tints",
        "tint",
        "-k",
        r#"labels=["low", "high"]"#,
    ]);
    let samples = crate::util::exported_samples(&sandbox, "tints");
    let labels: BTreeMap<String, (String, f64)> = samples
        .into_iter()
        .map(|(file, sample)| {
            (
                file,
                (
                    sample["tint"]["label"].as_str().unwrap().to_owned(),
                    sample["tint"]["confidence"].as_f64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(labels["dark.png"].0, "low");
    assert_eq!(labels["light.png"].0, "high");
    assert!(
        (labels["dark.png"].1 - 20.0 / 255.0).abs() < 1e-6,
        "{labels:?}"
    );
    assert!(
        (labels["light.png"].1 - 240.0 / 255.0).abs() < 1e-6,
        "{labels:?}"
    );
}

/// A FiftyOne model class built by `fiftyone.core.models.load_model`: an
/// eta `Config` (`<class>Config`, found by name) and a `Model` whose label
/// is `labels[mean >= 128]`, confidence the mean over 255.
const TINT_MODEL: &str = r#"
import eta.core.config as etac
import fiftyone.core.labels as fol
import fiftyone.core.models as fom


class TintConfig(etac.Config):
    def __init__(self, d):
        self.labels = self.parse_array(d, "labels", default=["dark", "light"])


class Tint(fom.Model):
    def __init__(self, config):
        self.config = config
        self._preprocess = False

    @property
    def media_type(self):
        return "image"

    @property
    def ragged_batches(self):
        return False

    @property
    def transforms(self):
        return None

    @property
    def preprocess(self):
        return self._preprocess

    @preprocess.setter
    def preprocess(self, value):
        self._preprocess = value

    def predict(self, arg):
        mean = float(arg.mean())
        return fol.Classification(
            label=self.config.labels[int(mean >= 128)], confidence=mean / 255.0
        )

    def predict_all(self, args):
        return [self.predict(arg) for arg in args]
"#;

/// FiftyOne keys a remote source's model files by the source's folder: a
/// source model whose `base_filename` equals a built-in's
/// (`voxel51/openai-clip`'s `CLIP-ViT-B-32.pt`, the built-in CLIP's too) is
/// listed, not skipped, and downloads into the source's folder, leaving the
/// built-in's path alone.
#[test]
fn a_source_model_sharing_a_builtins_file_name_is_listed_and_kept_apart() {
    let server = TestServer::start();
    server.file("/clip/ViT-B-32.pt", b"source weights".to_vec());
    let github = FakeGitHub::start();
    let manifest = serde_json::json!({
        "name": "voxel51/openai-clip",
        "models": [{
            "base_name": "voxel51/clip-vit-base32-torch",
            "base_filename": "CLIP-ViT-B-32.pt",
            "manager": {"type": "fiftyone.core.models.ModelManager",
                "config": {"url": server.url("/clip/ViT-B-32.pt")}},
        }],
    });
    github.add_repo(RepoSpec::new("voxel51", "openai-clip").git_ref(
        "main",
        Archive::new().file("manifest.json", manifest.to_string()),
    ));
    let sandbox = Sandbox::with_github(&github.api_url());
    let registered = sandbox.ok(&["models", "register-source", "voxel51/openai-clip"]);
    assert!(
        !registered.stderr().contains("skipping"),
        "{}",
        registered.stderr()
    );
    let names = sandbox.ok(&["models", "list", "--names-only"]).lines();
    assert!(names.contains(&"voxel51/clip-vit-base32-torch".to_owned()));
    assert!(names.contains(&"clip-vit-base32-torch".to_owned()));
    sandbox.ok(&["models", "download", "voxel51/clip-vit-base32-torch"]);
    let file = sandbox
        .zoo_dir()
        .join("voxel51/openai-clip/CLIP-ViT-B-32.pt");
    assert_eq!(fs_err::read(&file).unwrap(), b"source weights");
    assert!(!sandbox.zoo_dir().join("CLIP-ViT-B-32.pt").exists());
    let found = sandbox
        .ok(&["models", "find", "voxel51/clip-vit-base32-torch"])
        .stdout();
    assert_eq!(found.trim(), file.to_str().unwrap());
}

/// FiftyOne's `rtdetr-v2-s-coco-torch` names `PekingU/rtdetr_v2_r18vd`.
const HF_MODEL: &str = "rtdetr-v2-s-coco-torch";
const HF_REPO: &str = "PekingU/rtdetr_v2_r18vd";

fn hf_weights() -> Vec<u8> {
    let values: Vec<f32> = (0..16384).map(|index| (index % 97) as f32 / 7.0).collect();
    safetensors_bytes(&[("model.backbone.weight", &[128, 128], &values)])
}

fn hf_sandbox(hub: &FakeHub) -> Sandbox {
    hub.add_repo(
        HubRepo::new(HF_REPO, "e2e")
            .file("config.json", br#"{"model_type": "rt_detr_v2"}"#.to_vec())
            .lfs_file("model.safetensors", hf_weights()),
    );
    let mut sandbox = Sandbox::new();
    sandbox.env.push(("HF_ENDPOINT".into(), hub.endpoint()));
    sandbox
}

/// `zoo models download` of a transformers built-in through a loopback
/// Hub: files at one commit in the model's folder, the LFS file checked,
/// the commit recorded; `HF_TOKEN` goes to the Hub and not to the CDN; an
/// LFS file cut midway is resumed with `Range`; `zoo models find` gives the
/// folder.
#[test]
fn a_hugging_face_builtin_downloads_through_the_hub() {
    let hub = FakeHub::start();
    let mut sandbox = hf_sandbox(&hub);
    sandbox.env.push(("HF_TOKEN".into(), "hf_e2e".into()));
    hub.cut_next_download(1000);
    let run = sandbox.ok(&["models", "download", HF_MODEL]);
    let folder = sandbox.zoo_dir().join(HF_MODEL);
    assert!(run.stderr().contains("downloaded"), "{}", run.stderr());
    assert_eq!(
        fs_err::read(folder.join("model.safetensors")).unwrap(),
        hf_weights()
    );
    let record: Value =
        serde_json::from_slice(&fs_err::read(folder.join(".zoo-hf.json")).unwrap()).unwrap();
    assert_eq!(record["repo"], HF_REPO);
    assert_eq!(record["revision"], "main");
    let commit = record["commit"].as_str().unwrap();
    assert_eq!(commit.len(), 40);
    let lfs = record["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|file| file["path"] == "model.safetensors")
        .unwrap();
    assert_eq!(lfs["sha256"], sha256_hex(&hf_weights()));
    for request in hub.hub.requests() {
        assert_eq!(
            request.header("authorization"),
            Some("Bearer hf_e2e"),
            "{}",
            request.path
        );
    }
    let cdn = hub.cdn.requests();
    assert_eq!(cdn.len(), 2, "one cut transfer, one resumed");
    assert_eq!(cdn[1].range_start(), Some(1000));
    assert!(
        cdn.iter()
            .all(|request| request.header("authorization").is_none())
    );
    let found = sandbox.ok(&["models", "find", HF_MODEL]).stdout();
    assert_eq!(found.trim(), folder.to_str().unwrap());
    let info = sandbox.ok(&["models", "info", HF_MODEL, "--json"]).json();
    assert_eq!(
        info["hugging_face"],
        serde_json::json!({"repo": HF_REPO, "revision": "main", "commit": commit})
    );
    let text = sandbox.ok(&["models", "info", HF_MODEL]).stdout();
    assert!(
        text.contains(&format!(
            "hugging face: {HF_REPO} at main, commit {commit}\n"
        )),
        "{text}"
    );
    let again = sandbox.ok(&["models", "download", HF_MODEL]).stderr();
    assert!(again.contains("already downloaded"), "{again}");
}

/// A tampered LFS file is refused, nothing is installed; offline mode
/// refuses before any request.
#[test]
fn a_tampered_hugging_face_file_and_offline_mode_are_refused() {
    let hub = FakeHub::start();
    let mut sandbox = hf_sandbox(&hub);
    let mut evil = hf_weights();
    evil[64] ^= 1;
    hub.tamper(&sha256_hex(&hf_weights()), evil);
    let stderr = sandbox.fails(&["models", "download", HF_MODEL]).stderr();
    assert!(stderr.contains(HF_REPO), "{stderr}");
    assert!(stderr.contains("sha256"), "{stderr}");
    assert!(!sandbox.zoo_dir().join(HF_MODEL).exists());
    hub.hub.clear_requests();
    sandbox.env.push(("ZOO_OFFLINE".into(), "1".into()));
    let stderr = sandbox.fails(&["models", "download", HF_MODEL]).stderr();
    assert!(stderr.contains("offline"), "{stderr}");
    assert!(hub.hub.requests().is_empty());
}
