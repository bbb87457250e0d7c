//! `zoo models apply` and `zoo models embed`: registry -> model -> dataset.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Error, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use zoo_datasets::{DatasetPin, Datasets, ObjectLoader, ResultsKind, ShardResults};
use zoo_model_core::{
    ApplyOptions, ApplySummary, EmbedOutcome, Label, Model, ModelSpec, Outcome, validate_field_name,
};
use zoo_python_host::{HostSpec, HostedModel, Loaded};
use zoo_registry::{LoadPath, LoadPlan, Registry};

use super::scale;
use crate::app::{ApplyArgs, EmbedArgs, EmbedTextArgs, ModelArgs, ScaleArgs, Workers};
use crate::progress::Bar;
use crate::runtime::Runtime;
use crate::terminal::{escape, say, shell_words};
use crate::{config, output};

/// The built model copies, and how they must be fed.
struct Built {
    name: String,
    /// One copy per worker.
    models: Vec<Box<dyn Model>>,
    /// A hosted model with `ragged_batches`: one image per call, as
    /// FiftyOne's `apply_model` ignores the batch size for it.
    one_image_per_call: bool,
    /// The model runs in model hosts (its own processes, its own threads).
    hosted: bool,
}

/// Resolves, downloads and builds the model: `workers` copies of it
/// (`auto`: as many as the model prefers). A trusted source's Python
/// `load_model` runs in the model host; a config runs natively.
fn load_model(
    registry: &Registry,
    runtime: &dyn Runtime,
    name_or_url: &str,
    model: &ModelArgs,
    quiet: bool,
) -> Result<Built> {
    // A model zoo cannot run is refused before anything is downloaded (a
    // URL names no model until its source is registered): a remote
    // source's entry naming a FiftyOne class, or one whose FiftyOne class
    // needs packages `ZOO_PYTHON` lacks (unless `-i` installs them).
    if let Ok(found) = registry.model(model.model_name.as_deref().unwrap_or(name_or_url)) {
        zoo_registry::check_native(&found)?;
        if !model.install {
            check_fiftyone_class_packages(registry, &found)?;
        }
    }
    let downloaded = registry.download(
        name_or_url,
        model.model_name.as_deref(),
        false,
        &Bar::new(quiet),
    )?;
    let name = downloaded.name();
    // FiftyOne's `load_zoo_model(install_requirements=, error_level=)`.
    if model.install {
        let level = super::models::error_level(model.error_level.unwrap_or(0))?;
        super::models::install_requirements(&downloaded.model, level)?;
    } else if let Some(level) = model.error_level {
        let level = super::models::error_level(level)?;
        super::models::ensure_requirements(&downloaded.model, level, false)?;
    }
    // `-k` kwargs: `load_model`'s keyword arguments and config overrides.
    let mut kwargs = crate::app::kwargs_map(&model.kwargs);
    // `--classes a,b` is `-k classes='["a","b"]'`.
    if let Some(classes) = &model.classes {
        kwargs.insert("classes".into(), json!(classes));
    }
    let mut overrides = kwargs.clone();
    if config::cudnn_benchmark()? {
        overrides.insert("cudnn_benchmark".into(), serde_json::Value::Bool(true));
    }
    // The model is resolved once: no second pass over every manifest.
    let config = match registry.load_plan(&downloaded.model, &overrides)? {
        LoadPlan::Config(config) => config,
        LoadPlan::Python(plan) => {
            let hosts = HostPlan::new(model.workers, &runtime.system_info());
            let fiftyone_class = plan.fiftyone_class.clone();
            let mut kwargs = kwargs;
            kwargs.extend(plan.kwargs);
            let spec = HostSpec {
                python: plan.python,
                init: plan.init,
                model_name: plan.model_name,
                model_path: plan.model_path,
                kwargs,
                load_timeout: plan.timeout,
                batch_timeout: plan.timeout,
                threads: None,
                gpu: None,
            };
            let loaded = zoo_python_host::load(&hosts.spec(&spec, 0)).with_context(|| {
                match &fiftyone_class {
                    Some(class) => format!(
                        "building `{name}` with FiftyOne's `{class}` in the model host (`{}`) failed; it needs fiftyone and {} (`zoo models requirements {name} --install`, or `-i`)",
                        spec.python,
                        packages_of(&downloaded.model).join(", ")
                    ),
                    None => format!("loading `{name}` in the model host failed"),
                }
            })?;
            match loaded {
                Loaded::Config(value) => {
                    registry.config_from_hook(&downloaded.model, value, &overrides)?
                }
                Loaded::Model(first) => return hosted(&spec, &hosts, name, first),
            }
        }
        _ => bail!("zoo cannot build model `{name}` this way"),
    };
    let kind = config
        .kind
        .clone()
        .with_context(|| format!("the deployment config of `{name}` has no `type`"))?;
    let spec = ModelSpec {
        kind,
        config: config.config,
        model_path: Some(downloaded.path),
    };
    let factory = runtime.factory();
    let build = || {
        factory
            .build(&spec)
            .with_context(|| format!("building model `{name}` failed"))
    };
    let first = build()?;
    let count = match model.workers {
        Workers::Auto => first.workers().max(1),
        Workers::Count(count) => count,
    };
    let mut models = vec![first];
    for _ in 1..count {
        models.push(build()?);
    }
    Ok(Built {
        name,
        models,
        one_image_per_call: false,
        hosted: false,
    })
}

