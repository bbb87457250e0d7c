//! The memory a model's load needs beside its weights, measured as the
//! process's peak resident set (`VmHWM`), which this test target has to
//! itself: building DINOv2 ViT-B/14 (86.6 M parameters, 346 MB in float32)
//! from a `torch.save` zip checkpoint in the hub's layout must not hold the
//! checkpoint's tensors and the model's at once.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use zoo_model_core::ModelSpec;
use zoo_torch_backend::{TorchImageModel, parameter_shapes};

/// `VmHWM` or `VmRSS` of this process, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = fs_err::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|value| value.parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn loading_a_zip_checkpoint_holds_one_copy_of_the_weights() {
    let layout = parameter_shapes("dinov2_vitb14", 1000).unwrap();
    let weight_bytes: u64 = layout
        .iter()
        .map(|(_, shape)| shape.iter().product::<i64>() as u64 * 4)
        .sum();
    assert!(weight_bytes > 300_000_000, "{weight_bytes}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dinov2_vitb14_pretrain.pth");
    let archive =
        zoo_test_support::torch_save_zip_lazy("dinov2_vitb14_pretrain", &layout, |_, shape| {
            let count = shape.iter().product::<i64>() as usize;
            (0..count).map(|index| (index % 7) as f32 * 1e-3).collect()
        });
    fs_err::write(&path, &archive).unwrap();
    drop(archive);
    // Writing 5 to clear_refs resets the peak to the current resident set.
    fs_err::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_bytes("VmRSS:");
    let config = serde_json::json!({
        "entrypoint_fcn": "fiftyone.utils.torch.load_torch_hub_raw_model",
        "entrypoint_args": {"repo_or_dir": "facebookresearch/dinov2", "model": "dinov2_vitb14"},
        "image_patch_size": 14,
        "image_min_dim": 14,
        "embeddings_layer": "head",
        "device": "cpu",
    });
    let spec = ModelSpec {
        kind: "fiftyone.utils.torch.TorchImageModel".into(),
        config: config.as_object().unwrap().clone(),
        model_path: Some(path),
    };
    let model = TorchImageModel::from_spec(&spec).unwrap();
    let peak = status_bytes("VmHWM:").saturating_sub(before);
    let after = status_bytes("VmRSS:").saturating_sub(before);
    drop(model);
    println!(
        "weights {weight_bytes} B; load peak {peak} B ({:.2}x); resident after {after} B ({:.2}x)",
        peak as f64 / weight_bytes as f64,
        after as f64 / weight_bytes as f64
    );
    // The model's own parameters are one copy; reading the checkpoint may
    // add one storage (the largest is 9.4 MB) and allocator slack, not a
    // second copy of every weight.
    assert!(
        (peak as f64) < 1.35 * weight_bytes as f64,
        "loading peaked at {peak} B above the resident set before it, for {weight_bytes} B of weights"
    );
}
