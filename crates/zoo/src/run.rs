//! Running a loaded model over a dataset, as FiftyOne's `apply_model` and
//! `compute_embeddings`: what is left to do, batch by batch, results
//! written as they come (into the dataset, or a shard's part files).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use zoo_datasets::{DatasetPin, Datasets, ObjectLoader, ResultsKind, Shard, ShardResults};
use zoo_model_core::{EmbedOutcome, Label, Outcome, Sample, validate_field_name};

use crate::Zoo;
use crate::error::{Context, Error, Result, bail, chain};
use crate::load::LoadedModel;
use crate::report::RunReport;

/// Where a run's results go and which samples it does.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunOptions {
    /// The field results are stored under.
    pub field: String,
    /// Images per model call.
    pub batch_size: usize,
    /// Redo samples that already have a result in `field`.
    pub overwrite: bool,
    /// Only this shard of the dataset (`K/N`); [`Shard::ALL`] by default.
    pub shard: Shard,
    /// Write results as part files here (a folder or object-store URL)
    /// instead of into the dataset, to merge later.
    pub results: Option<String>,
    /// Only the samples with one of these tags (FiftyOne datasets).
    pub tags: Vec<String>,
}

impl RunOptions {
    /// Results into `field`, batches of 16, every sample left to do.
    pub fn new(field: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            batch_size: 16,
            overwrite: false,
            shard: Shard::ALL,
            results: None,
            tags: Vec::new(),
        }
    }

    /// Images per model call.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Redo samples that already have a result.
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Only the samples with one of `tags` (a FiftyOne dataset's tags,
    /// FiftyOne's `match_tags`).
    pub fn tags(mut self, tags: Vec<String>) -> Self {
        self.tags = tags;
        self
    }

    /// Only shard `shard` of the dataset, its results as part files at
    /// `results` (when given).
    pub fn shard(mut self, shard: Shard, results: Option<String>) -> Self {
        self.shard = shard;
        self.results = results;
        self
    }
}

/// `apply`'s options beyond [`RunOptions`]: FiftyOne's `apply_model`
/// arguments.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LabelOptions {
    /// Drop labels below this confidence.
    pub confidence_thresh: Option<f64>,
    /// Store the logits with each classification.
    pub store_logits: bool,
    /// Stop at the first failed sample instead of recording it.
    pub stop_on_failure: bool,
    /// Decode the next batch while the model runs: `None` decides (on when
    /// there are more cores than the runtime's threads, or the model is
    /// hosted).
    pub pipelined: Option<bool>,
    /// The label field holding each sample's prompt (FiftyOne's
    /// `prompt_field`: boxes for ViTPose, boxes or points for SAM), for a
    /// model that reads one; a sample whose label there is unreadable or
    /// over [`crate::MAX_PROMPT_BYTES`] fails alone.
    pub prompt_field: Option<String>,
}

/// The error of a run in which every sample failed and the field holds
/// no result at all. A run with some failures, or one that only retried
/// the failures of a field with results, succeeds and lists them.
fn every_sample_failed(report: RunReport) -> Error {
    let first = report
        .failures
        .first()
        .map_or_else(String::new, |(path, error)| {
            format!(" (the first: `{}`: {error})", path.display())
        });
    let message = format!(
        "every one of the {} samples failed{first}, so nothing is stored under `{}`: check that the images exist and can be read, then run again",
        report.failed, report.field
    );
    Error::every_sample_failed(message, report)
}

