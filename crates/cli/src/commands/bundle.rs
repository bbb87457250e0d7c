//! `zoo bundle create|install`.

use anyhow::{Context, Result};

use crate::app::BundleCommand;
use crate::progress::Terminal;
use crate::terminal::say;
use crate::{config, output};

pub(crate) fn run(command: BundleCommand, quiet: bool) -> Result<()> {
    let terminal = Terminal::new(quiet);
    let zoo = config::zoo(&zoo::NoRuntime, &terminal)?;
    let mut out = output::Printer::stdout();
    match command {
        BundleCommand::Create {
            out: path,
            models,
            json,
        } => {
            let report = zoo
                .bundle_create(&path, &models)
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
        BundleCommand::Install { bundle, json } => {
            let report = zoo
                .bundle_install(&bundle)
                .with_context(|| format!("installing bundle `{}` failed", bundle.display()))?;
            if json {
                return out.json(&serde_json::to_value(&report)?);
            }
            for source in &report.sources_installed {
                out.line(&format!("registered source {source} (untrusted)"))?;
            }
            for model in &report.models_installed {
                out.line(&format!("installed  {model}"))?;
            }
            for model in &report.models_present {
                out.line(&format!("present     {model}"))?;
            }
            say!(
                "every file matched the bundle's lock; its lock is in `{}`",
                report.lockfile.display()
            );
            Ok(())
        }
    }
}
