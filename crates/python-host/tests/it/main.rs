//! The model host against real FiftyOne model classes: the numpy-only test
//! source of `zoo-test-support` (`hosted_source.py`), run by the Python of
//! `ZOO_TEST_FIFTYONE_PYTHON` (FiftyOne 1.22.1 without torch, provisioned
//! by `cargo xtask ci`). Without it the tests say they are skipped, and
//! fail in CI.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zoo_model_core::{Image, Input, Label, Model, ModelErrorKind, Prediction};
use zoo_python_host::{HostError, HostSpec, HostedModel, Loaded, load};
use zoo_test_support::HOSTED_SOURCE;

#[allow(clippy::print_stderr)]
fn python() -> Option<String> {
    match std::env::var("ZOO_TEST_FIFTYONE_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ if std::env::var_os("ZOO_CI").is_some() || std::env::var_os("CI").is_some() => {
            panic!("ZOO_TEST_FIFTYONE_PYTHON is not set: the model host tests need it in CI")
        }
        _ => {
            eprintln!("SKIPPED: model host tests (set ZOO_TEST_FIFTYONE_PYTHON)");
            None
        }
    }
}

/// The source in a temporary folder, with a weights file for `kind`.
struct Source {
    dir: tempfile::TempDir,
    python: String,
}

