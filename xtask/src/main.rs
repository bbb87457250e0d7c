//! `cargo xtask`: maintainer tasks for the zoo workspace.
//!
//! Every task that builds or runs code linking libtorch first makes sure the
//! libtorch cache exists (see [`libtorch`]) and passes `LIBTORCH` and the
//! loader path to cargo, so nothing has to be set by hand.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod ci;
mod device;
mod fixtures;
mod hosted;
mod image;
mod libtorch;
mod module_graph;
mod quickstart;
mod setup;
mod tidy;

use anyhow::{Context, Result, bail};

const HELP: &str = "\
cargo xtask <task> [args]

tasks:
  libtorch [--cuda] [--print-env]  install libtorch 2.13.0 (PyPI wheels) into the cache
  ci                               fmt check, clippy -D warnings, every test (libtorch set up first)
  test [cargo test args]           cargo test --workspace with libtorch set up
  build [cargo build args]         cargo build with libtorch set up (binary: target/<profile>/zoo)
  zoo [zoo args]                   build and run the `zoo` binary with libtorch set up
  image [--check]                  the container image the deploy recipes name (podman, FROM scratch,
                                   no registry; deploy/Containerfile for users with one); --check
                                   runs the Kubernetes recipe's command line in it against loopback S3
  quickstart                       the main job: build zoo (release) and run it end to end
  bench [list|download|extract|apply|shard|decode|hosted|families|yolo] [--with-fiftyone] [--smoke]
                                   benchmarks (release build); figures and ratios from one run;
                                   `hosted` and `families` run only when named: a hosted
                                   TorchImageModel against FiftyOne; Faster R-CNN, DeepLabV3, CLIP,
                                   DINOv2 against PyTorch eager (and FiftyOne), seeded weights;
                                   `yolo` (named only): native YOLO against Ultralytics' predict
                                   and FiftyOne, weights seeded by Ultralytics (the oracle venv);
                                   --smoke: every one on tiny inputs, debug build, no figures
                                   asserted (CI runs it so no benchmark rots)
  hosted-torch-check [test args]   the model host's tests with torch models (a TorchImageModel against
                                   FiftyOne's own apply_model) in the oracle venv (installed if missing)
  tidy [--bless]                   check crate dependency and module-cycle rules, ARCHITECTURE.md's diagram and that no
                                   file cites a document outside the repository (also run as a test); --bless rewrites
                                   the diagram from the allowed edges
  cli-reference                    rewrite docs/cli.md from the binary's clap definitions (a zoo-cli
                                   test fails when the two differ)
  fixtures                         regenerate the torch parity fixtures with PyTorch (venv in the cache)
  builtin-manifest                 regenerate the built-in catalogue from FiftyOne's and torchvision's
                                   named-weights table (FiftyOne 1.22.1; torchvision when the oracle venv has it)
  named-weights-oracle             FiftyOne's logits with seeded named weights, hosted checkpoint
                                   layouts and torch.save files (oracle venv with fiftyone 1.22.1)
  pillow-decode-oracle             Pillow's RGB of CMYK/YCCK JPEGs, grey, alpha, palette and 16-bit
                                   PNGs, for zoo-datasets' decoding tests (oracle venv)
  detection-oracle                 torchvision's NMS/RoIAlign, detection checkpoint layouts and
                                   FiftyOne's detections with seeded weights (oracle venv)
  script-segmenter-oracle          a TorchScript instance segmenter and FiftyOne's detections and masks
                                   on it (oracle venv with fiftyone 1.22.1)
  dinov2-oracle [HUB_DIR]          FiftyOne's DINOv2 embeddings on formula weights, with the hub code
                                   from HUB_DIR (a facebookresearch/dinov2 checkout; oracle venv)
  clip-oracle                      a tiny CLIP as an OpenAI-style TorchScript archive and FiftyOne's
                                   CLIP outputs on it (oracle venv with fiftyone 1.22.1)
  yolo-oracle                      seeded Ultralytics release checkpoints (every native task) and FiftyOne's/Ultralytics' labels
                                   on them (oracle venv with ultralytics; FiftyOne from the oracle or the test venv)
  transformers-oracle              tiny seeded ViT, ConvNeXt, EfficientNet and DINOv3 Hugging Face repos and FiftyOne's
                                   labels, embeddings and pixel values on them (oracle venv with fiftyone 1.22.1)
  depth-anything-oracle            a tiny seeded Depth Anything V2 Hugging Face repo and FiftyOne's heatmaps
                                   on it (oracle venv with fiftyone 1.22.1)
  segformer-oracle                 a tiny seeded SegFormer Hugging Face repo and FiftyOne's masks, logits and
                                   top-two margins on it (oracle venv with fiftyone 1.22.1)
  zero-shot-oracle                 a tiny seeded CLIP Hugging Face repo (tokenizer included) and FiftyOne's zero-shot
                                   labels, image and prompt embeddings and transformers' token ids on it (oracle venv)
  owlvit-oracle                    a tiny seeded OWL-ViT Hugging Face repo (tokenizer included) and FiftyOne's zero-shot
                                   detections on it (oracle venv with fiftyone 1.22.1)
  device-build [--check]           build zoo-torch, the parity tests and device_probe against libtorch 2.11
                                   (the GPU machine's PyTorch) into target/device/bundle, for
                                   xtask/device/gpu_check.sh; --check runs the bundled tests here (CPU)
";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(task) = args.next() else {
        print!("{HELP}");
        return Ok(());
    };
    let rest: Vec<String> = args.collect();
    let sh = xshell::Shell::new()?;
    sh.change_dir(workspace_root());
    match task.as_str() {
        "libtorch" => {
            let cuda = rest.iter().any(|arg| arg == "--cuda");
            let install = libtorch::ensure(&sh, libtorch::Variant::from_flag(cuda))?;
            if rest.iter().any(|arg| arg == "--print-env") {
                for (key, value) in install.env() {
                    println!("export {key}={value}");
                }
            } else {
                println!("libtorch ready at {}", install.libtorch().display());
            }
            Ok(())
        }
        "ci" => ci::run(&sh),
        "test" => setup::cargo_with_libtorch(&sh, "test", &rest),
        "build" => setup::cargo_with_libtorch(&sh, "build", &rest),
        "zoo" => setup::run_zoo(&sh, &rest),
        "cli-reference" => {
            let _bless = sh.push_env("ZOO_BLESS", "1");
            setup::cargo_with_libtorch(
                &sh,
                "test",
                &["-p", "zoo-cli", "--lib", "reference::"].map(str::to_owned),
            )
        }
        "quickstart" => quickstart::run(&sh),
        "bench" => bench::run(&sh, &rest),
        "fixtures" => fixtures::run(&sh),
        "hosted-torch-check" => hosted::check(&sh, &rest),
        "builtin-manifest" => fixtures::builtin_manifest(&sh),
        "named-weights-oracle" => fixtures::named_weights_oracle(&sh),
        "pillow-decode-oracle" => fixtures::pillow_decode_oracle(&sh),
        "detection-oracle" => fixtures::detection_oracle(&sh),
        "script-segmenter-oracle" => fixtures::script_segmenter_oracle(&sh),
        "dinov2-oracle" => fixtures::dinov2_oracle(&sh, &rest),
        "clip-oracle" => fixtures::clip_oracle(&sh),
        "yolo-oracle" => fixtures::yolo_oracle(&sh),
        "transformers-oracle" => fixtures::transformers_oracle(&sh),
        "zero-shot-oracle" => fixtures::zero_shot_oracle(&sh),
        "owlvit-oracle" => fixtures::owlvit_oracle(&sh),
        "depth-anything-oracle" => fixtures::depth_anything_oracle(&sh),
        "segformer-oracle" => fixtures::segformer_oracle(&sh),
        "device-build" => device::run(&sh, &rest),
        "image" => image::run(&sh, &rest),
        "tidy" => {
            if rest.iter().any(|arg| arg == "--bless") {
                tidy::bless(&workspace_root())?;
            }
            let problems = tidy::check(&sh)?;
            if problems.is_empty() {
                println!("tidy: ok");
                Ok(())
            } else {
                bail!("tidy found problems:\n  {}", problems.join("\n  "))
            }
        }
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown task `{other}`\n\n{HELP}"),
    }
    .with_context(|| format!("cargo xtask {task} failed"))
}

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from("."))
}
