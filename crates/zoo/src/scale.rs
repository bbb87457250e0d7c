//! Scale-out: a run's shard (`Shard`) and part files (`results`), object
//! storage as an image source, and merging shard results into a dataset.

use std::sync::Arc;

use zoo_datasets::{
    DatasetError, DatasetInfo, Datasets, IMAGE_EXTENSIONS, MergePlan, ObjectLoader, RemoteBytes,
    ResultsKind, ResultsLocation, ResultsStore, Shard, ShardResults, ShardState,
};
use zoo_model_core::Sample;
use zoo_storage::Storage;

use crate::Zoo;
use crate::error::{Context, Error, Result, bail, chain};

/// Object storage as the apply engine's image source.
#[derive(Debug)]
struct StorageBytes(Storage);

impl RemoteBytes for StorageBytes {
    fn fetch(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, String> {
        self.0.fetch(url, max_bytes).map_err(|error| chain(&error))
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
    std::io::Error::other(chain(&error))
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

/// How a merge went: shards that were not there, and what was merged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MergeReport {
    /// The dataset merged into.
    pub dataset: String,
    /// The field merged into.
    pub field: String,
    /// How many shards the run had.
    pub shards: u64,
    /// The shards missing or incomplete, with why (merged anyway only with
    /// `allow_partial`).
    pub unfinished: Vec<(u64, String)>,
    /// Part files merged.
    pub parts: u64,
    /// Sample results merged.
    pub records: u64,
    /// Results naming no sample of the dataset (left out).
    pub unknown: u64,
    /// The first such key.
    pub first_unknown: Option<String>,
}

impl Zoo<'_> {
    /// The object store the environment configures.
    fn storage(&self) -> Result<Storage> {
        Storage::new(self.config().storage.clone())
            .with_context(|| "setting up object storage failed")
    }

    /// The image loader of a run: local files, and object-store URLs with
    /// bounded concurrency and retries.
    pub(crate) fn loader(&self) -> Result<ObjectLoader> {
        Ok(ObjectLoader::new(
            self.config().image_limits,
            Some(Arc::new(StorageBytes(self.storage()?))),
        ))
    }

    /// A results location given as text: a folder or `file://` URL, or an
    /// object-store URL (`s3://`, `gs://`, `az://`).
    pub(crate) fn results_location(&self, text: &str) -> Result<ResultsLocation> {
        if zoo_storage::is_object_url(text) && !text.starts_with("file://") {
            let base = text.trim_end_matches('/');
            if base
                .split_once("://")
                .is_none_or(|(_, rest)| rest.is_empty())
            {
                bail!(
                    Config,
                    "results location `{text}` names no bucket: use `s3://bucket/prefix`"
                );
            }
            return Ok(ResultsLocation::in_store(Arc::new(StorageResults {
                storage: self.storage()?,
                base: base.to_owned(),
            })));
        }
        Ok(ResultsLocation::parse(text)?)
    }

    /// The samples a run does, and where their results go when not into
    /// the dataset: with `results`, every sample of the shard whose chunk is
    /// not written yet (the dataset is not touched); else what `field` has
    /// not finished, limited to the shard.
    pub(crate) fn pending(
        &self,
        store: &mut Datasets,
        dataset: &str,
        field: &str,
        kind: ResultsKind,
        (shard, results): (Shard, Option<&str>),
        overwrite: bool,
    ) -> Result<(Vec<Sample>, Option<ShardResults>)> {
        if let Some(location) = results {
            let location = self.results_location(location)?;
            let samples = store.shard_samples(dataset, shard)?;
            let results = ShardResults::open(
                &location,
                field,
                kind,
                shard,
                self.config().results_chunk,
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
                zoo_datasets::stable_key(&root, &sample.filepath)
                    .is_some_and(|key| shard.contains(&key))
            });
        }
        Ok((pending, None))
    }

    /// Ends a run that wrote part files: checks every chunk was written and
    /// marks the shard done.
    pub(crate) fn finish_shard(&self, results: Option<ShardResults>) -> Result<()> {
        if let Some(results) = results {
            let summary = results.finish()?;
            self.observer().note(&format!(
                "shard results: {} chunk(s), {} written now, {} kept from an earlier attempt",
                summary.chunks, summary.written, summary.skipped
            ));
        }
        Ok(())
    }

    /// A dataset of the images under an object-store prefix `url`.
    pub fn create_dataset_from_url(&self, name: &str, url: &str) -> Result<DatasetInfo> {
        let mut store = self.datasets()?;
        self.create_from_url(&mut store, name, url)
    }

