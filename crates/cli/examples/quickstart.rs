//! The main job, end to end: `zoo models apply` with the built-in
//! `resnet18-imagenet-torch` on a folder of real photos, through the
//! registry and its download path. Run by `cargo xtask quickstart`.
//!
//! With internet the weights come from download.pytorch.org. Without it,
//! this says so in one line and serves resnet18 weights made here (seeded,
//! random, untrained) from a loopback server through the same registry and
//! download path (the built-in resnet18 entry, renamed
//! `resnet18-untrained-torch`, in a manifest given by `ZOO_MANIFEST_PATHS`),
//! and labels the output as coming from untrained weights.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use untrained::UNTRAINED;
use zoo_test_support::TestServer;

#[path = "common/untrained.rs"]
mod untrained;

const WEIGHTS_URL: &str = "https://download.pytorch.org/models/resnet18-f37072fd.pth";

fn online() -> bool {
    Command::new("curl")
        .args([
            "-s",
            "-f",
            "-o",
            "/dev/null",
            "--max-time",
            "8",
            "-r",
            "0-0",
            WEIGHTS_URL,
        ])
        .status()
        .is_ok_and(|status| status.success())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let zoo = PathBuf::from(&args[1]);
    let photos = PathBuf::from(&args[2]);
    let work = PathBuf::from(&args[3]);
    fs_err::create_dir_all(&work).unwrap();

    let mut env: Vec<(String, String)> = vec![
        (
            "ZOO_MODEL_ZOO_DIR".into(),
            work.join("zoo").display().to_string(),
        ),
        (
            "ZOO_DATASETS_DIR".into(),
            work.join("datasets").display().to_string(),
        ),
    ];
    let trained = online();
    let mut server = None;
    if !trained {
        println!(
            "no internet: serving locally made, untrained (seeded random) resnet18 weights from a loopback server"
        );
        let loopback = TestServer::start();
        let manifest = untrained::untrained_resnet18_manifest(&work, &loopback);
        env.push(("ZOO_MANIFEST_PATHS".into(), manifest.display().to_string()));
        server = Some(loopback);
    }
    let model = if trained {
        "resnet18-imagenet-torch"
    } else {
        UNTRAINED
    };
    let run = |args: &[&str]| {
        let output = Command::new(&zoo)
            .args(args)
            .envs(env.iter().map(|(key, value)| (key, value)))
            .output()
            .unwrap();
        if !output.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&output.stderr));
            panic!("`zoo {}` failed", args.join(" "));
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    if server.is_some() {
        // Always through the registry's download path, never a stale file.
        run(&["models", "download", model, "--overwrite", "--quiet"]);
    }
    let dataset = photos.display().to_string();
    let summary = run(&[
        "models",
        "apply",
        model,
        &dataset,
        "predictions",
        "--overwrite",
        "--batch-size",
        "16",
    ]);
    print!("{summary}");
    let datasets: serde_json::Value =
        serde_json::from_str(&run(&["datasets", "list", "--json"])).unwrap();
    let name = datasets[0]["name"].as_str().unwrap().to_owned();
    let export = work.join("predictions.jsonl");
    run(&["datasets", "export", &name, &export.display().to_string()]);
    println!(
        "\npredictions{}:",
        if trained {
            ""
        } else {
            " (UNTRAINED weights: the labels are meaningless)"
        }
    );
    for line in fs_err::read_to_string(&export).unwrap().lines() {
        let sample: serde_json::Value = serde_json::from_str(line).unwrap();
        let file = Path::new(sample["filepath"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        match sample["predictions"]["label"].as_str() {
            Some(label) => println!(
                "  {file:<24} {label} ({:.3})",
                sample["predictions"]["confidence"]
                    .as_f64()
                    .unwrap_or(f64::NAN)
            ),
            None => println!("  {file:<24} (no prediction)"),
        }
    }
    drop(server);
}
