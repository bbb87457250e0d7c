//! The apply/embed engine with a small pure-Rust model that computes its
//! output from the pixels.
#![allow(clippy::unwrap_used)]

mod labels;

use std::path::PathBuf;
use std::sync::Arc;

use zoo_model_core::{
    ApplyError, ApplyOptions, ApplySummary, EmbedOutcome, Image, ImageLoader, Input, InputData,
    Label, Model, ModelError, Outcome, Prediction, Preprocess, Sample, apply, apply_on, embed,
    embed_on,
};

/// Mean brightness: "bright" when above 0.5, confidence = distance from 0.5
/// times two; the embedding is the per-channel mean.
struct Brightness {
    forwards: Vec<usize>,
    logits: bool,
    /// Setups and teardowns seen, in order.
    lifecycle: Vec<&'static str>,
}

struct Scale;

impl Preprocess for Scale {
    fn preprocess(&self, image: Image) -> Result<Input, ModelError> {
        let (width, height) = (image.width as usize, image.height as usize);
        let mut data = vec![0.0; 3 * width * height];
        for (index, chunk) in image.pixels.chunks(3).enumerate() {
            for channel in 0..3 {
                data[channel * width * height + index] = f32::from(chunk[channel]) / 255.0;
            }
        }
        Ok(Input {
            shape: [3, height, width],
            data: InputData::Values(data),
            original_size: (image.width, image.height),
        })
    }
}

impl Model for Brightness {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        Arc::new(Scale)
    }

    fn predict_all(&mut self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        self.forwards.push(inputs.len());
        let shape = inputs[0].shape;
        assert!(
            inputs.iter().all(|input| input.shape == shape),
            "mixed shapes in one call"
        );
        Ok(inputs
            .iter()
            .map(|input| {
                let values = input.data.values().expect("Scale makes values");
                let mean = values.iter().sum::<f32>() / values.len() as f32;
                Prediction::Label(Some(Label::Classification {
                    label: if mean > 0.5 { "bright" } else { "dark" }.into(),
                    confidence: Some(f64::from((mean - 0.5).abs() * 2.0)),
                    logits: self.logits.then(|| vec![mean, 1.0 - mean]),
                }))
            })
            .collect())
    }

    fn has_logits(&self) -> bool {
        true
    }

    fn setup(&mut self) -> Result<(), ModelError> {
        self.lifecycle.push("setup");
        Ok(())
    }

    fn teardown(&mut self) {
        self.lifecycle.push("teardown");
    }

    fn set_store_logits(&mut self, store: bool) {
        self.logits = store;
    }

    fn has_embeddings(&self) -> bool {
        true
    }

    fn embed_all(&mut self, inputs: &[Input]) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(inputs
            .iter()
            .map(|input| {
                let plane = input.shape[1] * input.shape[2];
                let values = input.data.values().expect("Scale makes values");
                (0..3)
                    .map(|c| values[c * plane..(c + 1) * plane].iter().sum::<f32>() / plane as f32)
                    .collect()
            })
            .collect())
    }
}

/// Images are synthesised from the file name: `<value>-<width>.img`;
/// anything else is unreadable.
struct Synthetic;

impl ImageLoader for Synthetic {
    fn load(&self, sample: &Sample) -> Result<Image, String> {
        let name = sample
            .filepath
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let (value, width) = name
            .split_once('-')
            .ok_or_else(|| format!("cannot decode `{}`", sample.filepath.display()))?;
        let value: u8 = value.parse().map_err(|_| "bad value".to_owned())?;
        let width: u32 = width.parse().map_err(|_| "bad width".to_owned())?;
        Ok(Image::new(width, 4, vec![value; width as usize * 4 * 3]).unwrap())
    }
}

fn samples(names: &[&str]) -> Vec<Sample> {
    names
        .iter()
        .enumerate()
        .map(|(id, name)| Sample {
            id: id as i64,
            filepath: PathBuf::from(format!("{name}.img")),
        })
        .collect()
}

/// `apply_on` over the model `copies` on the samples `names`: its result,
/// every outcome in the order batches were stored, and how many batches.
fn apply_copies<M: Model>(
    copies: &mut [M],
    names: &[&str],
    options: &ApplyOptions,
) -> (Result<ApplySummary, ApplyError>, Vec<Outcome>, usize) {
    let mut models: Vec<&mut dyn Model> = copies
        .iter_mut()
        .map(|model| model as &mut dyn Model)
        .collect();
    let mut outcomes = Vec::new();
    let mut batches = 0;
    let result = apply_on(
        &mut models,
        &samples(names),
        &Synthetic,
        options,
        &mut |batch| {
            batches += 1;
            outcomes.extend(batch);
            Ok(())
        },
    );
    (result, outcomes, batches)
}