/// Counts classification and detection labels.
fn count_labels(counts: &mut BTreeMap<String, usize>, batch: &[Outcome]) {
    for outcome in batch {
        if let Outcome::Labels { fields, .. } = outcome {
            for (_, label) in fields {
                match label {
                    Some(Label::Classification { label, .. }) => {
                        *counts.entry(label.clone()).or_default() += 1;
                    }
                    Some(Label::Detections(found)) => {
                        for detection in found {
                            *counts.entry(detection.label.clone()).or_default() += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Where a run's results go: zoo's own datasets, or FiftyOne's database.
enum Target {
    /// A dataset of zoo's SQLite store, pinned for the run.
    Zoo { store: Datasets, pin: DatasetPin },
    /// A FiftyOne dataset (`fiftyone:NAME`).
    FiftyOne(Box<zoo_fiftyone_db::Dataset>),
}

impl Target {
    /// Stores one batch of apply outcomes.
    fn write_labels(&mut self, field: &str, batch: &[Outcome]) -> Result<()> {
        match self {
            Target::Zoo { store, pin } => Ok(store.write_labels(pin, field, batch)?),
            Target::FiftyOne(dataset) => Ok(dataset.write_labels(batch)?),
        }
    }

    /// Stores one batch of embeddings.
    fn write_embeddings(&mut self, field: &str, batch: &[EmbedOutcome]) -> Result<()> {
        match self {
            Target::Zoo { store, pin } => Ok(store.write_embeddings(pin, field, batch)?),
            Target::FiftyOne(dataset) => Ok(dataset.write_embeddings(field, batch)?),
        }
    }

    /// Records which model made `field`.
    fn set_provenance(&mut self, field: &str, record: &serde_json::Value) -> Result<()> {
        match self {
            Target::Zoo { store, pin } => Ok(store.set_provenance(pin, field, record)?),
            Target::FiftyOne(dataset) => Ok(dataset.set_field_provenance(
                field,
                record,
                &zoo_datasets::provenance_line(record),
            )?),
        }
    }

    /// The failed samples of `field` (for FiftyOne: of this run, as
    /// FiftyOne's database keeps no failures).
    fn failures(&self, dataset: &str, field: &str) -> Result<Vec<(PathBuf, String)>> {
        match self {
            Target::Zoo { store, .. } => Ok(store.failures(dataset, field)?),
            Target::FiftyOne(fiftyone) => Ok(fiftyone.failures().to_vec()),
        }
    }

    /// How many samples have a result in `field`.
    fn finished(&self, dataset: &str, field: &str) -> Result<u64> {
        match self {
            Target::Zoo { store, .. } => Ok(store.finished(dataset, field)?),
            Target::FiftyOne(fiftyone) => Ok(fiftyone.count_results(field)?),
        }
    }
}

/// What `apply` and `embed` need before their first batch.
struct Started {
    loader: ObjectLoader,
    target: Target,
    dataset: String,
    pending: Vec<Sample>,
    results: Option<ShardResults>,
}

impl Zoo<'_> {
    /// Checks the field name, then resolves the dataset (pinning a zoo
    /// dataset, opening a FiftyOne one) and finds what is left to do (and
    /// where results go).
    fn start(&self, dataset: &str, run: &RunOptions, kind: ResultsKind) -> Result<Started> {
        validate_field_name(&run.field).with_context(|| {
            format!("cannot store results under `{}`", run.field.escape_debug())
        })?;
        let loader = self.loader()?;
        if let Some(name) = zoo_fiftyone_db::dataset_name(dataset) {
            let (target, pending) = self.fiftyone_pending(name, run, kind)?;
            return Ok(Started {
                loader,
                target,
                dataset: dataset.to_owned(),
                pending,
                results: None,
            });
        }
        let mut store = self.datasets()?;
        let dataset = self.dataset_name(&mut store, dataset)?;
        let pin = store.pin(&dataset)?;
        let (pending, results) = self.pending(
            &mut store,
            &dataset,
            &run.field,
            kind,
            (run.shard, run.results.as_deref()),
            run.overwrite,
        )?;
        Ok(Started {
            loader,
            target: Target::Zoo { store, pin },
            dataset,
            pending,
            results,
        })
    }

    /// What a run into FiftyOne dataset `name` has left to do: its samples
    /// without a result (only this shard's, keyed by the file's path as
    /// FiftyOne stores it). Shards write straight into FiftyOne's database, so
    /// there are no part files to merge.
    fn fiftyone_pending(
        &self,
        name: &str,
        run: &RunOptions,
        kind: ResultsKind,
    ) -> Result<(Target, Vec<Sample>)> {
        if let Some(results) = &run.results {
            bail!(
                Config,
                "`--results {results}` writes part files to merge into a zoo dataset; a run into a FiftyOne dataset writes each shard's results straight into FiftyOne's database: leave `--results` out"
            );
        }
        let context = || format!("opening FiftyOne dataset `{}` failed", name.escape_debug());
        let fiftyone = zoo_fiftyone_db::FiftyOne::from_env().with_context(context)?;
        let mut dataset = fiftyone.dataset(name).with_context(context)?;
        let kind = match kind {
            ResultsKind::Labels => zoo_fiftyone_db::ResultKind::Labels,
            ResultsKind::Embeddings => zoo_fiftyone_db::ResultKind::Embeddings,
        };
        let mut pending = dataset.pending(&run.field, kind, run.overwrite, &run.tags)?;
        if run.shard != Shard::ALL {
            // The key is the path as FiftyOne stores it (a local path or an
            // object-store URL): the same in every shard's process.
            pending.retain(|sample| {
                run.shard
                    .contains(sample.filepath.as_os_str().as_encoded_bytes())
            });
        }
        Ok((Target::FiftyOne(Box::new(dataset)), pending))
    }

    /// The batch size to run: `asked`, or 1 for a model that takes one
    /// image per call (said once, as FiftyOne's `apply_model` warns).
    fn batch_size(&self, model: &LoadedModel, asked: usize) -> usize {
        if model.one_image_per_call() && asked > 1 {
            self.observer().note(&format!(
                "`{}` has `ragged_batches`: its images go one at a time (ignoring batch size {asked}), as in FiftyOne",
                model.name()
            ));
            return 1;
        }
        asked.max(1)
    }

    /// Applies `model` to `dataset` (a dataset's name, a folder of images,
    /// or an object-store URL), storing its labels under `run.field`, as
    /// FiftyOne's `apply_model`. Samples already done are skipped unless
    /// `run.overwrite`; a failed sample is recorded and the run goes on
    /// (unless `labels.stop_on_failure`). A run in which every sample failed
    /// is an error of kind [`crate::ErrorKind::EverySampleFailed`] that carries
    /// the report ([`Error::run_report`]).
    pub fn apply(
        &self,
        model: &mut LoadedModel,
        dataset: &str,
        run: &RunOptions,
        labels: &LabelOptions,
    ) -> Result<RunReport> {
        crate::prompt::check_model(model, labels.prompt_field.as_deref())?;
        let Started {
            loader,
            mut target,
            dataset,
            pending,
            mut results,
        } = self.start(dataset, run, ResultsKind::Labels)?;
        let mut refused = std::collections::HashMap::new();
        if let Some(field) = &labels.prompt_field {
            let Target::Zoo { store, .. } = &target else {
                bail!(
                    Config,
                    "`--prompt-field {field}` reads the prompts from a zoo dataset; reading them from FiftyOne's database (`{dataset}`) is not supported yet: run on a zoo dataset that holds the field (`zoo datasets import` of the dataset exported with FiftyOne), or leave `--prompt-field` out"
                );
            };
            let required = matches!(
                model.model_mut().prompt_support(),
                zoo_model_core::PromptSupport::Required { .. }
            );
            let (prompts, why) = crate::prompt::read(store, &dataset, field, &pending, required)?;
            refused = why;
            crate::prompt::hand_over(model, prompts)?;
        }
        let loader = crate::prompt::PromptedLoader {
            images: &loader,
            refused,
        };
        let hosted = model.is_hosted();
        let pipelined = labels.pipelined.unwrap_or_else(|| {
            // Pipelined only when there are more cores than the runtime's
            // threads. Not for a model on a GPU either: on an H100 with 16
            // cores, decoding on every core during the forward starved the
            // thread that feeds the GPU (resnet18 half: 456 img/s pipelined
            // against 809 in turn; BENCHMARKS.md, run 5). Always for a
            // hosted model: its forward runs in another process, and zoo's
            // own threads would idle while it runs.
            let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            hosted || cores > self.runtime().system_info().threads
        });
        let options = zoo_model_core::ApplyOptions {
            batch_size: self.batch_size(model, run.batch_size),
            confidence_thresh: labels.confidence_thresh,
            store_logits: labels.store_logits,
            skip_failures: !labels.stop_on_failure,
            label_field: run.field.clone(),
            rename: BTreeMap::new(),
            pipelined,
        };
        let progress = self.observer().samples();
        progress.start(
            &format!("applying {}", model.name()),
            Some(pending.len() as u64),
        );
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut written: BTreeSet<String> = BTreeSet::new();
        let workers = model.copies();
        let name = model.name().to_owned();
        let mut copies = model.copies_mut();
        let summary = zoo_model_core::apply_on(
            &mut copies,
            &pending,
            &loader,
            &options,
            &mut |batch: Vec<Outcome>| {
                count_labels(&mut counts, &batch);
                for outcome in &batch {
                    if let Outcome::Labels { fields, .. } = outcome {
                        written.extend(fields.iter().map(|(name, _)| name.clone()));
                    }
                }
                match &mut results {
                    Some(results) => results.record_labels(&batch).map_err(Error::from),
                    None => target.write_labels(&run.field, &batch),
                }
                .map_err(|err| chain(&err))?;
                progress.advance(batch.len() as u64);
                Ok(())
            },
        );
        progress.finish();
        let summary =
            summary.with_context(|| format!("applying `{name}` to `{dataset}` failed"))?;
        let to_parts = results.is_some();
        self.finish_shard(results)?;
        let failures = target.failures(&dataset, &run.field)?;
        let mut top: Vec<(String, usize)> = counts.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(5);
        let report = RunReport {
            model: name,
            dataset: dataset.clone(),
            field: run.field.clone(),
            processed: pending.len(),
            succeeded: summary.succeeded,
            failed: summary.failed,
            wall_time: summary.wall_time,
            model_time: summary.model_time,
            forwards: summary.forwards,
            pipelined: options.pipelined && workers == 1,
            workers,
            top_labels: top,
            dimension: 0,
            failures,
        };
        if report.nothing_stored(target.finished(&dataset, &run.field)?) {
            return Err(every_sample_failed(report));
        }
        if !to_parts {
            let record = model.provenance().record();
            for field in &written {
                target.set_provenance(field, &record)?;
            }
        }
        Ok(report)
    }

    /// Computes `model`'s embeddings of `dataset`'s images into
    /// `run.field`, as FiftyOne's `compute_embeddings`. Like
    /// [`Zoo::apply`], a run in which every sample failed is an error that
    /// carries the report.
    pub fn embed(
        &self,
        model: &mut LoadedModel,
        dataset: &str,
        run: &RunOptions,
    ) -> Result<RunReport> {
        let Started {
            loader,
            mut target,
            dataset,
            pending,
            mut results,
        } = self.start(dataset, run, ResultsKind::Embeddings)?;
        let options = zoo_model_core::ApplyOptions {
            batch_size: self.batch_size(model, run.batch_size),
            ..zoo_model_core::ApplyOptions::default()
        };
        let progress = self.observer().samples();
        progress.start(
            &format!("embedding with {}", model.name()),
            Some(pending.len() as u64),
        );
        let mut dimension = 0;
        let workers = model.copies();
        let name = model.name().to_owned();
        let mut copies = model.copies_mut();
        let summary = zoo_model_core::embed_on(
            &mut copies,
            &pending,
            &loader,
            &options,
            &mut |batch: Vec<EmbedOutcome>| {
                if let Some(EmbedOutcome::Vector { values, .. }) = batch
                    .iter()
                    .find(|outcome| matches!(outcome, EmbedOutcome::Vector { .. }))
                {
                    dimension = values.len();
                }
                match &mut results {
                    Some(results) => results.record_embeddings(&batch).map_err(Error::from),
                    None => target.write_embeddings(&run.field, &batch),
                }
                .map_err(|err| chain(&err))?;
                progress.advance(batch.len() as u64);
                Ok(())
            },
        );
        progress.finish();
        let summary = summary
            .with_context(|| format!("computing embeddings of `{dataset}` with `{name}` failed"))?;
        let to_parts = results.is_some();
        self.finish_shard(results)?;
        let mut report = RunReport {
            model: name,
            dataset: dataset.clone(),
            field: run.field.clone(),
            processed: pending.len(),
            succeeded: summary.succeeded,
            failed: summary.failed,
            wall_time: summary.wall_time,
            model_time: summary.model_time,
            forwards: summary.forwards,
            pipelined: false,
            workers,
            top_labels: Vec::new(),
            dimension,
            failures: Vec::new(),
        };
        if report.nothing_stored(target.finished(&dataset, &run.field)?) {
            report.failures = target.failures(&dataset, &run.field)?;
            return Err(every_sample_failed(report));
        }
        if !to_parts && dimension > 0 {
            target.set_provenance(&run.field, &model.provenance().record())?;
        }
        Ok(report)
    }
}
