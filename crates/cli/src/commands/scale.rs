//! Scale-out: `--shard K/N` and `--results LOCATION` of
//! `apply`/`embed`, and `zoo datasets merge-results`.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde_json::json;
use zoo_datasets::{
    DatasetInfo, Datasets, IMAGE_EXTENSIONS, MergePlan, ObjectLoader, RemoteBytes, ResultsKind,
    ResultsLocation, ResultsStore, Shard, ShardResults, ShardState, stable_key,
};
use zoo_model_core::Sample;
use zoo_storage::Storage;

use crate::app::ScaleArgs;
use crate::terminal::{escape, say};
use crate::{config, output};

/// The samples a run does, and where their results go when not into the
/// dataset: with `--results`, every sample of the shard whose chunk is not
/// written yet (the dataset is not touched); else what `field` has not
/// finished, limited to the shard.
pub(crate) fn pending(
    store: &mut Datasets,
    dataset: &str,
    field: &str,
    kind: ResultsKind,
    scale: &ScaleArgs,
    overwrite: bool,
) -> Result<(Vec<Sample>, Option<ShardResults>)> {
    let shard = scale.shard.unwrap_or(Shard::ALL);
    if let Some(location) = &scale.results {
        let location = results_location(location)?;
        let samples = store.shard_samples(dataset, shard)?;
        let results = ShardResults::open(
            &location,
            field,
            kind,
            shard,
            config::results_chunk()?,
            samples,
            overwrite,
        )
        .with_context(|| format!("preparing the results of shard `{shard}` failed"))?;
        return Ok((results.todo().to_vec(), Some(results)));
    }
    let mut pending = store.pending(dataset, field, overwrite)?;
    if shard != Shard::ALL {
        let root = store.root(dataset)?;
        pending.retain(|sample| {
            stable_key(&root, &sample.filepath).is_some_and(|key| shard.contains(&key))
        });
    }
    Ok((pending, None))
}

/// Ends a run that wrote part files: checks every chunk was written and
/// marks the shard done.
pub(crate) fn finish(results: Option<ShardResults>) -> Result<()> {
    if let Some(results) = results {
        let summary = results.finish()?;
        say!(
            "shard results: {} chunk(s), {} written now, {} kept from an earlier attempt",
            summary.chunks,
            summary.written,
            summary.skipped
        );
    }
    Ok(())
}

/// Object storage as the apply engine's image source.
#[derive(Debug)]
struct StorageBytes(Storage);

impl RemoteBytes for StorageBytes {
    fn fetch(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, String> {
        self.0
            .fetch(url, max_bytes)
            .map_err(|error| format!("{:#}", anyhow::Error::from(error)))
    }
}

/// Shard results in an object store: every key is an object below `base`.
#[derive(Debug)]
struct StorageResults {
    storage: Storage,
    base: String,
}

impl StorageResults {
    fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }
}

fn io_error(error: zoo_storage::StorageError) -> std::io::Error {
    std::io::Error::other(format!("{:#}", anyhow::Error::from(error)))
}

impl ResultsStore for StorageResults {
    fn describe(&self, key: &str) -> String {
        self.url(key)
    }

    fn put(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.storage.put(&self.url(key), bytes).map_err(io_error)
    }

    fn get(&self, key: &str, max_bytes: u64) -> std::io::Result<Option<Vec<u8>>> {
        match self.storage.fetch(&self.url(key), max_bytes) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(io_error(error)),
        }
    }

    fn children(&self, prefix: &str) -> std::io::Result<Vec<String>> {
        self.storage.children(&self.url(prefix)).map_err(io_error)
    }

    fn delete(&self, key: &str) -> std::io::Result<()> {
        self.storage.delete(&self.url(key)).map_err(io_error)
    }
}

/// `--results` and `merge-results`' LOCATION: a folder or `file://` URL, or
/// an object-store URL (`s3://`, `gs://`, `az://`).
fn results_location(text: &str) -> Result<ResultsLocation> {
    if zoo_storage::is_object_url(text) && !text.starts_with("file://") {
        let base = text.trim_end_matches('/');
        if base
            .split_once("://")
            .is_none_or(|(_, rest)| rest.is_empty())
        {
            bail!("results location `{text}` names no bucket: use `s3://bucket/prefix`");
        }
        return Ok(ResultsLocation::in_store(Arc::new(StorageResults {
            storage: storage()?,
            base: base.to_owned(),
        })));
    }
    Ok(ResultsLocation::parse(text)?)
}

