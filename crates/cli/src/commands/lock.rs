//! `zoo lock`: pin models into `zoo.lock`.

use anyhow::{Context, Result};
use serde_json::json;

use crate::progress::Terminal;
use crate::terminal::say;
use crate::{config, output};

pub(crate) fn run(models: &[String], fresh: bool, json: bool, quiet: bool) -> Result<()> {
    let terminal = Terminal::new(quiet);
    let zoo = config::zoo(&zoo::NoRuntime, &terminal)?;
    let path = zoo.config().lockfile.clone();
    let existing = if !fresh && path.exists() {
        Some(zoo::Lock::read(&path)?)
    } else {
        None
    };
    let lock = zoo
        .lock(models, existing)
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
