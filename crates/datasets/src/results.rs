//! Results of sharded runs as part files, and merging them.
//!
//! A shard's run writes what it computed under a results location instead of
//! the local dataset:
//!
//! ```text
//! <location>/<field>/
//! └── shard-00002-of-00004/
//!     ├── part-000000.jsonl    chunk 0: a header line, then one line per sample
//!     ├── part-000001.jsonl
//!     └── done.json            written last: how many chunks the shard has
//! ```
//!
//! The shard's samples are sorted by stable key and cut into chunks of
//! `chunk_size`; chunk `i` is written in one piece (temp file beside it,
//! `sync_all`, rename) once every sample in it has a result, so a part file
//! is whole or absent. A retried shard reads the first line of each part and
//! skips the chunks whose header names exactly the same keys (their SHA-256),
//! which makes retries cheap and their output identical.
//!
//! A header line:
//! `{"zoo_results":1,"kind":"labels","field":F,"shard":K,"shards":N,"chunk":i,"chunks":M,"chunk_size":C,"samples":n,"keys_sha256":HEX}`;
//! a sample line: `{"key":"sub/a.jpg","labels":{"F":LABEL_JSON_OR_NULL,...}}`,
//! `{"key":...,"embedding":[f32,...]}` or `{"key":...,"error":"..."}` (a key
//! that is not UTF-8 is written as `"key_bytes":[u8,...]` instead).
//!
//! The location is a folder (or `file://` URL), written with `zoo_fs`'s
//! atomic writes, or anything else that implements [`ResultsStore`] (the
//! CLI gives object-store URLs, where a PUT is atomic). Keys are
//! `/`-separated paths below the location.
//!
//! Merging checks every shard `0..N` for `done.json` and all its parts,
//! then folds each part into the dataset in one transaction, looking each
//! key up by path (`INSERT OR REPLACE` on `(sample, field)`), so a sample
//! gets exactly one result however often its chunk was written or the merge
//! is run, and memory does not grow with the number of parts or samples.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use zoo_model_core::{EmbedOutcome, Outcome, Sample};

use crate::shard::Shard;

/// The format version in every header and `done.json`.
const FORMAT: u64 = 1;

/// The longest line a part file may have (a 64 MiB label is not a label).
const MAX_LINE_BYTES: u64 = 64 << 20;

/// The largest part file read back (whole, into memory): 1 GiB.
pub(crate) const MAX_PART_BYTES: u64 = 1 << 30;

/// What is read of a part to check its header (a header is a few hundred
/// bytes; a longer first line is not zoo's, and the chunk is written again).
const MAX_HEADER_BYTES: u64 = 64 << 10;

/// The largest `done.json` read back.
const MAX_DONE_BYTES: u64 = 1 << 20;

/// Why writing or merging results failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultsError {
    /// The location is not a folder, a `file://` URL or an object-store URL.
    #[error(
        "results location `{location}` is not supported: give a folder, a `file://` URL or an object-store URL such as `s3://bucket/prefix` ({reason})"
    )]
    Location {
        /// The location given.
        location: String,
        /// Why.
        reason: String,
    },
    /// Local I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Reading or writing the results location failed.
    #[error("results at `{location}`: {source}")]
    Store {
        /// The file or object.
        location: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A part file or marker is not what zoo writes.
    #[error("results file `{path}` line {line}: {reason}; delete it and run that shard again")]
    Corrupt {
        /// The file or object.
        path: String,
        /// The line (1-based; 0 for the whole file).
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// Results of different shard counts sit side by side.
    #[error(
        "`{dir}` holds results of several shard counts ({counts:?}): keep one run's folders, delete the others"
    )]
    ShardCounts {
        /// The field's folder.
        dir: String,
        /// The counts found.
        counts: Vec<u64>,
    },
    /// Nothing to merge.
    #[error("`{dir}` holds no shard results (`shard-K-of-N` folders): run the shards first")]
    NoResults {
        /// The field's folder.
        dir: String,
    },
    /// A chunk never got all of its results.
    #[error(
        "chunk {chunk} of shard `{shard}` has {missing} sample(s) without a result, so it was not written"
    )]
    Unfinished {
        /// The shard.
        shard: Shard,
        /// The chunk.
        chunk: usize,
        /// How many samples lack a result.
        missing: usize,
    },
}