fn run(options: &ApplyOptions, names: &[&str]) -> (Vec<Outcome>, Vec<usize>, usize) {
    let mut model = Brightness {
        forwards: Vec::new(),
        logits: false,
        lifecycle: Vec::new(),
    };
    let mut outcomes = Vec::new();
    let summary = apply(
        &mut model,
        &samples(names),
        &Synthetic,
        options,
        &mut |batch| {
            outcomes.extend(batch);
            Ok(())
        },
    )
    .unwrap();
    (outcomes, model.forwards, summary.failed)
}

#[test]
fn labels_come_from_pixels_in_order_with_failures_recorded() {
    let names = ["250-8", "10-8", "corrupt", "200-16", "30-8"];
    let options = ApplyOptions {
        batch_size: 4,
        ..ApplyOptions::default()
    };
    let (outcomes, forwards, failed) = run(&options, &names);
    assert_eq!(outcomes.len(), 5);
    assert_eq!(failed, 1);
    let labels: Vec<String> = outcomes
        .iter()
        .map(|outcome| match outcome {
            Outcome::Labels { fields, .. } => match &fields[0].1 {
                Some(Label::Classification { label, .. }) => label.clone(),
                other => panic!("{other:?}"),
            },
            Outcome::Failed { error, .. } => format!("failed: {error}"),
        })
        .collect();
    assert_eq!(
        labels,
        vec![
            "bright",
            "dark",
            "failed: cannot decode `corrupt.img`",
            "bright",
            "dark"
        ]
    );
    // Batch one holds two widths (8, 16) plus the failure: two forwards;
    // batch two holds one image.
    assert_eq!(forwards, vec![2, 1, 1]);

    let serial = ApplyOptions {
        pipelined: false,
        ..options
    };
    assert_eq!(run(&serial, &names).0, outcomes);
}