impl Source {
    fn new(python: String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("__init__.py"), HOSTED_SOURCE).unwrap();
        Self { dir, python }
    }

    fn spec(&self, kind: &str, kwargs: Value) -> HostSpec {
        let model_path = self.dir.path().join(format!("{kind}.txt"));
        fs_err::write(&model_path, format!("numpy weights for {kind}")).unwrap();
        let Value::Object(kwargs) = kwargs else {
            panic!("kwargs are an object")
        };
        HostSpec {
            python: self.python.clone(),
            init: self.dir.path().join("__init__.py"),
            model_name: format!("zoo-test/{kind}"),
            model_path,
            kwargs,
            load_timeout: Duration::from_secs(120),
            batch_timeout: Duration::from_secs(60),
            threads: None,
            gpu: None,
        }
    }

    fn model(&self, kind: &str, kwargs: Value) -> HostedModel {
        match load(&self.spec(kind, kwargs)).unwrap() {
            Loaded::Model(model) => model,
            Loaded::Config(config) => panic!("a config: {config}"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A `width x height` image of one colour.
fn input(model: &HostedModel, width: u32, height: u32, rgb: [u8; 3]) -> Input {
    let pixels = (0..width * height).flat_map(|_| rgb).collect();
    model
        .preprocessor()
        .preprocess(Image::new(width, height, pixels).unwrap())
        .unwrap()
}

fn classification(prediction: &Prediction) -> (String, f64, Option<Vec<f32>>) {
    match prediction {
        Prediction::Label(Some(Label::Classification {
            label,
            confidence,
            logits,
        })) => (label.clone(), confidence.unwrap(), logits.clone()),
        other => panic!("not a classification: {other:?}"),
    }
}

#[test]
fn kwargs_reach_load_model_and_batches_come_back_as_labels_logits_and_embeddings() {
    let Some(python) = python() else { return };
    let source = Source::new(python);
    let mut model = source.model(
        "colour",
        json!({"classes": ["rouge", "vert", "bleu"], "scale": 4.0}),
    );
    let info = model.info().clone();
    assert!(info.class.ends_with("ColourClassifier"), "{info:?}");
    assert!(info.has_logits && info.has_embeddings && !info.ragged_batches);
    assert!(!info.thresholds_itself, "{info:?}");
    model.set_store_logits(true);
    model.setup().unwrap();
    let inputs = [
        input(&model, 5, 3, [255, 0, 0]),
        input(&model, 7, 2, [0, 0, 255]),
        input(&model, 4, 4, [0, 255, 0]),
    ];
    let predictions = model.predict_all(&inputs).unwrap();
    let labels: Vec<String> = predictions
        .iter()
        .map(|prediction| classification(prediction).0)
        .collect();
    assert_eq!(labels, ["rouge", "bleu", "vert"]);
    let (_, confidence, logits) = classification(&predictions[0]);
    assert_eq!(logits.unwrap(), [4.0, 0.0, 0.0]);
    let expected = 4f64.exp() / (4f64.exp() + 2.0);
    assert!((confidence - expected).abs() < 1e-6, "{confidence}");
    let embeddings = model.embed_all(&inputs).unwrap();
    assert_eq!(embeddings[1], [0.0, 0.0, 255.0, 0.0, 0.0, 0.0]);
    assert_eq!(embeddings.len(), 3);
    model.teardown();
}

#[test]
fn ragged_dict_models_threshold_themselves_and_fail_per_image() {
    let Some(python) = python() else { return };
    let source = Source::new(python);
    let mut model = source.model("boxes", json!({"fail_width": 13}));
    assert!(model.ragged_batches() && model.info().thresholds_itself);
    assert!(!model.has_logits() && !model.has_embeddings());
    // The model thresholds itself, so the engine must not filter again.
    assert!(model.set_confidence_thresh(0.5));
    model.setup().unwrap();
    let image = input(&model, 20, 10, [204, 51, 153]);
    let Prediction::Map(map) = model.predict(&image).unwrap() else {
        panic!("a dict of labels")
    };
    let Some(Label::Detections(boxes)) = &map["boxes"] else {
        panic!("{map:?}")
    };
    let names: Vec<&str> = boxes.iter().map(|b| b.label.as_str()).collect();
    assert_eq!(names, ["r", "b"], "g (0.2) is below the threshold");
    assert_eq!(boxes[0].bounding_box, [0.0, 0.0, 0.5, 1.0]);
    let Some(Label::Classification { label, .. }) = &map["size"] else {
        panic!("{map:?}")
    };
    assert_eq!(label, "20x10");
    let error = model.predict(&input(&model, 13, 2, [0, 0, 0])).unwrap_err();
    assert!(
        error.kind() == ModelErrorKind::Inference && {
            let text = error.message();
            text.contains("ValueError: cannot handle an image 13 pixels wide")
        },
        "{error}"
    );
    // Not fatal: the next image runs.
    assert!(model.predict(&image).is_ok());
}

#[test]
fn a_model_returning_something_else_than_a_label_fails_that_batch() {
    let Some(python) = python() else { return };
    let source = Source::new(python);
    let mut model = source.model("bad-output", json!({}));
    model.setup().unwrap();
    let error = model
        .predict(&input(&model, 3, 3, [1, 2, 3]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("the model returned a `str`, which is not a FiftyOne `Label`"),
        "{error}"
    );
}

#[test]
fn a_worker_that_dies_is_fatal_with_its_stderr_and_later_calls_fail_fast() {
    let Some(python) = python() else { return };
    let source = Source::new(python);
    let mut model = source.model("colour", json!({"die_after": 1}));
    model.setup().unwrap();
    let image = input(&model, 4, 4, [9, 9, 9]);
    assert!(model.predict_all(std::slice::from_ref(&image)).is_ok());
    let error = model.predict_all(std::slice::from_ref(&image)).unwrap_err();
    assert!(
        error.kind() == ModelErrorKind::Fatal && {
            let text = error.message();
            text.contains("the model host of `zoo-test/colour` died") && text.contains("signal: 9")
        },
        "{error}"
    );
    let started = Instant::now();
    let again = model.predict_all(&[image]).unwrap_err();
    assert!(again.is_fatal(), "{again}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

fn alive(pid: &str) -> bool {
    fs_err::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

#[test]
fn a_hung_worker_is_killed_with_every_process_it_started() {
    let Some(python) = python() else { return };
    let source = Source::new(python);
    let pid_file = source.path().join("child.pid");
    let mut spec = source.spec("colour", json!({"hang_pid_file": pid_file}));
    spec.batch_timeout = Duration::from_secs(3);
    let Loaded::Model(mut model) = load(&spec).unwrap() else {
        panic!("a model")
    };
    model.setup().unwrap();
    let error = model
        .predict_all(&[input(&model, 2, 2, [0, 0, 0])])
        .unwrap_err();
    assert!(
        error.kind() == ModelErrorKind::Fatal && {
            let text = error.message();
            text.contains("did not answer within 3s (predict), so it was killed")
        },
        "{error}"
    );
    let child = fs_err::read_to_string(&pid_file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(child.trim()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(child.trim()), "the hook's `sleep` outlived it");
}

#[test]
fn load_failures_name_the_model_the_cause_and_what_to_do() {
    let Some(python) = python() else { return };
    let source = Source::new(python);
    let error = load(&source.spec("not-a-model", json!({}))).unwrap_err();
    assert!(
        error.to_string().contains(
            "load_model returned a `object`, which is neither a `fiftyone.core.models.Model` nor a JSON config"
        ),
        "{error}"
    );
    let error = load(&source.spec("needs-missing", json!({}))).unwrap_err();
    assert!(
        matches!(&error, HostError::MissingModule { module, .. } if module == "zoo_missing_module_for_tests"),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("zoo models requirements zoo-test/needs-missing --install"),
        "{text}"
    );
    let error = load(&source.spec("raises", json!({})))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("RuntimeError: the weights of zoo-test/raises are corrupt")
            && error.contains("Traceback"),
        "{error}"
    );
    match load(&source.spec("config", json!({"labels": ["x"]}))).unwrap() {
        Loaded::Config(config) => assert_eq!(config["config"]["labels"], json!(["x"])),
        Loaded::Model(model) => panic!("a model: {model:?}"),
    }
    let mut spec = source.spec("colour", json!({}));
    spec.python = "/nonexistent/zoo-test-python".into();
    let error = load(&spec).unwrap_err().to_string();
    assert!(
        error.contains("cannot start the Python interpreter `/nonexistent/zoo-test-python`")
            && error.contains("ZOO_PYTHON"),
        "{error}"
    );
}

#[test]
fn a_python_without_fiftyone_is_named_with_how_to_install_it() {
    // The system's `python3` has no FiftyOne on this machine; a venv made
    // for this test would need the network. A fake interpreter stands in:
    // it runs the real one with an empty `fiftyone` module path.
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let shadow = dir.path().join("shadow");
    fs_err::create_dir_all(shadow.join("fiftyone")).unwrap();
    fs_err::write(
        shadow.join("fiftyone/__init__.py"),
        "raise ModuleNotFoundError(\"No module named 'fiftyone'\", name='fiftyone')\n",
    )
    .unwrap();
    let wrapper = dir.path().join("python");
    fs_err::write(
        &wrapper,
        format!(
            "#!/bin/sh\nPYTHONPATH={} exec {} \"$@\"\n",
            shadow.display(),
            python
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let source = Source::new(wrapper.to_str().unwrap().to_owned());
    let error = load(&source.spec("colour", json!({})))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("cannot import `fiftyone`") && error.contains("-m pip install fiftyone"),
        "{error}"
    );
}

#[test]
fn a_host_given_a_thread_share_runs_with_it_and_reports_where_its_time_went() {
    let Some(python) = python() else { return };
    let source = Source::new(python);
    let mut spec = source.spec("threads", json!({}));
    spec.threads = Some(3);
    let Loaded::Model(mut model) = load(&spec).unwrap() else {
        panic!("a model")
    };
    // No torch in this venv: the host reports the OMP_NUM_THREADS it runs
    // with, which the model sees too.
    assert_eq!(model.info().threads, Some(3), "{:?}", model.info());
    assert!(!model.info().data_loader, "{:?}", model.info());
    model.setup().unwrap();
    let inputs = [
        input(&model, 4, 4, [1, 2, 3]),
        input(&model, 4, 4, [1, 2, 3]),
    ];
    let predictions = model.predict_all(&inputs).unwrap();
    let Prediction::Label(Some(Label::Classification { label, .. })) = &predictions[1] else {
        panic!("{predictions:?}")
    };
    assert_eq!(label, "omp=3");
    let timing = model.timing();
    assert_eq!(timing.requests, 1, "{timing:?}");
    assert!(
        timing.model_seconds > 0.0 && timing.request_seconds >= timing.model_seconds,
        "{timing:?}"
    );
    model.teardown();

    // Without a share, the interpreter's defaults.
    let Loaded::Model(model) = load(&source.spec("threads", json!({}))).unwrap() else {
        panic!("a model")
    };
    assert_eq!(model.info().threads, None, "{:?}", model.info());
}

#[test]
fn batches_sent_ahead_answer_their_own_calls_and_unused_ones_are_read_and_dropped() {
    let Some(python) = python() else { return };
    let source = Source::new(python);
    let mut model = source.model("colour", json!({"classes": ["rouge", "vert", "bleu"]}));
    assert!(model.prefetches());
    model.setup().unwrap();
    let red = [
        input(&model, 5, 3, [255, 0, 0]),
        input(&model, 2, 2, [250, 1, 1]),
    ];
    let blue = [input(&model, 7, 2, [0, 0, 255])];
    let green = [input(&model, 4, 4, [0, 255, 0])];
    let labels = |predictions: Vec<Prediction>| -> Vec<String> {
        predictions
            .iter()
            .map(|prediction| classification(prediction).0)
            .collect()
    };
    // Two batches ahead, then their calls, in order.
    model.prefetch(&red.iter().collect::<Vec<_>>(), false);
    model.prefetch(&blue.iter().collect::<Vec<_>>(), true);
    assert_eq!(labels(model.predict_all(&red).unwrap()), ["rouge", "rouge"]);
    let vectors = model.embed_all(&blue).unwrap();
    assert_eq!(vectors.len(), 1);
    // A batch sent ahead and never called on (a run that stopped) does not
    // answer the next call: its answer is read and dropped.
    model.prefetch(&red.iter().collect::<Vec<_>>(), false);
    assert_eq!(labels(model.predict_all(&green).unwrap()), ["vert"]);
    // Sent ahead for `predict`, called with `embed`: not its answer either.
    model.prefetch(&green.iter().collect::<Vec<_>>(), false);
    assert_eq!(
        model.embed_all(&green).unwrap(),
        model.embed_all(&green).unwrap()
    );
    // One left over at teardown is read too: the host answers after it.
    model.prefetch(&blue.iter().collect::<Vec<_>>(), false);
    model.teardown();
    assert_eq!(labels(model.predict_all(&blue).unwrap()), ["bleu"]);
    let timing = model.timing();
    assert_eq!(timing.requests, 6, "{timing:?}");
    assert_eq!(timing.sent_ahead, 2, "{timing:?}");
    assert!(
        timing.boundary_seconds > 0.0 && timing.request_seconds >= timing.boundary_seconds,
        "{timing:?}"
    );
}

/// A FiftyOne `PromptMixin` embeds text prompts through the host (what
/// `zoo models embed-text` calls); a model that is none says so.
#[test]
fn prompt_models_embed_text_in_the_host_and_others_refuse() {
    let Some(python) = python() else { return };
    let source = Source::new(python);
    let mut model = source.model("prompts", json!({}));
    assert!(model.can_embed_prompts(), "{:?}", model.info());
    let prompts = [
        "a photo of a cat".to_owned(),
        "dog".to_owned(),
        String::new(),
    ];
    let vectors = model.embed_prompts(&prompts).unwrap();
    assert_eq!(
        vectors,
        [
            vec![16.0, 6.0, 97.0, 116.0, 1.0, -1.0],
            vec![3.0, 1.0, 100.0, 103.0, 1.0, -1.0],
            vec![0.0, 0.0, 0.0, 0.0, 1.0, -1.0],
        ]
    );
    // Images still run after prompts.
    model.setup().unwrap();
    let image = input(&model, 3, 3, [0, 0, 255]);
    assert_eq!(classification(&model.predict(&image).unwrap()).0, "blue");
    model.teardown();

    let mut plain = source.model("colour", json!({}));
    assert!(!plain.can_embed_prompts());
    let error = plain.embed_prompts(&prompts).unwrap_err();
    assert_eq!(error.kind(), ModelErrorKind::Unsupported, "{error}");
    assert!(
        error.to_string().contains("does not embed text prompts"),
        "{error}"
    );
}