/// What a shard's run writes: labels (`apply`) or vectors (`embed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultsKind {
    /// Labels of `zoo models apply`.
    Labels,
    /// Embeddings of `zoo models embed`.
    Embeddings,
}

impl ResultsKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Labels => "labels",
            Self::Embeddings => "embeddings",
        }
    }
}

/// Where part files are kept: a folder, or an object store the caller
/// provides. Keys are `/`-separated paths below the location
/// (`<field>/shard-K-of-N/part-i.jsonl`).
pub trait ResultsStore: fmt::Debug + Send + Sync {
    /// The full path or URL of `key`, for messages.
    fn describe(&self, key: &str) -> String;
    /// Writes the object `key` whole: a reader sees all of it or nothing.
    fn put(&self, key: &str, bytes: &[u8]) -> std::io::Result<()>;
    /// The object `key`, `None` when it does not exist; an object larger
    /// than `max_bytes` is an error.
    fn get(&self, key: &str, max_bytes: u64) -> std::io::Result<Option<Vec<u8>>>;
    /// At most the first `len` bytes of the object `key`, `None` when it
    /// does not exist (for reading a part's header without the part); by
    /// default the whole object, up to the largest part.
    fn get_prefix(&self, key: &str, len: u64) -> std::io::Result<Option<Vec<u8>>> {
        let _ = len;
        self.get(key, MAX_PART_BYTES)
    }
    /// The names directly below the folder `prefix` (objects and folders),
    /// empty when there is none.
    fn children(&self, prefix: &str) -> std::io::Result<Vec<String>>;
    /// Removes the object `key`; removing what does not exist succeeds.
    fn delete(&self, key: &str) -> std::io::Result<()>;
}

/// A local (or mounted shared) folder: written with `zoo_fs::write_atomic`.
#[derive(Debug)]
struct DirStore {
    root: PathBuf,
}

impl DirStore {
    fn path(&self, key: &str) -> PathBuf {
        key.split('/')
            .fold(self.root.clone(), |path, part| path.join(part))
    }
}