#[test]
fn thresholds_logits_and_stopping_on_failure() {
    let options = ApplyOptions {
        confidence_thresh: Some(0.5),
        store_logits: true,
        label_field: "p".into(),
        ..ApplyOptions::default()
    };
    let (outcomes, _, _) = run(&options, &["250-8", "140-8"]);
    let Outcome::Labels { fields, .. } = &outcomes[0] else {
        panic!()
    };
    assert_eq!(fields[0].0, "p");
    let Some(Label::Classification {
        logits: Some(logits),
        ..
    }) = &fields[0].1
    else {
        panic!("{fields:?}")
    };
    assert_eq!(logits.len(), 2);
    let Outcome::Labels { fields, .. } = &outcomes[1] else {
        panic!()
    };
    assert_eq!(
        fields[0].1,
        Some(Label::EmptyClassification),
        "below the threshold: FiftyOne's empty `Classification()`, not null"
    );

    let strict = ApplyOptions {
        skip_failures: false,
        ..ApplyOptions::default()
    };
    let mut model = Brightness {
        forwards: Vec::new(),
        logits: false,
        lifecycle: Vec::new(),
    };
    let err = apply(
        &mut model,
        &samples(&["10-8", "corrupt"]),
        &Synthetic,
        &strict,
        &mut |_| Ok(()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("corrupt.img"), "{err}");
}

#[test]
fn embeddings_are_vectors_per_sample() {
    let mut model = Brightness {
        forwards: Vec::new(),
        logits: false,
        lifecycle: Vec::new(),
    };
    let mut vectors = Vec::new();
    let summary = embed(
        &mut model,
        &samples(&["51-8", "corrupt", "102-4"]),
        &Synthetic,
        &ApplyOptions::default(),
        &mut |batch| {
            vectors.extend(batch);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(summary.succeeded, 2);
    assert_eq!(vectors.len(), 3);
    let EmbedOutcome::Vector { values, .. } = &vectors[0] else {
        panic!()
    };
    assert!(
        values.iter().all(|value| (value - 0.2).abs() < 1e-6),
        "{values:?}"
    );
    assert!(matches!(vectors[1], EmbedOutcome::Failed { .. }));
}

#[test]
fn a_storage_failure_stops_the_pipeline_without_hanging() {
    let names: Vec<String> = (0..50).map(|index| format!("{}-8", index * 5)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut model = Brightness {
        forwards: Vec::new(),
        logits: false,
        lifecycle: Vec::new(),
    };
    let options = ApplyOptions {
        batch_size: 2,
        ..ApplyOptions::default()
    };
    let err = apply(
        &mut model,
        &samples(&names),
        &Synthetic,
        &options,
        &mut |_| Err("disk full".into()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("disk full"));
    assert_eq!(
        model.lifecycle,
        vec!["setup", "teardown"],
        "teardown runs even when the run fails"
    );
}

fn brightness() -> Brightness {
    Brightness {
        forwards: Vec::new(),
        logits: false,
        lifecycle: Vec::new(),
    }
}

#[test]
fn several_workers_give_every_sample_one_result_and_set_each_copy_up() {
    // 40 samples in batches of 3: 14 batches shared by 3 copies.
    let names: Vec<String> = (0..40)
        .map(|index| {
            if index % 13 == 5 {
                "corrupt".to_owned()
            } else {
                format!("{}-{}", index * 6, 4 + index % 3 * 4)
            }
        })
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = ApplyOptions {
        batch_size: 3,
        ..ApplyOptions::default()
    };
    let (serial, _, serial_failed) = run(&options, &names);
    let mut copies = [brightness(), brightness(), brightness()];
    let (summary, mut outcomes, batches) = apply_copies(&mut copies, &names, &options);
    let summary = summary.unwrap();
    assert_eq!(batches, 14);
    assert_eq!(summary.failed, serial_failed);
    assert_eq!(summary.succeeded + summary.failed, 40);
    // Batches may finish in any order; per sample, the same outcome.
    let id = |outcome: &Outcome| match outcome {
        Outcome::Labels { sample_id, .. } | Outcome::Failed { sample_id, .. } => *sample_id,
    };
    outcomes.sort_by_key(id);
    assert_eq!(outcomes, serial);
    // Every copy was set up and torn down once, and the work was shared.
    for copy in &copies {
        assert_eq!(copy.lifecycle, ["setup", "teardown"]);
    }
    let forwards: usize = copies.iter().map(|copy| copy.forwards.len()).sum();
    assert!(forwards >= 14);
}

#[test]
fn a_run_shorter_than_one_batch_per_copy_is_shared_by_every_copy() {
    // 16 samples in batches of 16 on 2 copies: each copy runs 8, so that
    // neither idles while the other runs on half the threads.
    let names: Vec<String> = (0..16).map(|index| format!("{}-8", index * 10)).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = ApplyOptions {
        batch_size: 16,
        ..ApplyOptions::default()
    };
    let (serial, serial_forwards, _) = run(&options, &names);
    assert_eq!(serial_forwards, [16], "one copy takes the whole batch");
    let mut copies = [brightness(), brightness()];
    let (summary, mut outcomes, _) = apply_copies(&mut copies, &names, &options);
    summary.unwrap();
    // Two batches of 8, one for each copy to take (which copy takes which
    // is up to the threads).
    let mut forwards: Vec<usize> = copies
        .iter()
        .flat_map(|copy| copy.forwards.iter().copied())
        .collect();
    forwards.sort_unstable();
    assert_eq!(forwards, [8, 8]);
    let id = |outcome: &Outcome| match outcome {
        Outcome::Labels { sample_id, .. } | Outcome::Failed { sample_id, .. } => *sample_id,
    };
    outcomes.sort_by_key(id);
    assert_eq!(outcomes, serial);
}

#[test]
fn a_failure_in_one_worker_stops_the_run() {
    let names = ["250-8", "10-8", "corrupt", "200-16", "30-8", "40-8", "50-8"];
    let options = ApplyOptions {
        batch_size: 1,
        skip_failures: false,
        ..ApplyOptions::default()
    };
    let mut copies = [brightness(), brightness()];
    let mut models: Vec<&mut dyn Model> = copies
        .iter_mut()
        .map(|model| model as &mut dyn Model)
        .collect();
    let error = apply_on(
        &mut models,
        &samples(&names),
        &Synthetic,
        &options,
        &mut |_| Ok(()),
    )
    .unwrap_err();
    assert!(error.to_string().contains("corrupt.img"), "{error}");
    // A storage failure stops it too, without hanging.
    let mut copies = [brightness(), brightness()];
    let mut models: Vec<&mut dyn Model> = copies
        .iter_mut()
        .map(|model| model as &mut dyn Model)
        .collect();
    let options = ApplyOptions {
        batch_size: 1,
        ..ApplyOptions::default()
    };
    let error = embed_on(
        &mut models,
        &samples(&names),
        &Synthetic,
        &options,
        &mut |_| Err("disk full".into()),
    )
    .unwrap_err();
    assert!(error.to_string().contains("disk full"), "{error}");
    for copy in &copies {
        assert_eq!(copy.lifecycle, ["setup", "teardown"]);
    }
}

/// Panics in `predict_all` when a batch holds an image of value 77, the way
/// tch raises a libtorch error.
struct PanicsOn77(Brightness);

impl Model for PanicsOn77 {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        self.0.preprocessor()
    }

    fn predict_all(&mut self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        if inputs.iter().any(|input| {
            input
                .data
                .values()
                .is_some_and(|values| (values[0] * 255.0).round() as u8 == 77)
        }) {
            panic!("Torch error: shape mismatch in a forward");
        }
        self.0.predict_all(inputs)
    }

    fn setup(&mut self) -> Result<(), ModelError> {
        self.0.setup()
    }

    fn teardown(&mut self) {
        self.0.teardown();
    }
}

fn failed_ids(outcomes: &[Outcome]) -> Vec<(i64, String)> {
    let mut failed: Vec<(i64, String)> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Outcome::Failed { sample_id, error } => Some((*sample_id, error.clone())),
            Outcome::Labels { .. } => None,
        })
        .collect();
    failed.sort();
    failed
}

#[test]
fn panic_in_one_batch_fails_only_that_batch() {
    // Batches of two: the second batch (ids 2 and 3) holds the 77.
    let names = ["10-8", "20-8", "77-8", "30-8", "40-8", "50-8"];
    for (pipelined, workers) in [(true, 1), (false, 1), (true, 2)] {
        let options = ApplyOptions {
            batch_size: 2,
            pipelined,
            ..ApplyOptions::default()
        };
        let mut copies: Vec<PanicsOn77> = (0..workers).map(|_| PanicsOn77(brightness())).collect();
        let (summary, outcomes, _) = apply_copies(&mut copies, &names, &options);
        let summary = summary.unwrap();
        assert_eq!((summary.succeeded, summary.failed), (4, 2));
        let failed = failed_ids(&outcomes);
        assert_eq!(
            failed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [2, 3],
            "pipelined {pipelined}, {workers} workers"
        );
        for (_, error) in &failed {
            assert!(
                error.contains("the model panicked: Torch error: shape mismatch"),
                "{error}"
            );
        }
        for copy in &copies {
            assert_eq!(copy.0.lifecycle, ["setup", "teardown"]);
        }
    }
    // With failures not skipped, the panic stops the run as an error, not a
    // crash.
    let strict = ApplyOptions {
        batch_size: 2,
        skip_failures: false,
        ..ApplyOptions::default()
    };
    let mut model = PanicsOn77(brightness());
    let error = apply(
        &mut model,
        &samples(&names),
        &Synthetic,
        &strict,
        &mut |_| Ok(()),
    )
    .unwrap_err();
    assert!(error.to_string().contains("the model panicked"), "{error}");
}

/// Panics while decoding `panic.img`, as a decoder bug on a hostile file
/// would.
struct PanickyLoader;

impl ImageLoader for PanickyLoader {
    fn load(&self, sample: &Sample) -> Result<Image, String> {
        if sample.filepath.to_string_lossy().starts_with("panic") {
            panic!("index out of bounds in a decoder");
        }
        Synthetic.load(sample)
    }
}

#[test]
fn a_decoder_panic_fails_only_that_sample() {
    for pipelined in [true, false] {
        let options = ApplyOptions {
            batch_size: 3,
            pipelined,
            ..ApplyOptions::default()
        };
        let mut model = brightness();
        let mut outcomes = Vec::new();
        let summary = apply(
            &mut model,
            &samples(&["10-8", "panic", "30-8", "40-8"]),
            &PanickyLoader,
            &options,
            &mut |batch| {
                outcomes.extend(batch);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!((summary.succeeded, summary.failed), (3, 1));
        let failed = failed_ids(&outcomes);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, 1);
        assert!(
            failed[0]
                .1
                .contains("reading `panic.img` panicked: index out of bounds"),
            "{}",
            failed[0].1
        );
    }
}

/// A model that applies `confidence_thresh` itself, as FiftyOne's
/// `TorchImageModel` does: below it, an empty `Classification`.
struct SelfThresholding {
    inner: Brightness,
    threshold: Option<f64>,
}

impl Model for SelfThresholding {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        self.inner.preprocessor()
    }

    fn predict_all(&mut self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        let threshold = self.threshold;
        Ok(self
            .inner
            .predict_all(inputs)?
            .into_iter()
            .map(|prediction| match prediction {
                Prediction::Label(Some(label))
                    if threshold.is_some_and(|t| label.confidence().is_some_and(|c| c < t)) =>
                {
                    Prediction::Label(Some(Label::EmptyClassification))
                }
                other => other,
            })
            .collect())
    }

    fn set_confidence_thresh(&mut self, threshold: f64) -> bool {
        self.threshold = Some(threshold);
        true
    }
}

/// FiftyOne 1.22.1 `apply_model`: a model whose config has
/// `confidence_thresh` gets the call's threshold and the engine does not
/// filter again, so a classification below it is stored as an empty
/// `Classification`, not dropped.
#[test]
fn a_model_that_thresholds_itself_keeps_an_empty_classification_below_the_threshold() {
    let mut model = SelfThresholding {
        inner: Brightness {
            forwards: Vec::new(),
            logits: false,
            lifecycle: Vec::new(),
        },
        threshold: None,
    };
    let options = ApplyOptions {
        confidence_thresh: Some(0.5),
        label_field: "p".into(),
        ..ApplyOptions::default()
    };
    let mut outcomes = Vec::new();
    apply(
        &mut model,
        &samples(&["250-8", "140-8"]),
        &Synthetic,
        &options,
        &mut |batch| {
            outcomes.extend(batch);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(model.threshold, Some(0.5));
    let labels: Vec<Option<Label>> = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Outcome::Labels { mut fields, .. } => fields.remove(0).1,
            Outcome::Failed { error, .. } => panic!("{error}"),
        })
        .collect();
    assert!(matches!(&labels[0], Some(Label::Classification { label, .. }) if label == "bright"));
    assert_eq!(labels[1], Some(Label::EmptyClassification));
}

/// Dies (a fatal [`ModelError`], as the Python model host reports a dead
/// worker) on the batch holding an image of value 77, and would succeed
/// on every later batch.
struct DiesOn77(Brightness);

impl Model for DiesOn77 {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        self.0.preprocessor()
    }

    fn predict_all(&mut self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        let dies = inputs.iter().any(|input| {
            input
                .data
                .values()
                .is_some_and(|values| (values[0] * 255.0).round() as u8 == 77)
        });
        if dies {
            return Err(ModelError::fatal("the model host died (signal 9)".into()));
        }
        self.0.predict_all(inputs)
    }
}

#[test]
fn a_fatal_model_error_records_the_batch_then_stops_the_run() {
    // Batches of two: the second batch (ids 2 and 3) dies; ids 4 and 5 are
    // never run, so a later run resumes them.
    let names = ["10-8", "20-8", "77-8", "30-8", "40-8", "50-8"];
    for (pipelined, workers) in [(true, 1), (false, 1), (true, 2)] {
        let options = ApplyOptions {
            batch_size: 2,
            pipelined,
            ..ApplyOptions::default()
        };
        let mut copies: Vec<DiesOn77> = (0..workers).map(|_| DiesOn77(brightness())).collect();
        let (error, outcomes, _) = apply_copies(&mut copies, &names, &options);
        let error = error.unwrap_err();
        assert!(error.to_string().contains("the model host died"), "{error}");
        let failed = failed_ids(&outcomes);
        assert_eq!(
            failed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [2, 3],
            "pipelined {pipelined}, workers {workers}"
        );
        assert!(failed[0].1.contains("the model host died"), "{failed:?}");
        let stored: Vec<i64> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                Outcome::Labels { sample_id, .. } => Some(*sample_id),
                Outcome::Failed { .. } => None,
            })
            .collect();
        // One copy runs the batches in turn, so the first is stored before
        // the second dies; with two, the other copy's batches race the
        // fatal error: each is stored whole (its batch finished before the
        // error arrived) or not at all (resumed by a later run), never half.
        if workers == 1 {
            assert!(stored.contains(&0) && stored.contains(&1), "{stored:?}");
            assert!(!stored.contains(&4) && !stored.contains(&5), "{stored:?}");
        } else {
            assert!(
                stored.iter().all(|id| [0, 1, 4, 5].contains(id)),
                "{stored:?}"
            );
            for pair in [[0, 1], [4, 5]] {
                assert_eq!(
                    stored.contains(&pair[0]),
                    stored.contains(&pair[1]),
                    "a batch stored half: {stored:?}"
                );
            }
        }
    }
}

