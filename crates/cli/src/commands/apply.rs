//! `zoo models apply`, `embed` and `embed-text`: options from arguments,
//! a call into the library, and the report printed.

use anyhow::{Context, Result};
use serde_json::json;
use zoo::{
    ErrorLevel, LabelOptions, LoadOptions, LoadedModel, RunOptions, RunReport, Runtime, Zoo,
};
use zoo_datasets::Shard;

use crate::app::{ApplyArgs, EmbedArgs, EmbedTextArgs, ModelArgs, ScaleArgs};
use crate::progress::Terminal;
use crate::terminal::say;
use crate::{config, output};

/// `-i`, `--error-level`, `--classes`, `-k`, `--workers` as load options.
fn load_options(zoo: &Zoo<'_>, model: &ModelArgs) -> Result<LoadOptions> {
    let mut options = LoadOptions::default().workers(model.workers);
    if model.locked {
        options.locked = Some(zoo::Locked::read(&zoo.config().lockfile)?);
    }
    options.model_name.clone_from(&model.model_name);
    options.install = model.install;
    options.error_level = model
        .error_level
        .map(|level| ErrorLevel::from_number(level).context("error level must be 0, 1 or 2"))
        .transpose()?;
    options.kwargs = crate::app::kwargs_map(&model.kwargs);
    // `--classes a,b` is `-k classes='["a","b"]'`.
    if let Some(classes) = &model.classes {
        options = options.classes(classes);
    }
    Ok(options)
}

/// `--shard`, `--results` and `--tags` on top of the field, batch size and
/// overwrite.
fn run_options(field: &str, batch_size: usize, overwrite: bool, scale: &ScaleArgs) -> RunOptions {
    RunOptions::new(field)
        .batch_size(batch_size)
        .overwrite(overwrite)
        .shard(scale.shard.unwrap_or(Shard::ALL), scale.results.clone())
        .tags(scale.tags.clone())
}

/// Resolves the dataset first (cheap, and a typo should not cost a
/// download), then loads the model. A bad field name costs nothing either.
fn start(
    zoo: &Zoo<'_>,
    name_or_url: &str,
    model: &ModelArgs,
    dataset: &str,
    field: &str,
) -> Result<(String, LoadedModel)> {
    zoo_model_core::validate_field_name(field)
        .with_context(|| format!("cannot store results under `{}`", field.escape_debug()))?;
    let dataset = zoo.resolve_dataset(dataset)?;
    let model = zoo.load_model(name_or_url, &load_options(zoo, model)?)?;
    Ok((dataset, model))
}

/// The report of a finished run, or of one in which every sample failed
/// (printed too, then the error returned).
fn finished(result: zoo::Result<RunReport>) -> Result<(RunReport, Option<zoo::Error>)> {
    match result {
        Ok(report) => Ok((report, None)),
        Err(error) => match error.run_report().cloned() {
            Some(report) => Ok((report, Some(error))),
            None => Err(error.into()),
        },
    }
}

