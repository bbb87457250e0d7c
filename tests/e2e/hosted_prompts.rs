//! `zoo models apply ... --prompt-field FIELD` on hosted models that read a
//! prompt per sample (FiftyOne's `apply_model(..., prompt_field=FIELD)`).
//!
//! Oracle: FiftyOne 1.22.1's own `dataset.apply_model(model, field,
//! prompt_field=...)` (`ZOO_TEST_FIFTYONE_PYTHON`, the venv CI provisions,
//! no torch) with the same numpy-only `SamplesMixin`
//! (`zoo_test_support::HOSTED_SOURCE`, model `prompted`) on the same PNGs and
//! the same prompt boxes (the `boxes` model's, made by each side itself).
//! ViTPose, which needs torch, is in `hosted_builtins.rs`.

use serde_json::json;
use zoo_test_support::{FiftyOne, HOSTED_SOURCE, TestServer};

use crate::hosted::{exported, fiftyone_python, hosted_sandbox, pictures, same_label};

/// FiftyOne's own runs: the boxes (the prompts), then the prompted model
/// with `prompt_field`.
const FIFTYONE_PROMPTED: &str = r#"
import importlib.util
spec = importlib.util.spec_from_file_location("hosted_source_prompted", args["init"])
source = importlib.util.module_from_spec(spec)
spec.loader.exec_module(source)
def model(kind, **kwargs):
    path = args["weights"] + "/" + kind + ".txt"
    with open(path, "w") as f:
        f.write("numpy weights for zoo-test/" + kind)
    return source.load_model("zoo-test/" + kind, path, **kwargs)
dataset = fo.Dataset()
dataset.add_samples([fo.Sample(filepath=path) for path in args["images"]])
dataset.apply_model(model("boxes", fail_width=13), "det")
dataset.apply_model(model("prompted"), "pose", prompt_field="det_boxes")
result = {}
for sample in dataset:
    result[sample.filepath.rsplit("/", 1)[-1]] = {
        field: (sample[field].to_dict(extended=True) if sample.has_field(field) and sample[field] is not None else None)
        for field in ("det_boxes", "pose")
    }
dataset.delete()
"#;

/// A `SamplesMixin` gets each sample's label of the prompt field as
/// FiftyOne's `apply_model` hands it over: zoo stores what FiftyOne stores,
/// and a sample without a prompt fails alone, as in FiftyOne.
#[test]
fn hosted_prompts_reach_the_model_as_fiftyones_apply_model_hands_them() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = hosted_sandbox(&server, &python);
    let pics = sandbox.dir.path().join("pics");
    let images = pictures(&pics, 6);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);
    sandbox.ok(&[
        "models",
        "apply",
        "zoo-test/boxes",
        "pics",
        "det",
        "-k",
        "fail_width=13",
    ]);
    let run = sandbox
        .ok(&[
            "models",
            "apply",
            "zoo-test/prompted",
            "pics",
            "pose",
            "--prompt-field",
            "det_boxes",
            "--json",
        ])
        .json();
    // The two 13-pixel-wide pictures got no boxes, so no prompt.
    assert_eq!(run["succeeded"], 4, "{run}");
    assert_eq!(run["failed"], 2, "{run}");
    let failures = run["failures"].to_string();
    assert!(
        failures.contains("no Detections in prompt field 'det_boxes'"),
        "{failures}"
    );

    let mut fiftyone = FiftyOne::start(&python);
    let source = sandbox.dir.path().join("oracle");
    fs_err::create_dir_all(&source).unwrap();
    fs_err::write(source.join("__init__.py"), HOSTED_SOURCE).unwrap();
    let theirs = fiftyone.run(
        FIFTYONE_PROMPTED,
        json!({"init": source.join("__init__.py"), "weights": source, "images": images}),
    );
    let ours = exported(&sandbox, "pics");
    let mut prompted = 0;
    for (name, theirs) in theirs.as_object().unwrap() {
        for field in ["det_boxes", "pose"] {
            let (mine, oracle) = (&ours[name][field], &theirs[field]);
            assert!(
                same_label(mine, oracle),
                "{name} {field}: zoo {mine} vs FiftyOne {oracle}"
            );
        }
        if let Some(boxes) = theirs["pose"]["detections"].as_array() {
            assert_eq!(boxes.len(), 3, "{name}: {}", theirs["pose"]);
            assert!(
                boxes
                    .iter()
                    .all(|b| b["label"].as_str().unwrap().ends_with('!'))
            );
            prompted += 1;
        }
    }
    assert_eq!(prompted, 4);
}

/// What cannot run is refused before any sample runs, naming why: a model
/// that reads no prompts given `--prompt-field`, one that needs them run
/// without, a field the dataset does not have.
#[test]
fn hosted_prompt_refusals_name_the_model_the_option_and_the_field() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = hosted_sandbox(&server, &python);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 3);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);
    sandbox.ok(&["models", "apply", "zoo-test/boxes", "pics", "det"]);

    let err = sandbox
        .fails(&[
            "models",
            "apply",
            "zoo-test/colour",
            "pics",
            "pred",
            "--prompt-field",
            "det_boxes",
        ])
        .stderr();
    assert!(
        err.contains("`--prompt-field det_boxes` cannot be used with `zoo-test/colour")
            && err.contains("ColourClassifier")
            && err.contains("no `SamplesMixin`"),
        "{err}"
    );

    let err = sandbox
        .fails(&["models", "apply", "zoo-test/needs-prompts", "pics", "pose"])
        .stderr();
    assert!(
        err.contains("needs a prompt for every sample")
            && err.contains("requires `prompt_field`")
            && err.contains("--prompt-field FIELD"),
        "{err}"
    );

    let err = sandbox
        .fails(&[
            "models",
            "apply",
            "zoo-test/prompted",
            "pics",
            "pose",
            "--prompt-field",
            "people",
        ])
        .stderr();
    assert!(
        err.contains("dataset `pics` has no label field `people`") && err.contains("`det_boxes`"),
        "{err}"
    );
    // Nothing ran, nothing was stored.
    let info = sandbox.ok(&["datasets", "info", "pics", "--json"]).json();
    assert!(info.to_string().contains("det_boxes"), "{info}");
    assert!(!info.to_string().contains("\"pose"), "{info}");
    assert!(!info.to_string().contains("\"pred"), "{info}");
}
