//! zoo as a library: applies a zoo model to a folder of images and stores
//! its labels in the folder's dataset, as `zoo models apply MODEL FOLDER
//! predictions` does (`tests/e2e/library.rs` runs this file).
//!
//! `cargo xtask build --release --example apply_folder`, then
//! `target/release/examples/apply_folder resnet50-imagenet-torch photos/`.
#![allow(clippy::print_stdout)]

use zoo::{Config, LabelOptions, LoadOptions, RunOptions, RunReport, Zoo};

/// Loads `model` (downloading it once) and applies it to `folder`, storing
/// labels under `predictions`.
pub(crate) fn apply_folder(config: Config, model: &str, folder: &str) -> zoo::Result<RunReport> {
    let runtime = zoo_torch_backend::TorchRuntime;
    let zoo = Zoo::new(config, &runtime);
    let mut model = zoo.load_model(model, &LoadOptions::default())?;
    let run = RunOptions::new("predictions").batch_size(16);
    zoo.apply(&mut model, folder, &run, &LabelOptions::default())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, folder] = args.as_slice() else {
        return Err("usage: apply_folder MODEL FOLDER".into());
    };
    let report = apply_folder(Config::from_env()?, model, folder)?;
    println!(
        "{} of {} images labelled in {:.2} s; top labels: {:?}",
        report.succeeded,
        report.processed,
        report.wall_time.as_secs_f64(),
        report.top_labels
    );
    Ok(())
}