pub(crate) fn apply(args: &ApplyArgs, runtime: &dyn Runtime, quiet: bool) -> Result<()> {
    let terminal = Terminal::new(quiet);
    let zoo = config::zoo(runtime, &terminal)?;
    let (dataset, mut model) = start(
        &zoo,
        &args.name_or_url,
        &args.model,
        &args.dataset,
        &args.label_field,
    )?;
    let run = run_options(
        &args.label_field,
        args.batch_size,
        args.overwrite,
        &args.scale,
    );
    let mut labels = LabelOptions::default();
    labels.confidence_thresh = args.confidence_thresh;
    labels.store_logits = args.store_logits;
    labels.stop_on_failure = args.stop_on_failure;
    labels.prompt_field.clone_from(&args.prompt_field);
    labels.pipelined = match args.pipeline.as_str() {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    };
    let (report, failed) = finished(zoo.apply(&mut model, &dataset, &run, &labels))?;
    let mut out = output::Printer::stdout();
    if args.json {
        out.json(&json!({
            "model": report.model, "dataset": report.dataset, "field": report.field,
            "processed": report.processed, "succeeded": report.succeeded, "failed": report.failed,
            "seconds": report.wall_time.as_secs_f64(), "model_seconds": report.model_time.as_secs_f64(),
            "images_per_second": report.images_per_second(), "forwards": report.forwards,
            "pipelined": report.pipelined, "workers": report.workers, "peak_rss_bytes": peak_rss_bytes(),
            "top_labels": report.top_labels.iter().map(|(label, count)| json!({"label": label, "count": count})).collect::<Vec<_>>(),
            "failures": report.failures.iter().map(|(path, error)| json!({"filepath": path.to_string_lossy(), "error": error})).collect::<Vec<_>>(),
        }))?;
        return failed.map_or(Ok(()), |error| Err(error.into()));
    }
    out.line(&format!(
        "applied `{}` to {} samples of `{}` (field `{}`) in {:.2} s: {:.2} images/s (model {:.2} s, {} forwards)",
        report.model,
        report.processed,
        report.dataset,
        report.field,
        report.wall_time.as_secs_f64(),
        report.images_per_second(),
        report.model_time.as_secs_f64(),
        report.forwards
    ))?;
    if !report.top_labels.is_empty() {
        let labels: Vec<String> = report
            .top_labels
            .iter()
            .map(|(label, count)| format!("{label} ({count})"))
            .collect();
        out.line(&format!("top labels: {}", labels.join(", ")))?;
    }
    if !report.failures.is_empty() {
        say!(
            "{} sample(s) failed and were skipped:",
            report.failures.len()
        );
        for (path, error) in report.failures.iter().take(10) {
            say!(
                "  {}: {}",
                crate::terminal::escape(&path.display().to_string()),
                crate::terminal::escape(error)
            );
        }
    }
    failed.map_or(Ok(()), |error| Err(error.into()))
}

pub(crate) fn embed(args: &EmbedArgs, runtime: &dyn Runtime, quiet: bool) -> Result<()> {
    let terminal = Terminal::new(quiet);
    let zoo = config::zoo(runtime, &terminal)?;
    let (dataset, mut model) = start(
        &zoo,
        &args.name_or_url,
        &args.model,
        &args.dataset,
        &args.embeddings_field,
    )?;
    let run = run_options(
        &args.embeddings_field,
        args.batch_size,
        args.overwrite,
        &args.scale,
    );
    let (report, failed) = finished(zoo.embed(&mut model, &dataset, &run))?;
    let mut out = output::Printer::stdout();
    if args.json {
        out.json(&json!({
            "model": report.model, "dataset": report.dataset, "field": report.field,
            "processed": report.processed, "succeeded": report.succeeded, "failed": report.failed,
            "dimension": report.dimension, "seconds": report.wall_time.as_secs_f64(),
            "images_per_second": report.images_per_second(), "workers": report.workers,
            "peak_rss_bytes": peak_rss_bytes(),
        }))?;
    } else {
        out.line(&format!(
            "embedded {} samples of `{}` with `{}` into `{}` ({} dimensions) in {:.2} s: {:.2} images/s; {} failed",
            report.processed,
            report.dataset,
            report.model,
            report.field,
            report.dimension,
            report.wall_time.as_secs_f64(),
            report.images_per_second(),
            report.failed
        ))?;
    }
    failed.map_or(Ok(()), |error| Err(error.into()))
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
    let terminal = Terminal::new(quiet);
    let zoo = config::zoo(runtime, &terminal)?;
    let mut model = zoo.load_model(&args.name_or_url, &load_options(&zoo, &args.model)?)?;
    let embeddings = model.embed_prompts(&args.prompts)?;
    let mut out = output::Printer::stdout();
    for (prompt, embedding) in args.prompts.iter().zip(embeddings) {
        out.json_line(&json!({"prompt": prompt, "embedding": embedding}))?;
    }
    Ok(())
}
