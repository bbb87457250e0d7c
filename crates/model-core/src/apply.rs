//! The apply/embed engine: batches, decoding pipelined with inference,
//! equal-shape grouping, thresholds, failures.

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::fields::label_fields;
use crate::image::Image;
use crate::label::Label;
use crate::model::{Input, Model, ModelError, Preprocess, SetupGuard};

/// A sample to run a model on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The sample's id in its dataset.
    pub id: i64,
    /// The image file.
    pub filepath: PathBuf,
}

/// Decodes sample images; implemented where the samples live.
pub trait ImageLoader: Sync {
    /// Loads a sample's image as RGB, or says why it cannot.
    fn load(&self, sample: &Sample) -> Result<Image, String>;
}

/// How to apply a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyOptions {
    /// Images per batch.
    pub batch_size: usize,
    /// Drop predictions below this confidence.
    pub confidence_thresh: Option<f64>,
    /// Store logits on the labels (models with logits only).
    pub store_logits: bool,
    /// Record per-sample failures and go on (else stop at the first).
    pub skip_failures: bool,
    /// The field predictions go to.
    pub label_field: String,
    /// Field names for a map prediction's keys (else `<field>_<key>`).
    pub rename: BTreeMap<String, String>,
    /// Decode the next batch while the model runs (else decode in turn).
    pub pipelined: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            batch_size: 16,
            confidence_thresh: None,
            store_logits: false,
            skip_failures: true,
            label_field: "predictions".to_owned(),
            rename: BTreeMap::new(),
            pipelined: true,
        }
    }
}

/// The result for one sample of [`apply`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Labels by field (a `None` label: nothing predicted, e.g. below the
    /// threshold).
    Labels {
        /// The sample.
        sample_id: i64,
        /// Field and label pairs.
        fields: Vec<(String, Option<Label>)>,
    },
    /// The sample failed (unreadable image, inference error).
    Failed {
        /// The sample.
        sample_id: i64,
        /// Why.
        error: String,
    },
}

