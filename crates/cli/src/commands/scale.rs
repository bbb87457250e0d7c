//! `zoo datasets merge-results` and `zoo datasets create NAME URL`: the
//! library does the work; this prints it.

use anyhow::Result;
use serde_json::json;
use zoo_datasets::DatasetInfo;

use crate::progress::Terminal;
use crate::{config, output};

/// `zoo datasets create NAME URL`: the images under an object-store prefix.
pub(crate) fn create_from_url(name: &str, url: &str) -> Result<DatasetInfo> {
    let terminal = Terminal::new(true);
    let zoo = config::zoo(&zoo::NoRuntime, &terminal)?;
    Ok(zoo.create_dataset_from_url(name, url)?)
}

/// `zoo datasets merge-results DATASET LOCATION FIELD`.
pub(crate) fn merge(
    dataset: &str,
    location: &str,
    field: &str,
    allow_partial: bool,
    json: bool,
) -> Result<()> {
    let terminal = Terminal::new(true);
    let zoo = config::zoo(&zoo::NoRuntime, &terminal)?;
    let report = zoo.merge_results(dataset, location, field, allow_partial)?;
    let mut out = output::Printer::stdout();
    if json {
        out.json(&json!({
            "dataset": report.dataset, "field": report.field, "shards": report.shards,
            "unfinished_shards": report.unfinished.iter().map(|(index, _)| index).collect::<Vec<_>>(),
            "parts": report.parts, "records": report.records, "unknown_keys": report.unknown,
        }))
    } else {
        out.line(&format!(
            "merged {} result(s) from {} part(s) of {} shard(s) into field `{}` of `{}`",
            report.records, report.parts, report.shards, report.field, report.dataset
        ))
    }
}