/// The Python packages a model's entry lists for this machine.
fn packages_of(model: &zoo_manifest::ZooModel) -> Vec<String> {
    model
        .model
        .requirements
        .as_ref()
        .map(|requirements| requirements.packages_for(super::models::nvidia_gpu_present()))
        .unwrap_or_default()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// For a model run through FiftyOne's class in the model host: `ZOO_PYTHON`
/// must have fiftyone and the entry's packages, checked before anything is
/// downloaded; the error names the model, the class, what is missing and
/// how to install it.
fn check_fiftyone_class_packages(
    registry: &Registry,
    model: &zoo_manifest::ZooModel,
) -> Result<()> {
    if !matches!(
        registry.load_path(model),
        LoadPath::FiftyOneClass | LoadPath::FiftyOneTensorFlow
    ) {
        return Ok(());
    }
    let mut wanted = vec!["fiftyone".to_owned()];
    wanted.extend(packages_of(model));
    let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let installed = super::models::installed_python_packages(&names);
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|spec| {
            let name = spec
                .split(|character: char| {
                    !(character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.'))
                })
                .next()
                .unwrap_or_default();
            !installed
                .iter()
                .any(|found| found.eq_ignore_ascii_case(name))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let python = config::python();
    let class = model
        .model
        .default_deployment_config_dict
        .as_ref()
        .and_then(|config| config.kind.clone())
        .unwrap_or_default();
    bail!(
        "model `{}` runs through FiftyOne's `{class}` in the Python model host, and `{python}` (`ZOO_PYTHON`) lacks {}: install them with `{}` (once fiftyone is there, `-i` installs the model's own requirements first)",
        model.name(),
        missing.join(", "),
        shell_words(
            [python.as_str(), "-m", "pip", "install"]
                .into_iter()
                .chain(missing.iter().copied())
        )
    )
}

/// How many model hosts run, and what each may use: `--workers N` starts
/// N hosts, splitting the CPU threads as the native backend splits
/// libtorch's (each gets `threads / N`, at least 1) and, on a machine with
/// several GPUs, giving host `i` GPU `i mod GPUs` alone; `auto` starts one
/// host, or one per GPU when the model runs on a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPlan {
    /// `--workers N`, or `None` for `auto`.
    count: Option<usize>,
    /// The native backend's intra-op threads (libtorch's default).
    threads: usize,
    /// The GPUs by their `CUDA_VISIBLE_DEVICES` names.
    gpus: Vec<String>,
}

impl HostPlan {
    fn new(workers: Workers, info: &crate::runtime::SystemInfo) -> Self {
        let gpus = match config::visible_gpus() {
            Some(visible) => visible.into_iter().take(info.cuda_devices).collect(),
            None => (0..info.cuda_devices).map(|id| id.to_string()).collect(),
        };
        Self {
            count: match workers {
                Workers::Auto => None,
                Workers::Count(count) => Some(count.max(1)),
            },
            threads: info.threads.max(1),
            gpus,
        }
    }

    /// The spec of host `index` of `count`.
    fn spec_of(&self, spec: &HostSpec, index: usize, count: usize) -> HostSpec {
        let mut spec = spec.clone();
        if count > 1 {
            spec.threads = Some((self.threads / count).max(1));
            if self.gpus.len() > 1 {
                spec.gpu = Some(self.gpus[index % self.gpus.len()].clone());
            }
        }
        spec
    }

    /// The spec of host `index` before the first host said where its
    /// model runs.
    fn spec(&self, spec: &HostSpec, index: usize) -> HostSpec {
        self.spec_of(spec, index, self.count.unwrap_or(1))
    }

    /// How many hosts run, once the first said where its model runs.
    fn count(&self, device: Option<&str>) -> usize {
        match self.count {
            Some(count) => count,
            None if device.is_some_and(|device| device.starts_with("cuda")) => {
                self.gpus.len().max(1)
            }
            None => 1,
        }
    }
}

/// The hosted model and the other hosts the plan asks for.
fn hosted(spec: &HostSpec, hosts: &HostPlan, name: String, first: HostedModel) -> Result<Built> {
    let ragged = first.info().ragged_batches;
    let count = hosts.count(first.info().device.as_deref());
    tracing::debug!(
        model = %name,
        class = %first.info().class,
        device = ?first.info().device,
        threads = ?first.info().threads,
        hosts = count,
        "running in the model host"
    );
    let mut models: Vec<Box<dyn Model>> = vec![Box::new(first)];
    for index in 1..count {
        match zoo_python_host::load(&hosts.spec_of(spec, index, count))? {
            Loaded::Model(model) => models.push(Box::new(model)),
            Loaded::Config(_) => bail!("`load_model` of `{name}` returned a model, then a config"),
        }
    }
    Ok(Built {
        name,
        models,
        one_image_per_call: ragged,
        hosted: true,
    })
}

/// The model copies as the engine takes them.
fn copies(models: &mut [Box<dyn Model>]) -> Vec<&mut dyn Model> {
    models
        .iter_mut()
        .map(|model| &mut **model as &mut dyn Model)
        .collect()
}

pub(crate) fn dataset_name(store: &mut Datasets, dataset: &str) -> Result<String> {
    if store.exists(dataset) {
        return Ok(dataset.to_owned());
    }
    if zoo_storage::is_object_url(dataset) {
        return scale::dataset_for_url(store, dataset);
    }
    if Path::new(dataset).is_dir() {
        return Ok(store.for_dir(Path::new(dataset))?);
    }
    bail!("`{dataset}` is neither a dataset (see `zoo datasets list`) nor a folder of images")
}

/// What a run needs: the dataset, the built model, the samples to do.
struct Run {
    store: Datasets,
    dataset: String,
    /// The dataset as it was when the run started: writes check it is
    /// still there (not deleted, not replaced by one reusing its row ids).
    pin: DatasetPin,
    name: String,
    /// One copy per worker.
    models: Vec<Box<dyn Model>>,
    /// One image per model call (a hosted model with `ragged_batches`).
    one_image_per_call: bool,
    /// The model runs in model hosts.
    hosted: bool,
    pending: Vec<zoo_model_core::Sample>,
    /// Reads images (files, object-store URLs) within the limits the
    /// environment sets.
    loader: ObjectLoader,
    /// With `--results`: where results go instead of the dataset.
    results: Option<ShardResults>,
}

impl Run {
    /// Resolves the dataset first (cheap, and a typo should not cost a
    /// download), then the model, then what `field` has left to do.
    // One argument per command-line option it serves; a struct would only
    // rename them.
    #[allow(clippy::too_many_arguments)]
    fn start(
        runtime: &dyn Runtime,
        name_or_url: &str,
        model: &ModelArgs,
        dataset: &str,
        field: &str,
        overwrite: bool,
        quiet: bool,
        scale: (&ScaleArgs, ResultsKind),
    ) -> Result<Self> {
        // A bad field name or limit costs nothing: checked before the
        // dataset is indexed or the model downloaded.
        validate_field_name(field)
            .with_context(|| format!("cannot store results under `{}`", field.escape_debug()))?;
        let loader = scale::loader()?;
        let mut store = Datasets::open(&config::datasets_dir()?)?;
        let dataset = dataset_name(&mut store, dataset)?;
        let registry = config::registry()?;
        let Built {
            name,
            models,
            one_image_per_call,
            hosted,
        } = load_model(&registry, runtime, name_or_url, model, quiet)
            .with_context(|| format!("loading model `{name_or_url}` failed"))?;
        let pin = store.pin(&dataset)?;
        let (pending, results) =
            scale::pending(&mut store, &dataset, field, scale.1, scale.0, overwrite)?;
        Ok(Self {
            store,
            dataset,
            pin,
            name,
            models,
            one_image_per_call,
            hosted,
            pending,
            loader,
            results,
        })
    }

    /// The batch size to run: `asked`, or 1 for a model that takes one
    /// image per call (said once, as FiftyOne's `apply_model` warns).
    fn batch_size(&self, asked: usize) -> usize {
        if self.one_image_per_call && asked > 1 {
            say!(
                "`{}` has `ragged_batches`: its images go one at a time (ignoring batch size {asked}), as in FiftyOne",
                escape(&self.name)
            );
            return 1;
        }
        asked
    }
}

/// The error of a run in which every sample failed and the field holds no
/// result at all: the command fails. A run with some failures, or one that
/// only retried the failures of a field with results, succeeds and lists
/// them.
fn every_sample_failed(failed: usize, field: &str, first: Option<&(PathBuf, String)>) -> Error {
    let first = first.map_or_else(String::new, |(path, error)| {
        format!(" (the first: `{}`: {error})", path.display())
    });
    anyhow!(
        "every one of the {failed} samples failed{first}, so nothing is stored under `{field}`: check that the images exist and can be read, then run again"
    )
}

fn progress(total: usize, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    )
}

fn rate(count: usize, summary: &ApplySummary) -> f64 {
    count as f64 / summary.wall_time.as_secs_f64().max(1e-9)
}

pub(crate) fn apply(args: &ApplyArgs, runtime: &dyn Runtime, quiet: bool) -> Result<()> {
    let run = Run::start(
        runtime,
        &args.name_or_url,
        &args.model,
        &args.dataset,
        &args.label_field,
        args.overwrite,
        quiet,
        (&args.scale, ResultsKind::Labels),
    )?;
    let batch_size = run.batch_size(args.batch_size);
    let Run {
        mut store,
        dataset,
        pin,
        name,
        mut models,
        pending,
        loader,
        mut results,
        one_image_per_call: _,
        hosted,
    } = run;
    let options = ApplyOptions {
        batch_size,
        confidence_thresh: args.confidence_thresh,
        store_logits: args.store_logits,
        skip_failures: !args.stop_on_failure,
        label_field: args.label_field.clone(),
        rename: BTreeMap::new(),
        pipelined: match args.pipeline.as_str() {
            "on" => true,
            "off" => false,
            // Pipelined only when there are more cores than libtorch's
            // threads. Not for a model on a GPU either: on an H100 with 16
            // cores, decoding on every core during the forward starved the
            // thread that feeds the GPU (resnet18 half: 456 img/s pipelined
            // against 809 in turn; BENCHMARKS.md, run 5). Always for a
            // hosted model: its forward runs in another process, and zoo's
            // own threads would idle while it runs.
            _ => {
                let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
                hosted || cores > runtime.system_info().threads
            }
        },
    };
    let bar = progress(pending.len(), quiet);
    bar.set_message(format!("applying {name}"));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let workers = models.len();
    let mut copies = copies(&mut models);
    let summary = zoo_model_core::apply_on(
        &mut copies,
        &pending,
        &loader,
        &options,
        &mut |batch: Vec<Outcome>| {
            for outcome in &batch {
                if let Outcome::Labels { fields, .. } = outcome {
                    for (_, label) in fields {
                        match label {
                            Some(Label::Classification { label, .. }) => {
                                *counts.entry(label.clone()).or_default() += 1
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
            match &mut results {
                Some(results) => results.record_labels(&batch).map_err(Error::from),
                None => store
                    .write_labels(&pin, &args.label_field, &batch)
                    .map_err(Error::from),
            }
            .map_err(|err| format!("{err:#}"))?;
            bar.inc(batch.len() as u64);
            Ok(())
        },
    )
    .with_context(|| format!("applying `{name}` to `{dataset}` failed"))?;
    bar.finish_and_clear();
    scale::finish(results)?;
    let failures = store.failures(&dataset, &args.label_field)?;
    let mut top: Vec<(String, usize)> = counts.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(5);
    let all_failed = summary.succeeded == 0
        && summary.failed > 0
        && store.finished(&dataset, &args.label_field)? == 0;
    let mut out = output::Printer::stdout();
    if args.json {
        out.json(&json!({
                "model": name, "dataset": dataset, "field": args.label_field,
                "processed": pending.len(), "succeeded": summary.succeeded, "failed": summary.failed,
                "seconds": summary.wall_time.as_secs_f64(), "model_seconds": summary.model_time.as_secs_f64(),
                "images_per_second": rate(pending.len(), &summary), "forwards": summary.forwards,
                "pipelined": options.pipelined && workers == 1, "workers": workers, "peak_rss_bytes": peak_rss_bytes(),
                "top_labels": top.iter().map(|(label, count)| json!({"label": label, "count": count})).collect::<Vec<_>>(),
                "failures": failures.iter().map(|(path, error)| json!({"filepath": path.to_string_lossy(), "error": error})).collect::<Vec<_>>(),
            }),
        )?;
        if all_failed {
            return Err(every_sample_failed(
                summary.failed,
                &args.label_field,
                failures.first(),
            ));
        }
        return Ok(());
    }
    out.line(&format!("applied `{name}` to {} samples of `{dataset}` (field `{}`) in {:.2} s: {:.2} images/s (model {:.2} s, {} forwards)",
        pending.len(),
        args.label_field,
        summary.wall_time.as_secs_f64(),
        rate(pending.len(), &summary),
        summary.model_time.as_secs_f64(),
        summary.forwards))?;
    if !top.is_empty() {
        let labels: Vec<String> = top
            .iter()
            .map(|(label, count)| format!("{label} ({count})"))
            .collect();
        out.line(&format!("top labels: {}", labels.join(", ")))?;
    }
    if !failures.is_empty() {
        say!("{} sample(s) failed and were skipped:", failures.len());
        for (path, error) in failures.iter().take(10) {
            say!(
                "  {}: {}",
                escape(&path.display().to_string()),
                escape(error)
            );
        }
    }
    if all_failed {
        return Err(every_sample_failed(
            summary.failed,
            &args.label_field,
            failures.first(),
        ));
    }
    Ok(())
}

pub(crate) fn embed(args: &EmbedArgs, runtime: &dyn Runtime, quiet: bool) -> Result<()> {
    let run = Run::start(
        runtime,
        &args.name_or_url,
        &args.model,
        &args.dataset,
        &args.embeddings_field,
        args.overwrite,
        quiet,
        (&args.scale, ResultsKind::Embeddings),
    )?;
    let batch_size = run.batch_size(args.batch_size);
    let Run {
        mut store,
        dataset,
        pin,
        name,
        mut models,
        pending,
        loader,
        mut results,
        one_image_per_call: _,
        hosted: _,
    } = run;
    let options = ApplyOptions {
        batch_size,
        ..ApplyOptions::default()
    };
    let bar = progress(pending.len(), quiet);
    bar.set_message(format!("embedding with {name}"));
    let mut dim = 0;
    let workers = models.len();
    let mut copies = copies(&mut models);
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
                dim = values.len();
            }
            match &mut results {
                Some(results) => results.record_embeddings(&batch).map_err(Error::from),
                None => store
                    .write_embeddings(&pin, &args.embeddings_field, &batch)
                    .map_err(Error::from),
            }
            .map_err(|err| format!("{err:#}"))?;
            bar.inc(batch.len() as u64);
            Ok(())
        },
    )
    .with_context(|| format!("computing embeddings of `{dataset}` with `{name}` failed"))?;
    bar.finish_and_clear();
    scale::finish(results)?;
    let all_failed = summary.succeeded == 0
        && summary.failed > 0
        && store.finished(&dataset, &args.embeddings_field)? == 0;
    let failures = if all_failed {
        store.failures(&dataset, &args.embeddings_field)?
    } else {
        Vec::new()
    };
    let mut out = output::Printer::stdout();
    if args.json {
        out.json(&json!({"model": name, "dataset": dataset, "field": args.embeddings_field, "processed": pending.len(),
                    "succeeded": summary.succeeded, "failed": summary.failed, "dimension": dim,
                    "seconds": summary.wall_time.as_secs_f64(), "images_per_second": rate(pending.len(), &summary),
                    "workers": workers, "peak_rss_bytes": peak_rss_bytes()}),
        )?;
    } else {
        out.line(&format!("embedded {} samples of `{dataset}` with `{name}` into `{}` ({dim} dimensions) in {:.2} s: {:.2} images/s; {} failed",
            pending.len(),
            args.embeddings_field,
            summary.wall_time.as_secs_f64(),
            rate(pending.len(), &summary),
            summary.failed))?;
    }
    if all_failed {
        return Err(every_sample_failed(
            summary.failed,
            &args.embeddings_field,
            failures.first(),
        ));
    }
    Ok(())
}

/// This process's peak resident memory (`VmHWM` in `/proc/self/status`),
/// where the system reports it: what a run needed, for `--json`.
fn peak_rss_bytes() -> Option<u64> {
    let status = fs_err::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `zoo models embed-text NAME PROMPT...`: the model's text embeddings
/// (FiftyOne's `model.embed_prompts(prompts)`), one JSON line per prompt.
pub(crate) fn embed_text(args: &EmbedTextArgs, runtime: &dyn Runtime, quiet: bool) -> Result<()> {
    let registry = config::registry()?;
    let Built {
        name, mut models, ..
    } = load_model(&registry, runtime, &args.name_or_url, &args.model, quiet)?;
    let model = models
        .first_mut()
        .with_context(|| format!("no copy of model `{name}` was built"))?;
    if !model.can_embed_prompts() {
        bail!(
            "model `{name}` does not embed text prompts; use a model that does, such as `clip-vit-base32-torch`"
        );
    }
    let embeddings = model
        .embed_prompts(&args.prompts)
        .map_err(Error::from)
        .with_context(|| format!("embedding prompts with `{name}` failed"))?;
    let mut out = output::Printer::stdout();
    for (prompt, embedding) in args.prompts.iter().zip(embeddings) {
        out.json_line(&json!({"prompt": prompt, "embedding": embedding}))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HostSpec {
        HostSpec {
            python: "python3".into(),
            init: "/source/__init__.py".into(),
            model_name: "a/model".into(),
            model_path: "/source/model.pt".into(),
            kwargs: serde_json::Map::new(),
            load_timeout: std::time::Duration::from_secs(1),
            batch_timeout: std::time::Duration::from_secs(1),
            threads: None,
            gpu: None,
        }
    }

    #[test]
    fn host_plans_split_threads_and_gpus_between_hosts() {
        let gpus = |count: usize| (0..count).map(|id| id.to_string()).collect();
        // (--workers, threads, GPUs, device of the first host) -> (hosts,
        // each host's threads and GPU)
        type Host = (Option<usize>, Option<String>);
        type Case = (
            Option<usize>,
            usize,
            Vec<String>,
            Option<&'static str>,
            Vec<Host>,
        );
        let cases: Vec<Case> = vec![
            (None, 8, gpus(0), Some("cpu"), vec![(None, None)]),
            (Some(1), 8, gpus(0), Some("cpu"), vec![(None, None)]),
            (
                Some(2),
                8,
                gpus(0),
                Some("cpu"),
                vec![(Some(4), None), (Some(4), None)],
            ),
            (
                Some(3),
                2,
                gpus(1),
                None,
                vec![(Some(1), None), (Some(1), None), (Some(1), None)],
            ),
            (
                Some(3),
                16,
                vec!["3".into(), "5".into()],
                Some("cuda:0"),
                vec![
                    (Some(5), Some("3".into())),
                    (Some(5), Some("5".into())),
                    (Some(5), Some("3".into())),
                ],
            ),
            // auto on a GPU: one host per GPU, each alone on its own.
            (
                None,
                16,
                gpus(2),
                Some("cuda:0"),
                vec![(None, None), (Some(8), Some("1".into()))],
            ),
        ];
        for (count, threads, gpus, device, expected) in cases {
            let plan = HostPlan {
                count,
                threads,
                gpus,
            };
            let hosts = plan.count(device);
            let got: Vec<Host> = (0..hosts)
                .map(|index| {
                    let spec = if index == 0 {
                        plan.spec(&spec(), 0)
                    } else {
                        plan.spec_of(&spec(), index, hosts)
                    };
                    (spec.threads, spec.gpu)
                })
                .collect();
            assert_eq!(got, expected, "{plan:?} {device:?}");
        }
    }
}