/// The result for one sample of [`embed`].
#[derive(Debug, Clone, PartialEq)]
pub enum EmbedOutcome {
    /// The embedding.
    Vector {
        /// The sample.
        sample_id: i64,
        /// The vector.
        values: Vec<f32>,
    },
    /// The sample failed.
    Failed {
        /// The sample.
        sample_id: i64,
        /// Why.
        error: String,
    },
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ApplySummary {
    /// Samples with a result.
    pub succeeded: usize,
    /// Samples that failed.
    pub failed: usize,
    /// Forward calls made (one per equal-shape group).
    pub forwards: usize,
    /// Time spent in the model.
    pub model_time: Duration,
    /// Wall time of the run.
    pub wall_time: Duration,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// A sample failed and failures are not skipped.
    #[error("sample `{filepath}` failed: {error} (failures stop the run unless they are skipped)")]
    Sample {
        /// The sample's file.
        filepath: PathBuf,
        /// Why it failed.
        error: String,
    },
    /// Storing results failed.
    #[error("storing results failed: {0}")]
    Store(String),
    /// The model cannot do what was asked.
    #[error(transparent)]
    Model(#[from] ModelError),
}

type Prepared = Vec<(Sample, Result<Input, String>)>;
/// A model call on a group of inputs: the samples' ids, their inputs.
type Work<'a, T> =
    dyn Fn(&mut dyn Model, &[i64], &[Input]) -> Result<Vec<T>, ModelError> + Sync + 'a;
type Emit<'a, T> = dyn FnMut(Vec<(i64, Result<T, String>)>) -> Result<(), String> + 'a;
/// Checks one sample's result before it is counted and stored: an error
/// fails that sample only.
type Check<'a, T> = dyn Fn(&T) -> Result<(), String> + 'a;

/// Decodes and preprocesses a batch, on rayon threads when `parallel`.
fn prepare(
    preprocessor: &dyn Preprocess,
    loader: &dyn ImageLoader,
    batch: &[Sample],
    parallel: bool,
) -> Prepared {
    let one = |sample: &Sample| {
        // A decoder that panics on a hostile file fails that sample only.
        let input = catch_unwind(AssertUnwindSafe(|| {
            loader.load(sample).and_then(|image| {
                preprocessor
                    .preprocess(image)
                    .map_err(|err| err.to_string())
            })
        }))
        .unwrap_or_else(|payload| {
            Err(format!(
                "reading `{}` panicked: {}",
                sample.filepath.display(),
                panic_message(payload.as_ref())
            ))
        });
        (sample.clone(), input)
    };
    if parallel {
        batch.par_iter().map(one).collect()
    } else {
        batch.iter().map(one).collect()
    }
}

/// The text a panic carries (`panic!` with a literal or with a format).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// One batch's results in sample order, with the forwards it took.
struct Computed<T> {
    results: Vec<(i64, Result<T, String>)>,
    forwards: usize,
    model_time: Duration,
    /// A fatal [`ModelError`]: the run stops once these results are
    /// stored.
    fatal: Option<ModelError>,
}

/// The model calls a prepared batch takes: the indices of its decoded
/// inputs, in equal-shape groups when the model is ragged, else all in one.
fn groups(prepared: &Prepared, ragged: bool) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<[usize; 3], Vec<usize>> = BTreeMap::new();
    for (index, (_, input)) in prepared.iter().enumerate() {
        if let Ok(input) = input {
            let key = if ragged { input.shape } else { [0; 3] };
            groups.entry(key).or_default().push(index);
        }
    }
    groups.into_values().collect()
}

/// Hands a prepared batch to a model that takes batches ahead
/// ([`Model::prefetch`]), in the calls [`compute`] will make on it.
fn send_ahead(
    model: &mut dyn Model,
    prepared: &Prepared,
    options: &ApplyOptions,
    embeddings: bool,
) {
    if !model.prefetches() {
        return;
    }
    // `compute` stops at a failed sample, calling nothing, unless failures
    // are skipped.
    if !options.skip_failures && prepared.iter().any(|(_, input)| input.is_err()) {
        return;
    }
    for group in groups(prepared, model.ragged_batches()) {
        let (ids, inputs): (Vec<i64>, Vec<&Input>) = group
            .iter()
            .filter_map(|&index| {
                let (sample, input) = &prepared[index];
                input.as_ref().ok().map(|input| (sample.id, input))
            })
            .unzip();
        model.prefetch_samples(&ids, &inputs, embeddings);
    }
}

/// Runs the model over a prepared batch: equal-shape groups (or the whole
/// batch when the model is not ragged), failures recorded per sample.
fn compute<T>(
    model: &mut dyn Model,
    prepared: Prepared,
    options: &ApplyOptions,
    work: &Work<'_, T>,
) -> Result<Computed<T>, ApplyError> {
    let mut results: Vec<Option<Result<T, String>>> = Vec::with_capacity(prepared.len());
    let mut samples = Vec::with_capacity(prepared.len());
    // Inputs move into the model's batches: no copies of the pixels.
    let mut inputs: Vec<Option<Input>> = Vec::with_capacity(prepared.len());
    let groups = groups(&prepared, model.ragged_batches());
    for (sample, input) in prepared {
        match input {
            Ok(input) => {
                results.push(None);
                inputs.push(Some(input));
            }
            Err(error) => {
                if !options.skip_failures {
                    return Err(ApplyError::Sample {
                        filepath: sample.filepath,
                        error,
                    });
                }
                results.push(Some(Err(error)));
                inputs.push(None);
            }
        }
        samples.push(sample);
    }
    let mut computed = Computed {
        results: Vec::new(),
        forwards: 0,
        model_time: Duration::ZERO,
        fatal: None,
    };
    for indices in &groups {
        if computed.fatal.is_some() {
            // The model is gone: the rest of the batch fails with it.
            for &index in indices {
                results[index] = Some(Err("not run: the model stopped".to_owned()));
            }
            continue;
        }
        let (ids, group): (Vec<i64>, Vec<Input>) = indices
            .iter()
            .filter_map(|&index| inputs[index].take().map(|input| (samples[index].id, input)))
            .unzip();
        let model_started = Instant::now();
        // The last line of defence: a model that panics (a libtorch error
        // raised as a panic by tch, a bug in a backend) fails this group's
        // samples, and the run goes on with the next batch.
        let outputs = catch_unwind(AssertUnwindSafe(|| work(&mut *model, &ids, &group)))
            .unwrap_or_else(|payload| {
                Err(ModelError::inference(format!(
                    "the model panicked: {}",
                    panic_message(payload.as_ref())
                )))
            });
        computed.model_time += model_started.elapsed();
        computed.forwards += 1;
        match outputs {
            Ok(outputs) if outputs.len() == indices.len() => {
                for (&index, output) in indices.iter().zip(outputs) {
                    results[index] = Some(Ok(output));
                }
            }
            Ok(outputs) => {
                return Err(ApplyError::Model(ModelError::inference(format!(
                    "the model returned {} results for {} inputs",
                    outputs.len(),
                    indices.len()
                ))));
            }
            Err(err) if err.is_fatal() => {
                for &index in indices {
                    results[index] = Some(Err(err.to_string()));
                }
                computed.fatal = Some(err);
            }
            Err(err) => {
                if !options.skip_failures {
                    return Err(ApplyError::Sample {
                        filepath: samples[indices[0]].filepath.clone(),
                        error: err.to_string(),
                    });
                }
                for &index in indices {
                    results[index] = Some(Err(err.to_string()));
                }
            }
        }
    }
    computed.results = samples
        .iter()
        .zip(results)
        .map(|(sample, result)| {
            (
                sample.id,
                result.unwrap_or_else(|| Err("no result".to_owned())),
            )
        })
        .collect();
    Ok(computed)
}

/// How many samples one batch takes when `workers` copies share `total`
/// samples in batches of at most `batch_size`: as many rounds of full
/// batches as needed, and batches evened out across them, so that no copy
/// idles while another runs (16 samples in batches of 16 on 2 copies are 2
/// batches of 8, not one batch of 16 on one copy, which would run on half
/// the threads). One copy takes full batches.
pub fn chunk_len(total: usize, batch_size: usize, workers: usize) -> usize {
    let batch_size = batch_size.max(1);
    if workers <= 1 || total == 0 {
        return batch_size;
    }
    let rounds = total.div_ceil(workers * batch_size);
    total.div_ceil(workers * rounds).clamp(1, batch_size)
}

/// Runs `work` over samples batch by batch with one worker per model copy;
/// `emit` gets each batch's results in sample order (batches in the order
/// they finish when there are several workers); `check` can fail one
/// sample's result before it is counted and emitted.
// One engine for `apply` and `embed`: what differs comes in as arguments.
#[allow(clippy::too_many_arguments)]
fn run<T: Send>(
    models: &mut [&mut dyn Model],
    samples: &[Sample],
    loader: &dyn ImageLoader,
    options: &ApplyOptions,
    work: &Work<'_, T>,
    embeddings: bool,
    check: &Check<'_, T>,
    emit: &mut Emit<'_, T>,
) -> Result<ApplySummary, ApplyError> {
    let started = Instant::now();
    if models.is_empty() {
        return Err(ModelError::unsupported("no model to run".into()).into());
    }
    let workers = models.len();
    for model in models.iter_mut() {
        model.set_workers(workers);
    }
    // Setup before the first batch, teardown however the run ends (the
    // model's context manager), for every copy.
    let mut guards = Vec::with_capacity(workers);
    for model in models.iter_mut() {
        guards.push(SetupGuard::new(&mut **model)?);
    }
    let mut summary = ApplySummary::default();
    let batches: Vec<&[Sample]> = samples
        .chunks(chunk_len(samples.len(), options.batch_size, workers))
        .collect();
    let mut finish = |mut computed: Computed<T>| -> Result<(), ApplyError> {
        summary.model_time += computed.model_time;
        summary.forwards += computed.forwards;
        for (_, result) in &mut computed.results {
            if let Err(error) = result.as_ref().map(check).unwrap_or(Ok(())) {
                *result = Err(error);
            }
        }
        let failed = computed
            .results
            .iter()
            .filter(|(_, result)| result.is_err())
            .count();
        summary.failed += failed;
        summary.succeeded += computed.results.len() - failed;
        emit(computed.results).map_err(ApplyError::Store)?;
        match computed.fatal {
            Some(err) => Err(ApplyError::Model(err)),
            None => Ok(()),
        }
    };

    if workers > 1 {
        // Each worker decodes its own batch on its own thread, then runs its
        // copy of the model: one worker's decoding overlaps the others'
        // forwards, with no thread of a worker idle at a barrier.
        let next = AtomicUsize::new(0);
        let (sender, receiver) = sync_channel::<Result<Computed<T>, ApplyError>>(workers);
        std::thread::scope(|scope| -> Result<(), ApplyError> {
            let receiver = receiver;
            for guard in guards.iter_mut() {
                let sender = sender.clone();
                let (next, batches) = (&next, &batches);
                scope.spawn(move || {
                    let model = guard.model();
                    let preprocessor = model.preprocessor();
                    let claim = || {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        batches
                            .get(index)
                            .map(|batch| prepare(&*preprocessor, loader, batch, false))
                    };
                    // A model that takes batches ahead gets batch N+1
                    // before it runs batch N.
                    let ahead = model.prefetches();
                    let mut current = claim();
                    if let Some(prepared) = current.as_ref().filter(|_| ahead) {
                        send_ahead(model, prepared, options, embeddings);
                    }
                    while let Some(prepared) = current.take() {
                        if ahead {
                            current = claim();
                            if let Some(next) = &current {
                                send_ahead(model, next, options, embeddings);
                            }
                        }
                        let computed = compute(model, prepared, options, work);
                        let failed = computed
                            .as_ref()
                            .map_or(true, |computed| computed.fatal.is_some());
                        // A closed channel means the run stopped: stop too.
                        if sender.send(computed).is_err() || failed {
                            next.store(batches.len(), Ordering::Relaxed);
                            break;
                        }
                        if !ahead {
                            current = claim();
                        }
                    }
                });
            }
            drop(sender);
            for computed in receiver.iter() {
                if let Err(err) = computed.and_then(&mut finish) {
                    // Workers see the closed channel after their batch.
                    next.store(batches.len(), Ordering::Relaxed);
                    return Err(err);
                }
            }
            Ok(())
        })?;
    } else if options.pipelined {
        // Decode batch N+1 on rayon threads while the model runs batch N; the
        // channel holds one batch, so memory stays flat however many samples.
        let model = guards[0].model();
        let preprocessor = model.preprocessor();
        let (sender, receiver) = sync_channel::<Prepared>(1);
        std::thread::scope(|scope| -> Result<(), ApplyError> {
            // Owned here so that an early return drops it, which stops the
            // producer instead of leaving it blocked on a full channel.
            let receiver = receiver;
            scope.spawn(move || {
                for batch in batches {
                    let prepared = prepare(&*preprocessor, loader, batch, true);
                    if sender.send(prepared).is_err() {
                        break;
                    }
                }
            });
            // A model that takes batches ahead gets batch N+1 before it
            // runs batch N.
            let ahead = model.prefetches();
            let mut current = receiver.recv().ok();
            if let Some(prepared) = current.as_ref().filter(|_| ahead) {
                send_ahead(model, prepared, options, embeddings);
            }
            while let Some(prepared) = current.take() {
                if ahead {
                    current = receiver.recv().ok();
                    if let Some(next) = &current {
                        send_ahead(model, next, options, embeddings);
                    }
                }
                finish(compute(model, prepared, options, work)?)?;
                if !ahead {
                    current = receiver.recv().ok();
                }
            }
            Ok(())
        })?;
    } else {
        let model = guards[0].model();
        for batch in batches {
            let prepared = prepare(&*model.preprocessor(), loader, batch, true);
            finish(compute(model, prepared, options, work)?)?;
        }
    }
    drop(guards);
    summary.wall_time = started.elapsed();
    Ok(summary)
}

/// Applies `model` to `samples` (FiftyOne's `apply_model`); `on_batch` gets
/// each batch's outcomes, in order, to store them (in one transaction).
pub fn apply(
    model: &mut dyn Model,
    samples: &[Sample],
    loader: &dyn ImageLoader,
    options: &ApplyOptions,
    on_batch: &mut dyn FnMut(Vec<Outcome>) -> Result<(), String>,
) -> Result<ApplySummary, ApplyError> {
    apply_on(&mut [model], samples, loader, options, on_batch)
}

/// [`apply`] with one worker per copy of the model in `models` (all built
/// from the same spec; see [`Model::workers`]): each worker decodes its own
/// batches and runs its own copy. Batches are stored as they finish.
pub fn apply_on(
    models: &mut [&mut dyn Model],
    samples: &[Sample],
    loader: &dyn ImageLoader,
    options: &ApplyOptions,
    on_batch: &mut dyn FnMut(Vec<Outcome>) -> Result<(), String>,
) -> Result<ApplySummary, ApplyError> {
    if models.iter().any(|model| !model.has_labels()) {
        return Err(ModelError::unsupported(
            "this model gives no labels: its config names no `output_processor_cls`, so it returns raw outputs, which FiftyOne's `apply_model` cannot store either; compute its embeddings with `zoo models embed`".into(),
        )
        .into());
    }
    if options.store_logits {
        for model in models.iter_mut() {
            if !model.has_logits() {
                return Err(
                    ModelError::unsupported("this model has no logits to store".into()).into(),
                );
            }
            model.set_store_logits(true);
        }
    }
    // FiftyOne's `apply_model`: a model that thresholds itself gets the
    // threshold; otherwise the labels are filtered here.
    let mut threshold = options.confidence_thresh;
    if let Some(value) = threshold {
        let mut native = true;
        for model in models.iter_mut() {
            native &= model.set_confidence_thresh(value);
        }
        if native {
            threshold = None;
        }
    }
    let work =
        |model: &mut dyn Model, ids: &[i64], inputs: &[Input]| model.predict_samples(ids, inputs);
    let mut emit = |batch: Vec<(i64, Result<crate::model::Prediction, String>)>| {
        let outcomes = batch
            .into_iter()
            .map(|(sample_id, result)| match result {
                Ok(prediction) => Outcome::Labels {
                    sample_id,
                    fields: label_fields(&options.label_field, prediction, &options.rename)
                        .into_iter()
                        .map(|(field, label)| {
                            let label = match threshold {
                                Some(threshold) => label.map(|label| label.thresholded(threshold)),
                                None => label,
                            };
                            (field, label)
                        })
                        .collect(),
                },
                Err(error) => Outcome::Failed { sample_id, error },
            })
            .collect();
        on_batch(outcomes)
    };
    let check = |prediction: &crate::model::Prediction| check_fields(prediction, options);
    run(
        models, samples, loader, options, &work, false, &check, &mut emit,
    )
}

/// Checks the fields a prediction goes to: a model's dict keys become
/// field names (`<label_field>_<key>`, or their `rename`), and a key that
/// breaks FiftyOne's field-name rules (`a.b`, `$x`) fails that sample only.
fn check_fields(
    prediction: &crate::model::Prediction,
    options: &ApplyOptions,
) -> Result<(), String> {
    let crate::model::Prediction::Map(labels) = prediction else {
        return Ok(());
    };
    for key in labels.keys() {
        let field = options
            .rename
            .get(key)
            .cloned()
            .unwrap_or_else(|| format!("{}_{key}", options.label_field));
        crate::fields::validate_field_name(&field).map_err(|err| {
            format!(
                "the model returned a label under the key `{}`, whose field `{}` cannot be stored: {err}",
                key.escape_debug(),
                field.escape_debug()
            )
        })?;
    }
    Ok(())
}

/// Computes embeddings for `samples` (FiftyOne's `compute_embeddings`).
pub fn embed(
    model: &mut dyn Model,
    samples: &[Sample],
    loader: &dyn ImageLoader,
    options: &ApplyOptions,
    on_batch: &mut dyn FnMut(Vec<EmbedOutcome>) -> Result<(), String>,
) -> Result<ApplySummary, ApplyError> {
    embed_on(&mut [model], samples, loader, options, on_batch)
}

/// [`embed`] with one worker per copy of the model in `models` (see
/// [`apply_on`]).
pub fn embed_on(
    models: &mut [&mut dyn Model],
    samples: &[Sample],
    loader: &dyn ImageLoader,
    options: &ApplyOptions,
    on_batch: &mut dyn FnMut(Vec<EmbedOutcome>) -> Result<(), String>,
) -> Result<ApplySummary, ApplyError> {
    if models.iter().any(|model| !model.has_embeddings()) {
        return Err(ModelError::unsupported(
            "this model does not compute embeddings (its config has no `embeddings_layer`)".into(),
        )
        .into());
    }
    let work = |model: &mut dyn Model, _: &[i64], inputs: &[Input]| model.embed_all(inputs);
    let mut emit = |batch: Vec<(i64, Result<Vec<f32>, String>)>| {
        on_batch(
            batch
                .into_iter()
                .map(|(sample_id, result)| match result {
                    Ok(values) => EmbedOutcome::Vector { sample_id, values },
                    Err(error) => EmbedOutcome::Failed { sample_id, error },
                })
                .collect(),
        )
    };
    run(
        models,
        samples,
        loader,
        options,
        &work,
        true,
        &|_| Ok(()),
        &mut emit,
    )
}

#[cfg(test)]
mod tests {
    use super::chunk_len;