    fn create_from_url(&self, store: &mut Datasets, name: &str, url: &str) -> Result<DatasetInfo> {
        let urls = self
            .storage()?
            .list(url, |key| {
                key.rsplit_once('.').is_some_and(|(_, extension)| {
                    IMAGE_EXTENSIONS.contains(&extension.to_ascii_lowercase().as_str())
                })
            })
            .with_context(|| format!("listing `{url}` failed"))?;
        Ok(store.create_from_urls(name, url, urls)?)
    }

    /// The dataset a run names: a dataset's name, a folder of images
    /// (indexed as a dataset of its own on first use), an object-store URL
    /// (the same), or `fiftyone:NAME` (FiftyOne's dataset, which must
    /// exist). Cheap for a name: check it before loading a model.
    pub fn resolve_dataset(&self, dataset: &str) -> Result<String> {
        if let Some(name) = zoo_fiftyone_db::dataset_name(dataset) {
            let context = || format!("opening FiftyOne dataset `{}` failed", name.escape_debug());
            zoo_fiftyone_db::FiftyOne::from_env()
                .with_context(context)?
                .dataset(name)
                .with_context(context)?;
            return Ok(dataset.to_owned());
        }
        let mut store = self.datasets()?;
        self.dataset_name(&mut store, dataset)
    }

    pub(crate) fn dataset_name(&self, store: &mut Datasets, dataset: &str) -> Result<String> {
        if store.exists(dataset) {
            return Ok(dataset.to_owned());
        }
        if zoo_storage::is_object_url(dataset) {
            match self.create_from_url(store, dataset, dataset) {
                Ok(_) => {}
                Err(error) if is_exists(&error) => {}
                Err(error) => return Err(error),
            }
            return Ok(dataset.to_owned());
        }
        if std::path::Path::new(dataset).is_dir() {
            return Ok(store.for_dir(std::path::Path::new(dataset))?);
        }
        bail!(
            Dataset,
            "`{dataset}` is neither a dataset (see `zoo datasets list`) nor a folder of images"
        )
    }

    /// Merges the shard results at `location` (a folder, `file://` or
    /// object-store URL) into `field` of `dataset`, each result once. With
    /// unfinished shards nothing is merged unless `allow_partial`.
    pub fn merge_results(
        &self,
        dataset: &str,
        location: &str,
        field: &str,
        allow_partial: bool,
    ) -> Result<MergeReport> {
        let mut store = self.datasets()?;
        let dataset = self.dataset_name(&mut store, dataset)?;
        let context = || format!("merging `{location}` into field `{field}` of `{dataset}` failed");
        let location = self.results_location(location).with_context(context)?;
        let plan = MergePlan::scan(&location, field).with_context(context)?;
        let unfinished: Vec<(u64, String)> = plan
            .unfinished()
            .into_iter()
            .filter_map(|(index, state)| match state {
                ShardState::Missing => Some((index, "missing (no folder)".to_owned())),
                ShardState::Incomplete { reason } => Some((index, format!("incomplete: {reason}"))),
                ShardState::Complete { .. } => None,
            })
            .collect();
        // At most 20 lines: a count of 100,000 shards is allowed.
        const SHOWN: usize = 20;
        for (index, why) in unfinished.iter().take(SHOWN) {
            self.observer()
                .note(&format!("shard {index}/{}: {why}", plan.count));
        }
        if unfinished.len() > SHOWN {
            self.observer().note(&format!(
                "... and {} more unfinished shard(s)",
                unfinished.len() - SHOWN
            ));
        }
        if !unfinished.is_empty() && !allow_partial {
            bail!(
                Storage,
                "{} of {} shard(s) of `{}` are missing or incomplete, so nothing was merged: run them again (same `--shard K/N` and `--results`), or merge what is there with `--allow-partial`",
                unfinished.len(),
                plan.count,
                plan.dir
            );
        }
        let summary = store
            .merge_results(&dataset, &plan, field, allow_partial)
            .with_context(context)?;
        if summary.unknown > 0 {
            self.observer().note(&format!(
                "{} result(s) named no sample of `{dataset}` and were left out (the first: `{}`)",
                summary.unknown,
                summary.first_unknown.as_deref().unwrap_or_default()
            ));
        }
        Ok(MergeReport {
            dataset,
            field: field.to_owned(),
            shards: plan.count,
            unfinished,
            parts: summary.parts,
            records: summary.records,
            unknown: summary.unknown,
            first_unknown: summary.first_unknown,
        })
    }
}

fn is_exists(error: &Error) -> bool {
    matches!(error.find::<DatasetError>(), Some(DatasetError::Exists(_)))
}