/// [`Brightness`] that takes batches ahead, recording what it was handed
/// and what it was called on (each input named by its buffer's address).
struct Ahead {
    inner: Brightness,
    ragged: bool,
    /// Batches handed ahead and not yet called on, oldest first.
    announced: std::collections::VecDeque<(Vec<usize>, bool)>,
    /// Per call: the inputs, and how many other batches were announced
    /// when it came (the ones after it); `None`: it was not announced.
    calls: Vec<(Vec<usize>, Option<usize>)>,
}

impl Ahead {
    fn new(ragged: bool) -> Self {
        Self {
            inner: brightness(),
            ragged,
            announced: Default::default(),
            calls: Vec::new(),
        }
    }

    fn call(&mut self, inputs: &[Input], embeddings: bool) {
        let ids = addresses(inputs.iter());
        let Some(front) = self.announced.pop_front() else {
            self.calls.push((ids, None));
            return;
        };
        assert_eq!(
            front,
            (ids.clone(), embeddings),
            "a call must be the oldest batch handed ahead"
        );
        self.calls.push((ids, Some(self.announced.len())));
    }
}

fn addresses<'a>(inputs: impl Iterator<Item = &'a Input>) -> Vec<usize> {
    inputs
        .map(|input| input.data.values().unwrap().as_ptr() as usize)
        .collect()
}