fn storage() -> Result<Storage> {
    Storage::new(config::storage_options()?).context("setting up object storage failed")
}

/// The image loader of a run: local files, and object-store URLs with
/// bounded concurrency and retries.
pub(crate) fn loader() -> Result<ObjectLoader> {
    let limits = config::image_limits()?;
    Ok(ObjectLoader::new(
        limits,
        Some(Arc::new(StorageBytes(storage()?))),
    ))
}

/// `zoo datasets create NAME URL`: the images under an object-store prefix.
pub(crate) fn create_from_url(store: &mut Datasets, name: &str, url: &str) -> Result<DatasetInfo> {
    let urls = storage()?
        .list(url, |key| {
            key.rsplit_once('.').is_some_and(|(_, extension)| {
                IMAGE_EXTENSIONS.contains(&extension.to_ascii_lowercase().as_str())
            })
        })
        .with_context(|| format!("listing `{url}` failed"))?;
    Ok(store.create_from_urls(name, url, urls)?)
}

/// The dataset of an object-store URL given to `apply`/`embed`: named by
/// the URL, created on first use.
pub(crate) fn dataset_for_url(store: &mut Datasets, url: &str) -> Result<String> {
    if !store.exists(url) {
        match create_from_url(store, url, url) {
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.downcast_ref::<zoo_datasets::DatasetError>(),
                    Some(zoo_datasets::DatasetError::Exists(_))
                ) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(url.to_owned())
}

/// `zoo datasets merge-results DATASET LOCATION FIELD`.
pub(crate) fn merge(
    store: &mut Datasets,
    dataset: &str,
    location: &str,
    field: &str,
    allow_partial: bool,
    json: bool,
) -> Result<()> {
    let dataset = super::apply::dataset_name(store, dataset)?;
    let context = || format!("merging `{location}` into field `{field}` of `{dataset}` failed");
    let location = results_location(location).with_context(context)?;
    let plan = MergePlan::scan(&location, field).with_context(context)?;
    let unfinished = plan.unfinished();
    // At most 20 lines: a count of 100,000 shards is allowed.
    const SHOWN: usize = 20;
    for (index, state) in unfinished.iter().take(SHOWN) {
        let why = match state {
            ShardState::Missing => "missing (no folder)".to_owned(),
            ShardState::Incomplete { reason } => format!("incomplete: {reason}"),
            ShardState::Complete { .. } => continue,
        };
        say!("shard {index}/{}: {}", plan.count, escape(&why));
    }
    if unfinished.len() > SHOWN {
        say!(
            "... and {} more unfinished shard(s)",
            unfinished.len() - SHOWN
        );
    }
    if !unfinished.is_empty() && !allow_partial {
        bail!(
            "{} of {} shard(s) of `{}` are missing or incomplete, so nothing was merged: run them again (same `--shard K/N` and `--results`), or merge what is there with `--allow-partial`",
            unfinished.len(),
            plan.count,
            escape(&plan.dir)
        );
    }
    let summary = store
        .merge_results(&dataset, &plan, field, allow_partial)
        .with_context(context)?;
    let mut out = output::Printer::stdout();
    if json {
        out.json(&json!({
            "dataset": dataset, "field": field, "shards": plan.count,
            "unfinished_shards": unfinished.iter().map(|(index, _)| index).collect::<Vec<_>>(),
            "parts": summary.parts, "records": summary.records, "unknown_keys": summary.unknown,
        }))?;
    } else {
        out.line(&format!(
            "merged {} result(s) from {} part(s) of {} shard(s) into field `{}` of `{}`",
            summary.records, summary.parts, plan.count, field, dataset
        ))?;
    }
    if summary.unknown > 0 {
        say!(
            "{} result(s) named no sample of `{dataset}` and were left out (the first: `{}`)",
            summary.unknown,
            escape(&summary.first_unknown.unwrap_or_default())
        );
    }
    Ok(())
}
