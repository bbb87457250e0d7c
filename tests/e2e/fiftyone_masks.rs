//! Issue 12: a dataset whose masks live in files (`mask_path`, `map_path`)
//! exports in FiftyOne's format with those files inside, so FiftyOne loads
//! it anywhere.
//!
//! Oracle: real FiftyOne 1.22.1 (`ZOO_TEST_FIFTYONE_PYTHON`, the venv
//! `cargo xtask ci` provisions): it makes the dataset (PNG masks written
//! with Pillow, exported with `dataset.export(DIR,
//! dataset_type=fo.types.FiftyOneDataset)`), and loads zoo's export with
//! `fo.Dataset.from_dir` after every original file is gone.

use serde_json::{Value, json};
use zoo_test_support::FiftyOne;

use crate::util::Sandbox;

/// FiftyOne makes a dataset whose segmentations, heatmaps and detections
/// keep their masks in PNG files (every sample's files have the same names,
/// in a folder of their own), exports it, and returns every mask by file
/// name.
const MAKE: &str = r#"
import os
from PIL import Image
dataset = fo.Dataset()
samples, expected = [], {}
for index, path in enumerate(args["images"]):
    folder = os.path.join(args["masks"], "sample%d" % index)
    os.makedirs(folder, exist_ok=True)
    mask = ((np.arange(12).reshape(3, 4) + index) % 5).astype(np.uint8)
    heat = (np.arange(12).reshape(3, 4) * (index + 1)).astype(np.uint8)
    box = np.array([[255, 0], [255, 255 - index]], np.uint8)
    files = {}
    for name, array in (("mask.png", mask), ("map.png", heat), ("box.png", box)):
        files[name] = os.path.join(folder, name)
        Image.fromarray(array).save(files[name])
    sample = fo.Sample(filepath=path)
    sample["seg"] = fo.Segmentation(mask_path=files["mask.png"])
    sample["heat"] = fo.Heatmap(map_path=files["map.png"], range=[0, 255])
    sample["det"] = fo.Detections(detections=[
        fo.Detection(label="thing", bounding_box=[0.1, 0.1, 0.5, 0.5], mask_path=files["box.png"]),
    ])
    samples.append(sample)
    expected[os.path.basename(path)] = {
        "seg": mask.tolist(), "heat": heat.tolist(), "det": box.tolist(),
    }
dataset.add_samples(samples)
dataset.export(export_dir=args["out"], dataset_type=fo.types.FiftyOneDataset)
dataset.delete()
result = expected
"#;

/// Loads a FiftyOne dataset folder and reads every mask from its file.
const LOAD: &str = r#"
import os
dataset = fo.Dataset.from_dir(args["dir"], dataset_type=fo.types.FiftyOneDataset)
masks, paths = {}, []
for sample in dataset:
    det = sample["det"].detections[0]
    masks[os.path.basename(sample.filepath)] = {
        "seg": sample["seg"].get_mask().tolist(),
        "heat": sample["heat"].get_map().tolist(),
        "det": det.get_mask().tolist(),
    }
    paths += [sample["seg"].mask_path, sample["heat"].map_path, det.mask_path]
dataset.delete()
result = {"masks": masks, "paths": paths}
"#;

/// `zoo datasets export --format fiftyone` of a dataset whose labels name
/// mask and map files copies them into `fields/<field>/` (and
/// `fields/<field>.detections/`) as FiftyOne's exporter does: FiftyOne
/// loads every mask from the export after the original files and FiftyOne's
/// own export are deleted (before, the export named the files where the
/// import had found them).
#[test]
fn fiftyone_export_copies_mask_files_so_fiftyone_loads_them() {
    let Some(mut fiftyone) = FiftyOne::from_env() else {
        return;
    };
    let sandbox = Sandbox::new();
    let root = sandbox.dir.path();
    let pics = root.join("pics");
    fs_err::create_dir_all(&pics).unwrap();
    let images: Vec<String> = (0..3)
        .map(|index| {
            let path = pics.join(format!("im{index}.png"));
            image::RgbImage::from_pixel(8, 6, image::Rgb([index * 40, 20, 30]))
                .save(&path)
                .unwrap();
            path.to_str().unwrap().to_owned()
        })
        .collect();
    let masks = root.join("masks");
    let original = root.join("from-fiftyone");
    let expected = fiftyone.run(
        MAKE,
        json!({"images": images, "masks": masks, "out": original}),
    );
    sandbox.ok(&["datasets", "import", "masked", original.to_str().unwrap()]);
    let back = root.join("back-from-zoo");
    sandbox.ok(&[
        "datasets",
        "export",
        "masked",
        back.to_str().unwrap(),
        "--format",
        "fiftyone",
    ]);
    // Only zoo's export is left.
    fs_err::remove_dir_all(&original).unwrap();
    fs_err::remove_dir_all(&masks).unwrap();
    let loaded = fiftyone.run(LOAD, json!({"dir": back}));
    assert_eq!(loaded["masks"], expected);
    let canonical = fs_err::canonicalize(&back).unwrap();
    let paths: Vec<&str> = loaded["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|path| path.as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 9);
    for path in &paths {
        assert!(
            path.starts_with(canonical.join("fields").to_str().unwrap())
                || path.starts_with(back.join("fields").to_str().unwrap()),
            "{path} is outside the export"
        );
    }
    // Files that share a name (every sample's `mask.png`) stay apart.
    let distinct: std::collections::BTreeSet<&&str> = paths.iter().collect();
    assert_eq!(distinct.len(), 9, "{paths:?}");
    let samples: Value =
        serde_json::from_slice(&fs_err::read(back.join("samples.json")).unwrap()).unwrap();
    for sample in samples["samples"].as_array().unwrap() {
        let path = sample["seg"]["mask_path"].as_str().unwrap();
        assert!(path.starts_with("fields/seg/"), "{path}");
        let path = sample["det"]["detections"][0]["mask_path"]
            .as_str()
            .unwrap();
        assert!(path.starts_with("fields/det.detections/"), "{path}");
    }
}