impl ResultsStore for DirStore {
    fn describe(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    fn put(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(key);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        zoo_fs::write_atomic(&path, bytes)
    }

    fn get(&self, key: &str, max_bytes: u64) -> std::io::Result<Option<Vec<u8>>> {
        // A results folder may be shared: its files are read as files zoo
        // did not write (regular files only, never a FIFO or a device).
        untrusted(zoo_fs::read_untrusted(&self.path(key), max_bytes))
    }

    fn get_prefix(&self, key: &str, len: u64) -> std::io::Result<Option<Vec<u8>>> {
        untrusted(zoo_fs::read_untrusted_prefix(&self.path(key), len))
    }

    fn children(&self, prefix: &str) -> std::io::Result<Vec<String>> {
        let entries = match fs_err::read_dir(self.path(prefix)) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut names = Vec::new();
        for entry in entries {
            // A name that is not UTF-8 is nothing zoo wrote.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn delete(&self, key: &str) -> std::io::Result<()> {
        match fs_err::remove_file(self.path(key)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

/// A read of a results file: `None` when it does not exist.
fn untrusted(read: Result<Vec<u8>, zoo_fs::UntrustedError>) -> std::io::Result<Option<Vec<u8>>> {
    match read {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(std::io::Error::other(error)),
    }
}

/// Where shard results go: a folder, or a [`ResultsStore`].
#[derive(Debug, Clone)]
pub struct ResultsLocation {
    store: Arc<dyn ResultsStore>,
}

impl ResultsLocation {
    /// Parses a folder path or a `file://` URL (`file:///abs/path`); other
    /// URLs need a store of their own ([`ResultsLocation::in_store`]).
    pub fn parse(text: &str) -> Result<Self, ResultsError> {
        let error = |reason: &str| ResultsError::Location {
            location: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.trim().is_empty() {
            return Err(error("it is empty"));
        }
        let dir = |dir: PathBuf| Self {
            store: Arc::new(DirStore { root: dir }),
        };
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(error(
                    "a `file://` URL needs an absolute path: `file:///data/results`",
                ));
            }
            if path.contains('%') || path.contains('?') || path.contains('#') {
                return Err(error(
                    "escapes, queries and fragments are not supported in `file://` URLs",
                ));
            }
            return Ok(dir(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(error(&format!(
                "`{scheme}://` is not a scheme zoo writes to"
            )));
        }
        Ok(dir(PathBuf::from(text)))
    }

    /// Results kept in `store` (an object store, say).
    pub fn in_store(store: Arc<dyn ResultsStore>) -> Self {
        Self { store }
    }

    /// The path or URL of `field`'s results.
    pub fn field_dir(&self, field: &str) -> String {
        self.store.describe(field)
    }

    fn shard_key(field: &str, shard: Shard) -> String {
        format!("{field}/shard-{:05}-of-{:05}", shard.index, shard.count)
    }

    fn io(&self, key: &str) -> impl Fn(std::io::Error) -> ResultsError + '_ {
        let location = self.store.describe(key);
        move |source| ResultsError::Store {
            location: location.clone(),
            source,
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), ResultsError> {
        self.store.put(key, bytes).map_err(self.io(key))
    }

    fn get(&self, key: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, ResultsError> {
        self.store.get(key, max_bytes).map_err(self.io(key))
    }

    fn children(&self, key: &str) -> Result<Vec<String>, ResultsError> {
        self.store.children(key).map_err(self.io(key))
    }

    fn delete(&self, key: &str) -> Result<(), ResultsError> {
        self.store.delete(key).map_err(self.io(key))
    }
}

fn part_name(chunk: usize) -> String {
    format!("part-{chunk:06}.jsonl")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// SHA-256 of a chunk's keys, each prefixed by its length (8 bytes, BE).
fn keys_digest<'a>(keys: impl Iterator<Item = &'a [u8]>) -> String {
    let mut hasher = Sha256::new();
    for key in keys {
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(key);
    }
    hex(&hasher.finalize())
}

fn key_json(key: &[u8]) -> (&'static str, Value) {
    match std::str::from_utf8(key) {
        Ok(text) => ("key", json!(text)),
        Err(_) => ("key_bytes", json!(key)),
    }
}

/// One chunk being filled.
#[derive(Debug)]
struct Chunk {
    keys: Vec<Vec<u8>>,
    lines: Vec<Option<String>>,
    filled: usize,
}

/// What a shard's run has written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSummary {
    /// Chunks in the shard.
    pub chunks: usize,
    /// Chunks written by this run.
    pub written: usize,
    /// Chunks a previous attempt had finished.
    pub skipped: usize,
    /// Samples in the shard.
    pub samples: usize,
}

/// The results of one shard's run, written chunk by chunk.
#[derive(Debug)]
pub struct ShardResults {
    location: ResultsLocation,
    /// The shard's folder key.
    dir: String,
    kind: ResultsKind,
    field: String,
    shard: Shard,
    chunk_size: usize,
    /// Where each sample goes: `(chunk, position)`.
    place: HashMap<i64, (usize, usize)>,
    /// Chunks still being filled (those to do).
    open: BTreeMap<usize, Chunk>,
    /// The samples still to run, in key order.
    todo: Vec<Sample>,
    summary: ShardSummary,
}

impl ShardResults {
    /// Prepares shard `shard`'s results of `field` under `location` for
    /// `samples` (the shard's samples with their stable keys, any order):
    /// chunks a previous attempt finished are skipped unless `overwrite`.
    pub fn open(
        location: &ResultsLocation,
        field: &str,
        kind: ResultsKind,
        shard: Shard,
        chunk_size: usize,
        mut samples: Vec<(Vec<u8>, Sample)>,
        overwrite: bool,
    ) -> Result<Self, ResultsError> {
        let chunk_size = chunk_size.max(1);
        samples.sort_by(|a, b| a.0.cmp(&b.0));
        let dir = ResultsLocation::shard_key(field, shard);
        let chunks = samples.len().div_ceil(chunk_size);
        let mut this = Self {
            location: location.clone(),
            dir,
            kind,
            field: field.to_owned(),
            shard,
            chunk_size,
            place: HashMap::new(),
            open: BTreeMap::new(),
            todo: Vec::new(),
            summary: ShardSummary {
                chunks,
                written: 0,
                skipped: 0,
                samples: samples.len(),
            },
        };
        for (index, group) in samples.chunks(chunk_size).enumerate() {
            let header = this.header(index, group.iter().map(|(key, _)| key.as_slice()));
            let key = format!("{}/{}", this.dir, part_name(index));
            if !overwrite && read_header(location, &key)?.is_some_and(|found| found == header) {
                this.summary.skipped += 1;
                continue;
            }
            for (position, (_, sample)) in group.iter().enumerate() {
                this.place.insert(sample.id, (index, position));
                this.todo.push(sample.clone());
            }
            this.open.insert(
                index,
                Chunk {
                    keys: group.iter().map(|(key, _)| key.clone()).collect(),
                    lines: vec![None; group.len()],
                    filled: 0,
                },
            );
        }
        // A finished shard that is run again is unfinished until it ends.
        if this.summary.skipped < chunks {
            location.delete(&format!("{}/done.json", this.dir))?;
        }
        Ok(this)
    }

    /// The samples still to run, in key order.
    pub fn todo(&self) -> &[Sample] {
        &self.todo
    }

    fn header<'a>(&self, chunk: usize, keys: impl Iterator<Item = &'a [u8]> + Clone) -> Value {
        json!({
            "zoo_results": FORMAT, "kind": self.kind.as_str(), "field": self.field,
            "shard": self.shard.index, "shards": self.shard.count,
            "chunk": chunk, "chunks": self.summary.chunks, "chunk_size": self.chunk_size,
            "samples": keys.clone().count(), "keys_sha256": keys_digest(keys),
        })
    }

    /// Records one batch of `apply` outcomes; writes every chunk it completes.
    pub fn record_labels(&mut self, outcomes: &[Outcome]) -> Result<(), ResultsError> {
        for outcome in outcomes {
            let (sample_id, body) = match outcome {
                Outcome::Labels { sample_id, fields } => {
                    let labels: Map<String, Value> = fields
                        .iter()
                        .map(|(name, label)| {
                            (
                                name.clone(),
                                label.as_ref().map_or(Value::Null, |label| label.to_json()),
                            )
                        })
                        .collect();
                    (*sample_id, ("labels", Value::Object(labels)))
                }
                Outcome::Failed { sample_id, error } => (*sample_id, ("error", json!(error))),
            };
            self.record(sample_id, body)?;
        }
        Ok(())
    }

    /// Records one batch of `embed` outcomes; writes every chunk it completes.
    pub fn record_embeddings(&mut self, outcomes: &[EmbedOutcome]) -> Result<(), ResultsError> {
        for outcome in outcomes {
            let (sample_id, body) = match outcome {
                EmbedOutcome::Vector { sample_id, values } => {
                    (*sample_id, ("embedding", json!(values)))
                }
                EmbedOutcome::Failed { sample_id, error } => (*sample_id, ("error", json!(error))),
            };
            self.record(sample_id, body)?;
        }
        Ok(())
    }

    fn record(&mut self, sample_id: i64, (name, value): (&str, Value)) -> Result<(), ResultsError> {
        let Some(&(index, position)) = self.place.get(&sample_id) else {
            return Ok(());
        };
        let Some(chunk) = self.open.get_mut(&index) else {
            return Ok(());
        };
        let (key_name, key) = key_json(&chunk.keys[position]);
        let mut line = Map::new();
        line.insert(key_name.to_owned(), key);
        line.insert(name.to_owned(), value);
        if chunk.lines[position]
            .replace(Value::Object(line).to_string())
            .is_none()
        {
            chunk.filled += 1;
        }
        if chunk.filled == chunk.lines.len() {
            self.write_chunk(index)?;
        }
        Ok(())
    }

    fn write_chunk(&mut self, index: usize) -> Result<(), ResultsError> {
        let Some(chunk) = self.open.remove(&index) else {
            return Ok(());
        };
        let header = self.header(index, chunk.keys.iter().map(Vec::as_slice));
        let mut text = header.to_string();
        text.push('\n');
        for line in chunk.lines.into_iter().flatten() {
            text.push_str(&line);
            text.push('\n');
        }
        self.location.put(
            &format!("{}/{}", self.dir, part_name(index)),
            text.as_bytes(),
        )?;
        self.summary.written += 1;
        Ok(())
    }

    /// Ends the shard's run: every chunk must be written; parts left by an
    /// attempt over another listing are removed, then `done.json` is written.
    pub fn finish(self) -> Result<ShardSummary, ResultsError> {
        if let Some((&chunk, open)) = self.open.iter().next() {
            return Err(ResultsError::Unfinished {
                shard: self.shard,
                chunk,
                missing: open.lines.len() - open.filled,
            });
        }
        for name in self.location.children(&self.dir)? {
            if let Some(index) = parse_part_name(&name)
                && index >= self.summary.chunks
            {
                self.location.delete(&format!("{}/{name}", self.dir))?;
            }
        }
        let done = json!({
            "zoo_results": FORMAT, "kind": self.kind.as_str(), "field": self.field,
            "shard": self.shard.index, "shards": self.shard.count,
            "chunks": self.summary.chunks, "chunk_size": self.chunk_size, "samples": self.summary.samples,
        });
        self.location.put(
            &format!("{}/done.json", self.dir),
            done.to_string().as_bytes(),
        )?;
        Ok(self.summary)
    }
}

fn parse_part_name(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("part-")?.strip_suffix(".jsonl")?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn parse_shard_name(name: &str) -> Option<Shard> {
    let rest = name.strip_prefix("shard-")?;
    let (index, count) = rest.split_once("-of-")?;
    let number = |text: &str| {
        (!text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
    };
    Shard::new(number(index)?, number(count)?)
}

/// Reads one line of at most [`MAX_LINE_BYTES`]; `None` at the end.
fn read_line(
    reader: &mut impl BufRead,
    path: &str,
    number: u64,
) -> Result<Option<String>, ResultsError> {
    let mut bytes = Vec::new();
    reader
        .by_ref()
        .take(MAX_LINE_BYTES + 1)
        .read_until(b'\n', &mut bytes)?;
    if bytes.is_empty() {
        return Ok(None);
    }
    let corrupt = |reason: &str| ResultsError::Corrupt {
        path: path.to_owned(),
        line: number,
        reason: reason.to_owned(),
    };
    if bytes.last() != Some(&b'\n') {
        return Err(corrupt("the line is unfinished or longer than 64 MiB"));
    }
    bytes.pop();
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| corrupt("the line is not UTF-8"))
}

/// A part's header, `None` when the file does not exist or its first line
/// is not JSON (it is then written again).
fn read_header(location: &ResultsLocation, key: &str) -> Result<Option<Value>, ResultsError> {
    let Some(bytes) = location
        .store
        .get_prefix(key, MAX_HEADER_BYTES)
        .map_err(location.io(key))?
    else {
        return Ok(None);
    };
    let line = match read_line(&mut bytes.as_slice(), &location.field_dir(key), 1) {
        Ok(line) => line,
        Err(ResultsError::Corrupt { .. }) => None,
        Err(error) => return Err(error),
    };
    Ok(line.and_then(|line| serde_json::from_str(&line).ok()))
}

/// One shard's state as found at the results location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardState {
    /// `done.json` and every part are there.
    Complete {
        /// Parts.
        chunks: usize,
        /// Samples.
        samples: u64,
    },
    /// No folder: the shard never ran (or wrote nothing).
    Missing,
    /// Started but not finished.
    Incomplete {
        /// Why.
        reason: String,
    },
}

/// What `merge-results` found before merging.
#[derive(Debug, Clone)]
pub struct MergePlan {
    /// Where the parts are.
    pub(crate) location: ResultsLocation,
    /// The field's folder (its path or URL).
    pub dir: String,
    /// The kind of results (from the first part found).
    pub kind: Option<ResultsKind>,
    /// The shards' count.
    pub count: u64,
    /// Every shard `0..count` and its state.
    pub shards: BTreeMap<u64, ShardState>,
    /// The part files to merge, in order (keys below the location).
    pub parts: Vec<(Shard, String)>,
}

impl MergePlan {
    /// Looks at `field`'s results under `location`: which shards are
    /// complete, missing or incomplete, and which part files exist.
    pub fn scan(location: &ResultsLocation, field: &str) -> Result<Self, ResultsError> {
        let dir = location.field_dir(field);
        let mut found: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for name in location.children(field)? {
            if let Some(shard) = parse_shard_name(&name) {
                found.entry(shard.count).or_default().insert(shard.index);
            }
        }
        if found.len() > 1 {
            return Err(ResultsError::ShardCounts {
                dir,
                counts: found.keys().copied().collect(),
            });
        }
        let Some((count, present)) = found.into_iter().next() else {
            return Err(ResultsError::NoResults { dir });
        };
        let mut plan = Self {
            location: location.clone(),
            dir,
            kind: None,
            count,
            shards: BTreeMap::new(),
            parts: Vec::new(),
        };
        // Only the shard folders listed are read: the others are missing
        // (`Shard::new` bounds the count a folder name gives to
        // `MAX_SHARDS`).
        for index in 0..count {
            let state = match Shard::new(index, count) {
                Some(shard) if present.contains(&index) => {
                    plan.scan_shard(location, field, shard)?
                }
                _ => ShardState::Missing,
            };
            plan.shards.insert(index, state);
        }
        Ok(plan)
    }

    fn scan_shard(
        &mut self,
        location: &ResultsLocation,
        field: &str,
        shard: Shard,
    ) -> Result<ShardState, ResultsError> {
        let dir = ResultsLocation::shard_key(field, shard);
        let names = location.children(&dir)?;
        if names.is_empty() {
            return Ok(ShardState::Missing);
        }
        let mut parts = BTreeMap::new();
        for name in names {
            if let Some(index) = parse_part_name(&name) {
                parts.insert(index, format!("{dir}/{name}"));
            }
        }
        let done_key = format!("{dir}/done.json");
        let done_path = location.field_dir(&done_key);
        let done: Option<Value> = match location.get(&done_key, MAX_DONE_BYTES)? {
            Some(bytes) => {
                Some(
                    serde_json::from_slice(&bytes).map_err(|error| ResultsError::Corrupt {
                        path: done_path.clone(),
                        line: 0,
                        reason: format!("not JSON ({error})"),
                    })?,
                )
            }
            None => None,
        };
        let Some(done) = done else {
            self.parts
                .extend(parts.into_values().map(|path| (shard, path)));
            return Ok(ShardState::Incomplete {
                reason: "the shard has not finished (no `done.json`)".to_owned(),
            });
        };
        let number = |name: &str| {
            done[name].as_u64().ok_or_else(|| ResultsError::Corrupt {
                path: done_path.clone(),
                line: 0,
                reason: format!("`{name}` is not a whole number"),
            })
        };
        if number("shard")? != shard.index || number("shards")? != shard.count {
            return Err(ResultsError::Corrupt {
                path: done_path,
                line: 0,
                reason: "it names another shard than its folder".to_owned(),
            });
        }
        let kind = match done["kind"].as_str() {
            Some("labels") => ResultsKind::Labels,
            Some("embeddings") => ResultsKind::Embeddings,
            _ => {
                return Err(ResultsError::Corrupt {
                    path: done_path,
                    line: 0,
                    reason: "`kind` is neither `labels` nor `embeddings`".to_owned(),
                });
            }
        };
        self.kind.get_or_insert(kind);
        let chunks = usize::try_from(number("chunks")?).unwrap_or(usize::MAX);
        let samples = number("samples")?;
        // `finish` removes the parts past the last chunk before it writes
        // `done.json`: a part beyond it means the marker does not belong to
        // these parts, and merging only some of them would lose results.
        if let Some(extra) = parts.keys().find(|index| **index >= chunks) {
            return Err(ResultsError::Corrupt {
                path: done_path,
                line: 0,
                reason: format!("it says the shard has {chunks} chunk(s), but part {extra} exists"),
            });
        }
        if (chunks == 0) != (samples == 0) {
            return Err(ResultsError::Corrupt {
                path: done_path,
                line: 0,
                reason: format!("it says {chunks} chunk(s) hold {samples} sample(s)"),
            });
        }
        let missing: Vec<usize> = (0..chunks)
            .filter(|index| !parts.contains_key(index))
            .take(5)
            .collect();
        self.parts.extend(
            parts
                .into_iter()
                .filter(|(index, _)| *index < chunks)
                .map(|(_, path)| (shard, path)),
        );
        if !missing.is_empty() {
            return Ok(ShardState::Incomplete {
                reason: format!("part(s) {missing:?} of {chunks} are missing"),
            });
        }
        Ok(ShardState::Complete { chunks, samples })
    }

    /// The shards that are not complete.
    pub fn unfinished(&self) -> Vec<(u64, &ShardState)> {
        self.shards
            .iter()
            .filter(|(_, state)| !matches!(state, ShardState::Complete { .. }))
            .map(|(index, state)| (*index, state))
            .collect()
    }
}

/// One sample's result, read from a part.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    /// Label JSON (or none) by field.
    Labels(Vec<(String, Option<Value>)>),
    /// An embedding.
    Vector(Vec<f32>),
    /// A failure.
    Failed(String),
}

/// Reads the part `key` of `shard` line by line: checks its header and
/// hands each `(key, record)` to `each`; returns how many lines it had.
pub(crate) fn read_part<E: From<ResultsError>>(
    location: &ResultsLocation,
    key: &str,
    shard: Shard,
    field: &str,
    mut each: impl FnMut(Vec<u8>, Record) -> Result<(), E>,
) -> Result<u64, E> {
    read_part_lines(location, key, shard, field, &mut each)
}

fn read_part_lines<E: From<ResultsError>>(
    location: &ResultsLocation,
    key: &str,
    shard: Shard,
    field: &str,
    each: &mut impl FnMut(Vec<u8>, Record) -> Result<(), E>,
) -> Result<u64, E> {
    let path = location.field_dir(key);
    let path = path.as_str();
    let bytes = location
        .get(key, MAX_PART_BYTES)?
        .ok_or_else(|| ResultsError::Corrupt {
            path: path.to_owned(),
            line: 0,
            reason: "it disappeared while merging".to_owned(),
        })?;
    let mut reader = bytes.as_slice();
    let corrupt = |line: u64, reason: String| {
        E::from(ResultsError::Corrupt {
            path: path.to_owned(),
            line,
            reason,
        })
    };
    let header: Value = read_line(&mut reader, path, 1)?
        .and_then(|line| serde_json::from_str(&line).ok())
        .ok_or_else(|| corrupt(1, "the header is not JSON".to_owned()))?;
    if header["zoo_results"] != json!(FORMAT)
        || header["field"] != json!(field)
        || header["shard"] != json!(shard.index)
        || header["shards"] != json!(shard.count)
    {
        return Err(corrupt(
            1,
            format!(
                "the header is not that of a part of field `{field}`, shard `{shard}` (format {FORMAT})"
            ),
        ));
    }
    let expected = header["samples"]
        .as_u64()
        .ok_or_else(|| corrupt(1, "`samples` is not a whole number".to_owned()))?;
    let mut count = 0;
    while let Some(text) = read_line(&mut reader, path, count + 2)? {
        let number = count + 2;
        count += 1;
        let Ok(Value::Object(mut line)) = serde_json::from_str::<Value>(&text) else {
            return Err(corrupt(number, "not a JSON object".to_owned()));
        };
        let key = match (line.remove("key"), line.remove("key_bytes")) {
            (Some(Value::String(key)), None) => key.into_bytes(),
            (None, Some(bytes)) => serde_json::from_value::<Vec<u8>>(bytes)
                .map_err(|_| corrupt(number, "`key_bytes` is not a list of bytes".to_owned()))?,
            _ => return Err(corrupt(number, "no `key`".to_owned())),
        };
        if key.is_empty() || !shard.contains(&key) {
            return Err(corrupt(
                number,
                format!(
                    "key `{}` does not belong to shard `{shard}`",
                    String::from_utf8_lossy(&key)
                ),
            ));
        }
        let record = if let Some(error) = line.get("error") {
            Record::Failed(error.as_str().unwrap_or_default().to_owned())
        } else if let Some(Value::Object(labels)) = line.get("labels") {
            let mut fields = Vec::new();
            for (name, label) in labels {
                if name != field && !name.starts_with(&format!("{field}_")) {
                    return Err(corrupt(
                        number,
                        format!("label field `{name}` is not `{field}` or `{field}_*`"),
                    ));
                }
                let label = (!label.is_null()).then(|| label.clone());
                fields.push((name.clone(), label));
            }
            Record::Labels(fields)
        } else if let Some(values) = line.get("embedding") {
            let values: Vec<f32> = serde_json::from_value(values.clone())
                .map_err(|_| corrupt(number, "`embedding` is not a list of numbers".to_owned()))?;
            Record::Vector(values)
        } else {
            return Err(corrupt(
                number,
                "no `labels`, `embedding` or `error`".to_owned(),
            ));
        };
        each(key, record)?;
    }
    if count != expected {
        return Err(corrupt(
            0,
            format!("the header says {expected} samples, the file has {count}"),
        ));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_location_accepts_folders_and_file_urls_only() {
        assert_eq!(
            ResultsLocation::parse("file:///data/r")
                .unwrap()
                .field_dir("f"),
            "/data/r/f"
        );
        assert_eq!(
            ResultsLocation::parse("out").unwrap().field_dir("f"),
            "out/f"
        );
        for bad in ["", "file://relative", "file:///a%20b", "http://host/x"] {
            assert!(ResultsLocation::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shard_and_part_names_are_parsed_strictly() {
        assert_eq!(parse_shard_name("shard-00002-of-00004"), Shard::new(2, 4));
        assert_eq!(parse_shard_name("shard-4-of-4"), None);
        assert_eq!(parse_shard_name("shard--of-4"), None);
        assert_eq!(parse_part_name("part-000003.jsonl"), Some(3));
        assert_eq!(parse_part_name("part-+3.jsonl"), None);
        assert_eq!(parse_part_name(".tmp-part-000003.jsonl"), None);
    }
}