    #[test]
    fn chunks_give_every_copy_work_and_never_exceed_the_batch_size() {
        // One copy: full batches.
        assert_eq!(chunk_len(16, 16, 1), 16);
        assert_eq!(chunk_len(5, 16, 1), 16);
        // Fewer samples than one batch per copy: shared evenly.
        assert_eq!(chunk_len(16, 16, 2), 8);
        assert_eq!(chunk_len(17, 16, 2), 9);
        assert_eq!(chunk_len(1, 16, 2), 1);
        // Uneven last round: evened out (40 in 16s on 2 copies: 4 x 10).
        assert_eq!(chunk_len(40, 16, 2), 10);
        // Large runs keep the asked size.
        assert_eq!(chunk_len(1000, 16, 2), 16);
        assert_eq!(chunk_len(0, 16, 2), 16);
        assert_eq!(chunk_len(10, 0, 2), 1);
        for total in 1..200 {
            for workers in 1..5 {
                for batch in 1..20 {
                    let chunk = chunk_len(total, batch, workers);
                    assert!((1..=batch).contains(&chunk));
                    let batches = total.div_ceil(chunk);
                    // No more rounds than full batches would take.
                    let rounds = total.div_ceil(batch * workers);
                    assert!(batches <= workers * rounds, "{total} {batch} {workers}");
                    // Two copies: both have work whenever there are 2 samples.
                    if workers == 2 && total >= 2 {
                        assert!(batches >= 2, "{total} {batch}");
                    }
                }
            }
        }
    }
}
