//! `zoo lock`: pin models into `zoo.lock`.

use anyhow::{Context, Result};
use serde_json::json;

use crate::progress::Terminal;
use crate::terminal::say;
use crate::{config, output};

pub(crate) fn run(
    models: &[String],
    fresh: bool,
    golden: Option<f64>,
    runtime: Option<&dyn zoo::Runtime>,
    json: bool,
    quiet: bool,
) -> Result<()> {
    let terminal = Terminal::new(quiet);
    let zoo = config::zoo(runtime.unwrap_or(&zoo::NoRuntime), &terminal)?;
    if golden.is_some() && models.is_empty() {
        anyhow::bail!(
            "name the models to record golden outputs for (`zoo lock --with-golden MODEL...`)"
        );
    }
    let path = zoo.config().lockfile.clone();
    let existing = if !fresh && path.exists() {
        Some(zoo::Lock::read(&path)?)
    } else {
        None
    };
    let lock = zoo
        .lock(models, existing, golden)
        .with_context(|| format!("locking into `{}` failed", path.display()))?;
    lock.write(&path)?;
    let mut out = output::Printer::stdout();
    if json {
        return out.json(&json!(
            lock.models
                .iter()
                .map(|model| json!({
                    "name": model.name,
                    "source": model.source,
                    "runs": model.runs,
                    "files": model.files.len(),
                    "python": model.python,
                    "golden": model.golden.as_ref().map(|golden| golden.outputs.len()),
                }))
                .collect::<Vec<_>>()
        ));
    }
    let rows: Vec<Vec<String>> = lock
        .models
        .iter()
        .map(|model| {
            vec![
                model.name.clone(),
                model.source.clone(),
                model.runs.clone(),
                model.files.len().to_string(),
            ]
        })
        .collect();
    out.table(&["MODEL", "SOURCE", "RUNS", "FILES"], &rows)?;
    say!(
        "locked {} model(s) into `{}`",
        lock.models.len(),
        path.display()
    );
    Ok(())
}

/// `zoo models verify`: the model's outputs on the probe pictures against
/// the lock's golden ones; an error (exit code 1) when they differ.
pub(crate) fn verify(
    name: &str,
    tolerance: Option<f64>,
    runtime: &dyn zoo::Runtime,
    json: bool,
    quiet: bool,
) -> Result<()> {
    let terminal = Terminal::new(quiet);
    let zoo = config::zoo(runtime, &terminal)?;
    let locked = zoo::Locked::read(&zoo.config().lockfile)?;
    let report = zoo
        .verify(name, &locked, tolerance)
        .with_context(|| format!("verifying `{name}` failed"))?;
    let mut out = output::Printer::stdout();
    if json {
        out.json(&serde_json::to_value(&report)?)?;
    } else {
        print_verify(&mut out, &report)?;
    }
    if !report.passed {
        anyhow::bail!(
            "`{}` does not give the lock's golden outputs: {}; its weights, libtorch or device differ from the ones locked (`zoo models download --locked {}` checks the files)",
            report.model,
            report.failure.as_deref().unwrap_or("a difference"),
            report.model
        );
    }
    Ok(())
}

/// One verify report as lines.
pub(crate) fn print_verify(out: &mut output::Printer, report: &zoo::VerifyReport) -> Result<()> {
    out.line(&format!(
        "{} {}: {} numbers on {} probes, worst difference {:.3e}{} (tolerance {:.0e}){}",
        if report.passed { "PASS" } else { "FAIL" },
        report.model,
        report.numbers,
        report.probes,
        report.worst,
        if report.worst_at.is_empty() {
            String::new()
        } else {
            format!(" at {}", report.worst_at)
        },
        report.tolerance,
        if report.worst_mask > 0.0 {
            format!(
                ", {:.2}% of a mask's pixels differ",
                report.worst_mask * 100.0
            )
        } else {
            String::new()
        }
    ))
}