impl Model for Ahead {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        Arc::new(Scale)
    }

    fn prefetches(&self) -> bool {
        true
    }

    fn prefetch(&mut self, inputs: &[&Input], embeddings: bool) {
        self.announced
            .push_back((addresses(inputs.iter().copied()), embeddings));
    }

    fn ragged_batches(&self) -> bool {
        self.ragged
    }

    fn predict_all(&mut self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        self.call(inputs, false);
        // One by one: a batch that is not ragged may mix widths here.
        let mut predictions = Vec::with_capacity(inputs.len());
        for input in inputs {
            predictions.extend(self.inner.predict_all(std::slice::from_ref(input))?);
        }
        Ok(predictions)
    }

    fn has_embeddings(&self) -> bool {
        true
    }

    fn embed_all(&mut self, inputs: &[Input]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.call(inputs, true);
        self.inner.embed_all(inputs)
    }
}

#[test]
fn a_model_that_takes_batches_ahead_gets_each_before_it_runs_the_one_before() {
    // Widths vary (ragged models get one call per width) and one file is
    // unreadable (skipped: it is in no call).
    let names: Vec<String> = (0..23)
        .map(|index| match index {
            7 => "corrupt".to_owned(),
            _ => format!("{}-{}", index * 11, 4 + index % 2 * 4),
        })
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (serial, _, _) = run(
        &ApplyOptions {
            batch_size: 4,
            ..ApplyOptions::default()
        },
        &names,
    );
    let id = |outcome: &Outcome| match outcome {
        Outcome::Labels { sample_id, .. } | Outcome::Failed { sample_id, .. } => *sample_id,
    };
    for (ragged, workers, pipelined) in [
        (false, 1, true),
        (true, 1, true),
        (false, 2, true),
        (true, 2, true),
        (false, 1, false),
    ] {
        let options = ApplyOptions {
            batch_size: 4,
            pipelined,
            ..ApplyOptions::default()
        };
        let mut copies: Vec<Ahead> = (0..workers).map(|_| Ahead::new(ragged)).collect();
        let (summary, mut outcomes, _) = apply_copies(&mut copies, &names, &options);
        summary.unwrap();
        outcomes.sort_by_key(id);
        let case = format!("ragged {ragged}, {workers} workers, pipelined {pipelined}");
        assert_eq!(outcomes, serial, "{case}");
        for copy in &copies {
            assert!(
                copy.announced.is_empty(),
                "every batch handed ahead was called: {case}"
            );
            // A copy whose thread started late may have found no batch left.
            let Some(((_, last_ahead), before)) = copy.calls.split_last() else {
                continue;
            };
            if pipelined {
                // Every call but the copy's last came with the next batch
                // already handed over.
                assert!(
                    before
                        .iter()
                        .all(|(_, ahead)| ahead.is_some_and(|n| n >= 1)),
                    "{case}: {:?}",
                    copy.calls
                );
                assert_eq!(*last_ahead, Some(0), "{case}");
            } else {
                // Decoding in turn (`--pipeline off`) hands nothing ahead.
                assert!(
                    copy.calls.iter().all(|(_, ahead)| ahead.is_none()),
                    "{case}"
                );
            }
        }
        let calls: usize = copies.iter().map(|copy| copy.calls.len()).sum();
        // 6 batches; ragged ones are called once per width in a batch.
        assert_eq!(calls, if ragged { 12 } else { 6 }, "{case}");
    }

    // Embeddings are announced as such.
    let mut model = Ahead::new(false);
    let mut vectors = 0;
    embed(
        &mut model,
        &samples(&names),
        &Synthetic,
        &ApplyOptions::default(),
        &mut |batch| {
            vectors += batch.len();
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(vectors, 23);
    assert!(model.announced.is_empty() && !model.calls.is_empty());
}

/// Names each prediction after the sample id the engine gave with its
/// input, checking that the input is that sample's image (its value is
/// `id * 11`); records the ids handed ahead and called.
struct SampleNamed {
    ragged: bool,
    ahead: std::collections::VecDeque<Vec<i64>>,
    called: Vec<Vec<i64>>,
}

impl Model for SampleNamed {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        Arc::new(Scale)
    }

    fn ragged_batches(&self) -> bool {
        self.ragged
    }

    fn prefetches(&self) -> bool {
        true
    }

    fn prefetch_samples(&mut self, ids: &[i64], _: &[&Input], _: bool) {
        self.ahead.push_back(ids.to_vec());
    }

    fn predict_all(&mut self, _: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        Err(ModelError::unsupported(
            "the engine names the samples".into(),
        ))
    }

    fn predict_samples(
        &mut self,
        ids: &[i64],
        inputs: &[Input],
    ) -> Result<Vec<Prediction>, ModelError> {
        assert_eq!(
            self.ahead.pop_front().as_deref(),
            Some(ids),
            "handed ahead first"
        );
        self.called.push(ids.to_vec());
        Ok(ids
            .iter()
            .zip(inputs)
            .map(|(id, input)| {
                let value = input.data.values().unwrap()[0];
                assert!(
                    (value * 255.0 - (*id * 11) as f32).abs() < 1e-3,
                    "sample {id}"
                );
                Prediction::Label(Some(Label::Classification {
                    label: id.to_string(),
                    confidence: None,
                    logits: None,
                }))
            })
            .collect())
    }
}

/// `predict_samples` gets each input with its own sample's id (what a
/// model with per-sample prompts reads them by), in ragged groups and
/// across copies; an unreadable sample is in no call.
#[test]
fn each_input_comes_with_its_samples_id() {
    let names: Vec<String> = (0..15)
        .map(|index| match index {
            5 => "corrupt".to_owned(),
            _ => format!("{}-{}", index * 11, 4 + index % 3 * 2),
        })
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for (ragged, workers) in [(false, 1), (true, 1), (true, 2)] {
        let options = ApplyOptions {
            batch_size: 4,
            ..ApplyOptions::default()
        };
        let mut copies: Vec<SampleNamed> = (0..workers)
            .map(|_| SampleNamed {
                ragged,
                ahead: std::collections::VecDeque::new(),
                called: Vec::new(),
            })
            .collect();
        let (summary, outcomes, _) = apply_copies(&mut copies, &names, &options);
        let summary = summary.unwrap();
        assert_eq!((summary.succeeded, summary.failed), (14, 1));
        for outcome in outcomes {
            match outcome {
                Outcome::Labels { sample_id, fields } => {
                    let Some(Label::Classification { label, .. }) = &fields[0].1 else {
                        panic!("{fields:?}");
                    };
                    assert_eq!(label, &sample_id.to_string());
                }
                Outcome::Failed { sample_id, .. } => assert_eq!(sample_id, 5),
            }
        }
        let mut called: Vec<i64> = copies.iter().flat_map(|c| c.called.concat()).collect();
        called.sort_unstable();
        assert_eq!(called, (0..15).filter(|id| *id != 5).collect::<Vec<_>>());
    }
}
