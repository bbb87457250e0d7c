//! `zoo bundle create|install`.

use anyhow::{Context, Result};

use crate::app::BundleCommand;
use crate::progress::Terminal;
use crate::terminal::say;
use crate::{config, output};

pub(crate) fn run(
    command: BundleCommand,
    runtime: Option<&dyn zoo::Runtime>,
    quiet: bool,
) -> Result<()> {
    let terminal = Terminal::new(quiet);
    let zoo = config::zoo(runtime.unwrap_or(&zoo::NoRuntime), &terminal)?;
    let mut out = output::Printer::stdout();
    match command {
        BundleCommand::Create {
            out: path,
            models,
            with_python,
            json,
        } => {
            let report = zoo
                .bundle_create(&path, &models, with_python)
                .with_context(|| format!("creating bundle `{}` failed", path.display()))?;
            if json {
                return out.json(&serde_json::to_value(&report)?);
            }
            out.line(&format!("bundle:  {}", report.path.display()))?;
            out.line(&format!("sha256:  {}", report.sha256))?;
            out.line(&format!("bytes:   {}", report.bytes))?;
            out.line(&format!("files:   {}", report.files))?;
            for model in &report.models {
                out.line(&format!("model    {model}"))?;
            }
            for source in &report.sources {
                out.line(&format!("source   {source}"))?;
            }
            Ok(())
        }
        BundleCommand::Install {
            bundle,
            no_verify,
            json,
        } => {
            let report = zoo
                .bundle_install(&bundle, !no_verify)
                .with_context(|| format!("installing bundle `{}` failed", bundle.display()))?;
            let failed: Vec<&str> = report
                .verified
                .iter()
                .filter(|verified| !verified.passed)
                .map(|verified| verified.model.as_str())
                .collect();
            if json {
                out.json(&serde_json::to_value(&report)?)?;
            } else {
                print_install(&mut out, &report)?;
            }
            if !failed.is_empty() {
                anyhow::bail!(
                    "the bundle's files are installed, but {} did not give the lock's golden outputs here (another libtorch or device?): `zoo models verify NAME` shows the difference",
                    failed.join(", ")
                );
            }
            Ok(())
        }
    }
}

/// The install report as lines.
fn print_install(out: &mut output::Printer, report: &zoo::InstallReport) -> Result<()> {
    for source in &report.sources_installed {
        out.line(&format!("registered source {source} (untrusted)"))?;
    }
    for model in &report.models_installed {
        out.line(&format!("installed  {model}"))?;
    }
    for model in &report.models_present {
        out.line(&format!("present     {model}"))?;
    }
    for package in &report.python_installed {
        out.line(&format!("python     {package}"))?;
    }
    for verified in &report.verified {
        super::lock::print_verify(out, verified)?;
    }
    for skipped in &report.not_verified {
        out.line(&format!(
            "NOT VERIFIED {}: {}",
            skipped.model, skipped.reason
        ))?;
    }
    say!(
        "every file matched the bundle's lock; its lock is in `{}`",
        report.lockfile.display()
    );
    Ok(())
}
