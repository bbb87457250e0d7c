//! zoo as a library: `crates/cli/examples/apply_folder.rs` (the program
//! the `zoo` crate's docs show) run in-process, and its labels compared with
//! what the `zoo` binary stores for the same model and folder.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::named_weights::seeded_weights;
use crate::util::Sandbox;

#[allow(dead_code)] // its `main` is the example's, not the test's
#[path = "../../crates/cli/examples/apply_folder.rs"]
mod apply_folder_example;

/// The `field` label of every sample, by file name, from an export.
fn labels(sandbox: &Sandbox, dataset: &str, field: &str) -> BTreeMap<String, Value> {
    let export = sandbox.dir.path().join(format!("{dataset}-{field}.jsonl"));
    sandbox.ok(&["datasets", "export", dataset, export.to_str().unwrap()]);
    fs_err::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|sample| {
            let file = std::path::Path::new(sample["filepath"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (file, sample[field].clone())
        })
        .collect()
}

#[test]
fn the_library_example_applies_a_builtin_model_as_the_cli_does() {
    let sandbox = Sandbox::new();
    let photos = sandbox.dir.path().join("photos");
    fs_err::create_dir_all(&photos).unwrap();
    for index in 0..3u32 {
        image::RgbImage::from_fn(72 + index * 8, 64, |x, y| {
            image::Rgb([
                (x * 3) as u8,
                (y * 2 + index * 50) as u8,
                (90 * index) as u8,
            ])
        })
        .save(photos.join(format!("photo{index}.png")))
        .unwrap();
    }
    // Where the download puts torchvision's resnet18 file.
    fs_err::create_dir_all(sandbox.zoo_dir()).unwrap();
    fs_err::write(
        sandbox.zoo_dir().join("resnet18-f37072fd.pth"),
        seeded_weights("resnet18", 1.0),
    )
    .unwrap();
    // The library, configured in code (no environment), offline.
    let config =
        zoo::Config::new(sandbox.zoo_dir(), sandbox.dir.path().join("datasets")).offline(true);
    let report = apply_folder_example::apply_folder(
        config,
        "resnet18-imagenet-torch",
        photos.to_str().unwrap(),
    )
    .unwrap();
    assert_eq!(
        (report.processed, report.succeeded, report.failed),
        (3, 3, 0)
    );
    assert_eq!(report.model, "resnet18-imagenet-torch");
    assert_eq!(report.field, "predictions");
    assert_eq!(
        report
            .top_labels
            .iter()
            .map(|(_, count)| count)
            .sum::<usize>(),
        3
    );
    // The binary on the same folder (the same dataset) into another field.
    sandbox.ok(&[
        "models",
        "apply",
        "resnet18-imagenet-torch",
        photos.to_str().unwrap(),
        "cli",
        "-q",
    ]);
    let dataset = report.dataset.clone();
    let from_library = labels(&sandbox, &dataset, "predictions");
    let from_cli = labels(&sandbox, &dataset, "cli");
    assert_eq!(from_library.len(), 3);
    for (file, label) in &from_library {
        let cli = &from_cli[file];
        assert_eq!(label["_cls"], "Classification", "{label}");
        assert_eq!(label["label"], cli["label"], "{file}");
        let (a, b) = (
            label["confidence"].as_f64().unwrap(),
            cli["confidence"].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-5, "{file}: {a} vs {b}");
    }
    // Run again: every sample is done, nothing is redone.
    let config =
        zoo::Config::new(sandbox.zoo_dir(), sandbox.dir.path().join("datasets")).offline(true);
    let again = apply_folder_example::apply_folder(
        config,
        "resnet18-imagenet-torch",
        photos.to_str().unwrap(),
    )
    .unwrap();
    assert_eq!(again.processed, 0);
}

#[test]
fn a_library_run_whose_every_sample_fails_is_an_error_carrying_its_report() {
    let sandbox = Sandbox::new();
    let photos = sandbox.dir.path().join("broken");
    fs_err::create_dir_all(&photos).unwrap();
    for index in 0..2 {
        fs_err::write(photos.join(format!("bad{index}.png")), b"not a png").unwrap();
    }
    fs_err::create_dir_all(sandbox.zoo_dir()).unwrap();
    fs_err::write(
        sandbox.zoo_dir().join("resnet18-f37072fd.pth"),
        seeded_weights("resnet18", 1.0),
    )
    .unwrap();
    let config =
        zoo::Config::new(sandbox.zoo_dir(), sandbox.dir.path().join("datasets")).offline(true);
    let error = apply_folder_example::apply_folder(
        config,
        "resnet18-imagenet-torch",
        photos.to_str().unwrap(),
    )
    .unwrap_err();
    assert!(error.is_every_sample_failed(), "{error:?}");
    let report = error
        .run_report()
        .expect("the report travels with the error");
    assert_eq!((report.succeeded, report.failed), (0, 2));
    assert_eq!(report.failures.len(), 2);
    assert!(
        error
            .to_string()
            .contains("every one of the 2 samples failed"),
        "{error}"
    );
}

#[test]
fn a_library_typo_costs_no_download() {
    let sandbox = Sandbox::new();
    let config =
        zoo::Config::new(sandbox.zoo_dir(), sandbox.dir.path().join("datasets")).offline(true);
    let error =
        apply_folder_example::apply_folder(config, "no-such-model", "/nonexistent").unwrap_err();
    assert_eq!(error.kind(), zoo::ErrorKind::Registry, "{error:?}");
    assert!(format!("{error:?}").contains("no-such-model"), "{error:?}");
}
