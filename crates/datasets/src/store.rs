//! The SQLite store.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OptionalExtension, ToSql, TransactionBehavior, params};
use serde_json::{Map, Value, json};
use zoo_model_core::{
    EmbedOutcome, FieldNameError, Outcome, Sample, npy_bytes, validate_field_name,
};

use crate::label_check::check_part_label;
use crate::loader::{IMAGE_EXTENSIONS, LoadError, regular_file};
use crate::results::{MergePlan, Record, ResultsError, ResultsKind, read_part};
use crate::shard::{Shard, key_path, stable_key};

/// Why a dataset operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// The database failed.
    #[error("dataset database `{path}`: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// No dataset has this name.
    #[error(
        "no dataset named `{0}`: run `zoo datasets list`, or create it with `zoo datasets create NAME DIR`"
    )]
    NotFound(String),
    /// The name is taken.
    #[error("a dataset named `{0}` exists already: delete it first, or pick another name")]
    Exists(String),
    /// A folder holds no images.
    #[error("`{dir}` holds no images ({})", IMAGE_EXTENSIONS.join(", "))]
    NoImages {
        /// The folder.
        dir: PathBuf,
    },
    /// A name cannot be a label or embeddings field.
    #[error("`{}` cannot be a field name", .field.escape_debug())]
    InvalidField {
        /// The name.
        field: String,
        /// Which rule it breaks.
        #[source]
        source: FieldNameError,
    },
    /// A folder's dataset name is taken by a dataset of another folder.
    #[error(
        "dataset `{name}` exists already for the folder `{}`, not `{}`: pass the dataset's name, or delete it first",
        root.display(),
        dir.display()
    )]
    OtherRoot {
        /// The dataset name (the folder's path).
        name: String,
        /// The folder the dataset was made from.
        root: PathBuf,
        /// The folder asked for.
        dir: PathBuf,
    },
    /// A sample's image (or a label's mask or map file) could not be
    /// copied into an export.
    #[error("copying the images and label files of dataset `{dataset}` failed")]
    Export {
        /// The dataset.
        dataset: String,
        /// Why the file could not be copied.
        #[source]
        source: LoadError,
    },
    /// A field holds nothing to export.
    #[error("dataset `{dataset}` has no embeddings field `{field}`")]
    NoField {
        /// The dataset.
        dataset: String,
        /// The field.
        field: String,
    },
    /// A dataset has no labels in a field that was to be read.
    #[error("dataset `{dataset}` has no label field `{field}` (its label fields: {known})")]
    NoLabelField {
        /// The dataset.
        dataset: String,
        /// The field.
        field: String,
        /// The label fields it has, comma-separated (`none` when it has
        /// none).
        known: String,
    },
    /// Shard results could not be read.
    #[error("reading shard results failed")]
    Results {
        /// Why.
        #[from]
        source: ResultsError,
    },
    /// A folder is not a FiftyOne dataset zoo can import.
    #[error("`{}` cannot be imported as a FiftyOne dataset: {problem}", dir.display())]
    Import {
        /// The folder.
        dir: PathBuf,
        /// What is wrong, and where.
        problem: String,
    },
    /// A JSON file of an import is malformed.
    #[error("`{}` is not valid JSON", path.display())]
    ImportJson {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A file an export would copy lies outside the dataset's folder.
    #[error(
        "dataset `{dataset}` names `{}`, outside its folder `{}`: an export copies only files inside the folder a dataset was imported from (import it again with `--allow-outside-paths` if that file is yours)",
        path.display(),
        root.display()
    )]
    Outside {
        /// The dataset.
        dataset: String,
        /// The file it names.
        path: PathBuf,
        /// Its folder.
        root: PathBuf,
    },
    /// A file zoo did not write could not be read (not a regular file, or
    /// over its size cap).
    #[error(transparent)]
    Untrusted(#[from] zoo_fs::UntrustedError),
    /// The dataset a run writes to was deleted (or deleted and made again)
    /// since the run started.
    #[error(
        "dataset `{0}` was deleted while this run wrote to it, so nothing more was stored: run again on the dataset as it is now"
    )]
    Gone(String),
    /// Part files name samples the dataset does not have.
    #[error(
        "{count} result(s) name no sample of `{dataset}` (the first: `{first}`), so nothing was merged: the results come from another dataset or its images moved; pass `--allow-partial` to merge the rest"
    )]
    UnknownKeys {
        /// The dataset.
        dataset: String,
        /// How many results.
        count: u64,
        /// The first key.
        first: String,
    },
    /// An embeddings field holds vectors of different lengths.
    #[error(
        "embeddings field `{field}` of `{dataset}` holds vectors of different lengths (`{}` has {found} values, the first sample {expected}), which one `.npy` array cannot hold: run `embed` again with `--overwrite`",
        sample.display()
    )]
    Ragged {
        /// The dataset.
        dataset: String,
        /// The field.
        field: String,
        /// The first sample whose length differs.
        sample: PathBuf,
        /// Its length.
        found: usize,
        /// The first sample's length.
        expected: usize,
    },
    /// Local I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A dataset as a run found it when it started: writes check that it is
/// still that dataset (its row ids are never taken as proof, since SQLite
/// reuses them after a delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetPin {
    name: String,
    id: i64,
    uid: String,
}

impl DatasetPin {
    /// The dataset's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What `merge-results` folded into a dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeSummary {
    /// Part files merged.
    pub parts: u64,
    /// Sample results merged (each one written once per merge).
    pub records: u64,
    /// Results whose key is no sample of the dataset (left out).
    pub unknown: u64,
    /// The first such key, for the message.
    pub first_unknown: Option<String>,
}

/// What `zoo datasets info` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    /// The name.
    pub name: String,
    /// The folder the images were indexed from.
    pub root: PathBuf,
    /// How many samples.
    pub samples: u64,
    /// Label fields and how many samples have a (non-null) label in each.
    pub label_fields: BTreeMap<String, u64>,
    /// Embedding fields and how many samples have a vector.
    pub embedding_fields: BTreeMap<String, u64>,
    /// Recorded per-sample failures by field.
    pub failures: BTreeMap<String, u64>,
    /// Which model made each field ([`Datasets::set_provenance`]), as zoo
    /// recorded it.
    pub provenance: BTreeMap<String, Value>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON line per sample.
    Jsonl,
    /// FiftyOne's dataset folder: `metadata.json`, `samples.json`, `data/`.
    FiftyOne,
}

/// The datasets in one SQLite file.
#[derive(Debug)]
pub struct Datasets {
    pub(crate) connection: Connection,
    pub(crate) path: PathBuf,
}

/// An embedding blob: little-endian `f32` values, as `write_embeddings`
/// stores them.
pub(crate) fn decode_f32(data: &[u8]) -> impl Iterator<Item = f32> + '_ {
    data.chunks_exact(4)
        .map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// A file path as the database holds it: text when it is UTF-8 (as zoo
/// always stored it), else a blob of the path's raw bytes, so a file name
/// that is not UTF-8 is found again byte for byte.
pub(crate) struct StoredPath(pub(crate) PathBuf);

impl ToSql for StoredPath {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0.to_str() {
            Some(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            None => ToSqlOutput::Borrowed(ValueRef::Blob(self.0.as_os_str().as_encoded_bytes())),
        })
    }
}

impl FromSql for StoredPath {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => Ok(Self(path_from_bytes(bytes))),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

/// Checks a field name, as the error this crate returns.
pub(crate) fn check_field(field: &str) -> Result<(), DatasetError> {
    validate_field_name(field).map_err(|source| DatasetError::InvalidField {
        field: field.to_owned(),
        source,
    })
}

/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `step` again while SQLite answers "busy" in a way its busy handler
/// does not wait out (two connections setting up a new database at once:
/// switching to WAL, or upgrading a read lock), up to [`BUSY_TIMEOUT`].
fn retry_busy<T>(mut step: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match step() {
            Err(error)
                if matches!(
                    error.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// Whether an error is SQLite's unique-constraint failure.
pub(crate) fn is_unique_violation(error: &rusqlite::Error) -> bool {
    error.sqlite_error().is_some_and(|error| {
        error.code == ErrorCode::ConstraintViolation
            && error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    })
}

/// Per connection, outside any transaction.
const PRAGMAS: &str = "
PRAGMA journal_mode = WAL;
PRAGMA foreign_keys = ON;
";

/// The tables, created in one write transaction.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS datasets (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, root TEXT NOT NULL, created_at INTEGER NOT NULL, uid TEXT, outside_paths INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS samples (id INTEGER PRIMARY KEY, dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE, filepath TEXT NOT NULL, UNIQUE(dataset_id, filepath));
CREATE TABLE IF NOT EXISTS labels (sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE, field TEXT NOT NULL, label TEXT, PRIMARY KEY(sample_id, field));
CREATE TABLE IF NOT EXISTS embeddings (sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE, field TEXT NOT NULL, dim INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY(sample_id, field));
CREATE TABLE IF NOT EXISTS runs (sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE, field TEXT NOT NULL, ok INTEGER NOT NULL, error TEXT, PRIMARY KEY(sample_id, field));
CREATE TABLE IF NOT EXISTS sample_documents (sample_id INTEGER PRIMARY KEY REFERENCES samples(id) ON DELETE CASCADE, document TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dataset_documents (dataset_id INTEGER PRIMARY KEY REFERENCES datasets(id) ON DELETE CASCADE, document TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS field_provenance (dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE, field TEXT NOT NULL, provenance TEXT NOT NULL, PRIMARY KEY(dataset_id, field));
";

/// A sample's label in a field, as [`Datasets::field_labels`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredLabel {
    /// The label's JSON text, as stored (unchecked).
    Json(String),
    /// The sample has the field, holding no label (FiftyOne's `None`).
    None,
    /// The label is this many bytes long, over the cap it was read with.
    TooLarge(u64),
}

/// Adds what a database made by an older zoo lacks: each dataset's `uid`
/// (random, never reused, which a run's writes check) and `outside_paths`
/// (imported with `--allow-outside-paths`).
fn upgrade(transaction: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    let columns: Vec<String> = {
        let mut statement =
            transaction.prepare("SELECT name FROM pragma_table_info('datasets')")?;
        statement
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?
    };
    if !columns.iter().any(|column| column == "uid") {
        transaction.execute_batch("ALTER TABLE datasets ADD COLUMN uid TEXT")?;
    }
    if !columns.iter().any(|column| column == "outside_paths") {
        transaction.execute_batch(
            "ALTER TABLE datasets ADD COLUMN outside_paths INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    transaction
        .execute_batch("UPDATE datasets SET uid = lower(hex(randomblob(16))) WHERE uid IS NULL")
}

/// The image files under `root` (recursively), sorted: regular files with
/// an image extension, links to regular files included; anything else
/// named like an image is skipped with a warning.
fn index_images(root: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in fs_err::read_dir(&folder)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            let is_image = path
                .extension()
                .and_then(|ext| ext.to_str())
                .is_some_and(|ext| IMAGE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()));
            if !is_image {
                continue;
            }
            if kind.is_file() {
                files.push(path);
                continue;
            }
            // A link is followed (by `metadata`, which opens nothing) to see
            // what it leads to; a FIFO, device or socket is never indexed.
            match regular_file(&path) {
                Ok(()) => files.push(path),
                Err(err) => tracing::warn!("not indexed: {}", err.to_message()),
            }
        }
    }
    files.sort();
    Ok(files)
}

impl Datasets {
    /// Opens (creating) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, DatasetError> {
        fs_err::create_dir_all(dir)?;
        let path = dir.join("datasets-v1.sqlite");
        let connection = Connection::open(&path).map_err(|source| DatasetError::Database {
            path: path.clone(),
            source,
        })?;
        let mut this = Self { connection, path };
        this.connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|source| this.database(source))?;
        let connection = &mut this.connection;
        retry_busy(|| connection.execute_batch(PRAGMAS))
            .and_then(|()| {
                retry_busy(|| {
                    // IMMEDIATE: the write lock first, so that concurrent
                    // set-ups queue instead of deadlocking on an upgrade.
                    let transaction =
                        connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    transaction.execute_batch(SCHEMA)?;
                    upgrade(&transaction)?;
                    transaction.commit()
                })
            })
            .map_err(|source| this.database(source))?;
        Ok(this)
    }

    fn database(&self, source: rusqlite::Error) -> DatasetError {
        database_error(&self.path)(source)
    }

    pub(crate) fn dataset_id(&self, name: &str) -> Result<i64, DatasetError> {
        self.connection
            .query_row("SELECT id FROM datasets WHERE name = ?1", [name], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|source| self.database(source))?
            .ok_or_else(|| DatasetError::NotFound(name.to_owned()))
    }

    /// Creates dataset `name` from the images under `dir` (recursively).
    ///
    /// Only regular files are indexed (links are followed to see what they
    /// lead to, folders links are not descended): a FIFO, a device or a
    /// dangling link named like an image is skipped with a warning. File
    /// names are kept byte for byte, UTF-8 or not. Two processes creating
    /// the same name at once are serialised by the database: one creates
    /// it, the other gets [`DatasetError::Exists`].
    pub fn create(&mut self, name: &str, dir: &Path) -> Result<DatasetInfo, DatasetError> {
        if self.dataset_id(name).is_ok() {
            return Err(DatasetError::Exists(name.to_owned()));
        }
        let root = fs_err::canonicalize(dir)?;
        let files = index_images(&root)?;
        if files.is_empty() {
            return Err(DatasetError::NoImages {
                dir: dir.to_path_buf(),
            });
        }
        self.insert_dataset(name, root, files)
    }

    /// Creates dataset `name` from the objects under an object-store URL
    /// (`s3://bucket/prefix`): `urls` are the objects' URLs, as listed,
    /// each kept as its sample's path; stable keys are relative to `root`.
    pub fn create_from_urls(
        &mut self,
        name: &str,
        root: &str,
        urls: Vec<String>,
    ) -> Result<DatasetInfo, DatasetError> {
        if self.dataset_id(name).is_ok() {
            return Err(DatasetError::Exists(name.to_owned()));
        }
        if urls.is_empty() {
            return Err(DatasetError::NoImages { dir: root.into() });
        }
        let root = root.trim_end_matches('/');
        let files = urls.into_iter().map(PathBuf::from).collect();
        self.insert_dataset(name, PathBuf::from(root), files)
    }

    /// Inserts dataset `name` with `files` in one `BEGIN IMMEDIATE`
    /// transaction that re-checks the name.
    fn insert_dataset(
        &mut self,
        name: &str,
        root: PathBuf,
        files: Vec<PathBuf>,
    ) -> Result<DatasetInfo, DatasetError> {
        let database = database_error(&self.path);
        let (transaction, id) = begin_dataset(&mut self.connection, &self.path, name, root)?;
        {
            let mut insert = transaction
                .prepare("INSERT INTO samples (dataset_id, filepath) VALUES (?1, ?2)")
                .map_err(database)?;
            for file in files {
                insert
                    .execute(params![id, StoredPath(file)])
                    .map_err(database)?;
            }
        }
        transaction.commit().map_err(database)?;
        self.info(name)
    }

    /// The dataset for a folder, created on first use (named by its path)
    /// and reused after, also when another process creates it at the same
    /// time.
    pub fn for_dir(&mut self, dir: &Path) -> Result<String, DatasetError> {
        let root = fs_err::canonicalize(dir)?;
        let name = root.to_string_lossy().into_owned();
        if !self.exists(&name) {
            match self.create(&name, dir) {
                Ok(_) | Err(DatasetError::Exists(_)) => {}
                Err(err) => return Err(err),
            }
        }
        // The name is the path shown lossily: make sure the dataset found is
        // this folder's, not one of a folder whose name differs only in bytes
        // that are not UTF-8, nor one created by name for another folder.
        let stored = self.info(&name)?.root;
        if stored != root {
            return Err(DatasetError::OtherRoot {
                name,
                root: stored,
                dir: root,
            });
        }
        Ok(name)
    }

    /// Whether a dataset exists.
    pub fn exists(&self, name: &str) -> bool {
        self.dataset_id(name).is_ok()
    }

    /// All datasets.
    pub fn list(&self) -> Result<Vec<DatasetInfo>, DatasetError> {
        let names: Vec<String> =
            self.query_rows("SELECT name FROM datasets ORDER BY name", [], |row| {
                row.get(0)
            })?;
        names.iter().map(|name| self.info(name)).collect()
    }

    /// Runs query `sql` and collects its rows through `map`.
    pub(crate) fn query_rows<T, C: FromIterator<T>>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<C, DatasetError> {
        let mut statement = self
            .connection
            .prepare(sql)
            .map_err(|source| self.database(source))?;
        let rows = statement
            .query_map(params, map)
            .map_err(|source| self.database(source))?;
        rows.collect::<Result<_, _>>()
            .map_err(|source| self.database(source))
    }

    fn counts(&self, sql: &str, id: i64) -> Result<BTreeMap<String, u64>, DatasetError> {
        self.query_rows(sql, [id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
        })
    }

    /// A dataset's counts per field.
    pub fn info(&self, name: &str) -> Result<DatasetInfo, DatasetError> {
        let id = self.dataset_id(name)?;
        let (root, samples): (StoredPath, i64) = self
            .connection
            .query_row(
                "SELECT root, (SELECT COUNT(*) FROM samples WHERE dataset_id = ?1) FROM datasets WHERE id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(|source| self.database(source))?;
        Ok(DatasetInfo {
            name: name.to_owned(),
            root: root.0,
            samples: samples as u64,
            label_fields: self.counts(
                "SELECT l.field, COUNT(l.label) FROM labels l JOIN samples s ON s.id = l.sample_id WHERE s.dataset_id = ?1 GROUP BY l.field",
                id,
            )?,
            embedding_fields: self.counts(
                "SELECT e.field, COUNT(*) FROM embeddings e JOIN samples s ON s.id = e.sample_id WHERE s.dataset_id = ?1 GROUP BY e.field",
                id,
            )?,
            failures: self.counts(
                "SELECT r.field, COUNT(*) FROM runs r JOIN samples s ON s.id = r.sample_id WHERE s.dataset_id = ?1 AND r.ok = 0 GROUP BY r.field",
                id,
            )?,
            provenance: self.provenance_of(id)?,
        })
    }

    /// Records which model made field `field` of the dataset `pin` (a JSON
    /// object: model, weights digest, ...), replacing what an earlier run
    /// recorded; [`DatasetError::Gone`] when that dataset was deleted
    /// meanwhile.
    pub fn set_provenance(
        &mut self,
        pin: &DatasetPin,
        field: &str,
        provenance: &Value,
    ) -> Result<(), DatasetError> {
        check_field(field)?;
        let database = database_error(&self.path);
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(database)?;
        check_pin(&transaction, pin, std::iter::empty())
            .map_err(|error| error.into_dataset_error(database))?;
        transaction
            .execute(
                "INSERT OR REPLACE INTO field_provenance (dataset_id, field, provenance) VALUES (?1, ?2, ?3)",
                params![pin.id, field, provenance.to_string()],
            )
            .map_err(database)?;
        transaction.commit().map_err(database)
    }

    /// The recorded provenance of each field of dataset `id`. Rows zoo
    /// wrote; one that is not JSON (a hand-edited database) is skipped
    /// with a warning.
    pub(crate) fn provenance_of(&self, id: i64) -> Result<BTreeMap<String, Value>, DatasetError> {
        let rows: Vec<(String, String)> = self.query_rows(
            "SELECT field, provenance FROM field_provenance WHERE dataset_id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|(field, text)| match serde_json::from_str(&text) {
                Ok(value) => Some((field, value)),
                Err(err) => {
                    tracing::warn!(
                        "the provenance of field `{field}` is not JSON ({err}); ignored"
                    );
                    None
                }
            })
            .collect())
    }

    /// Deletes a dataset and everything stored for it (not the images).
    pub fn delete(&mut self, name: &str) -> Result<(), DatasetError> {
        let id = self.dataset_id(name)?;
        self.connection
            .execute("DELETE FROM datasets WHERE id = ?1", [id])
            .map_err(|source| self.database(source))?;
        Ok(())
    }

    /// Samples that `field` has not finished; with `overwrite`, all of them
    /// (and what was stored under `field` is cleared: the field itself, and
    /// the `<field>_<key>` fields a map prediction wrote, compared exactly,
    /// never a field of another run such as `<field>_old` or `<field>s`).
    pub fn pending(
        &mut self,
        name: &str,
        field: &str,
        overwrite: bool,
    ) -> Result<Vec<Sample>, DatasetError> {
        check_field(field)?;
        let id = self.dataset_id(name)?;
        if overwrite {
            let database = database_error(&self.path);
            let transaction = self
                .connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(database)?;
            // `<field>_<key>`: an exact prefix (no LIKE, whose `_` matches
            // any character and which ignores ASCII case), and not a field
            // that is itself the field of a run.
            let prefix = format!("{field}_");
            for table in ["labels", "embeddings"] {
                transaction
                    .execute(
                        &format!(
                            "DELETE FROM {table} WHERE sample_id IN (SELECT id FROM samples WHERE dataset_id = ?1) AND (field = ?2 OR (substr(field, 1, length(?3)) = ?3 AND field NOT IN (SELECT DISTINCT r.field FROM runs r JOIN samples s ON s.id = r.sample_id WHERE s.dataset_id = ?1)))"
                        ),
                        params![id, field, prefix],
                    )
                    .map_err(database)?;
            }
            transaction
                .execute(
                    "DELETE FROM runs WHERE sample_id IN (SELECT id FROM samples WHERE dataset_id = ?1) AND field = ?2",
                    params![id, field],
                )
                .map_err(database)?;
            transaction.commit().map_err(database)?;
        }
        self.query_rows(
            "SELECT s.id, s.filepath FROM samples s WHERE s.dataset_id = ?1 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.sample_id = s.id AND r.field = ?2 AND r.ok = 1) ORDER BY s.id",
            params![id, field],
            |row| {
                Ok(Sample {
                    id: row.get(0)?,
                    filepath: row.get::<_, StoredPath>(1)?.0,
                })
            },
        )
    }

    /// The labels of field `field` in dataset `name`, by sample id, as
    /// stored (FiftyOne's JSON text, not parsed: they may come from an
    /// imported dataset, so the caller checks them); samples without a row
    /// in the field are absent. A label longer than `max_bytes` is not
    /// read ([`StoredLabel::TooLarge`]). A field no sample has is
    /// [`DatasetError::NoLabelField`], naming the fields there are.
    pub fn field_labels(
        &self,
        name: &str,
        field: &str,
        max_bytes: u64,
    ) -> Result<std::collections::HashMap<i64, StoredLabel>, DatasetError> {
        check_field(field)?;
        let id = self.dataset_id(name)?;
        let cap = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let rows: Vec<(i64, StoredLabel)> = self.query_rows(
            "SELECT l.sample_id, length(CAST(l.label AS BLOB)), CASE WHEN length(CAST(l.label AS BLOB)) <= ?3 THEN l.label END FROM labels l JOIN samples s ON s.id = l.sample_id WHERE s.dataset_id = ?1 AND l.field = ?2",
            params![id, field, cap],
            |row| {
                let sample: i64 = row.get(0)?;
                let length: Option<i64> = row.get(1)?;
                let text: Option<String> = row.get(2)?;
                let label = match (length, text) {
                    (None, _) => StoredLabel::None,
                    (Some(_), Some(text)) => StoredLabel::Json(text),
                    (Some(length), None) => StoredLabel::TooLarge(length.max(0) as u64),
                };
                Ok((sample, label))
            },
        )?;
        if rows.is_empty() {
            let known: Vec<String> = self
                .counts(
                    "SELECT l.field, COUNT(l.label) FROM labels l JOIN samples s ON s.id = l.sample_id WHERE s.dataset_id = ?1 GROUP BY l.field",
                    id,
                )?
                .into_keys()
                .map(|field| format!("`{}`", field.escape_debug()))
                .collect();
            return Err(DatasetError::NoLabelField {
                dataset: name.to_owned(),
                field: field.to_owned(),
                known: if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                },
            });
        }
        Ok(rows.into_iter().collect())
    }

    /// The folder dataset `name` was indexed from (stable keys are relative
    /// to it).
    pub fn root(&self, name: &str) -> Result<PathBuf, DatasetError> {
        let id = self.dataset_id(name)?;
        self.connection
            .query_row("SELECT root FROM datasets WHERE id = ?1", [id], |row| {
                row.get::<_, StoredPath>(0)
            })
            .map(|root| root.0)
            .map_err(|source| self.database(source))
    }

    /// The samples of `name` that belong to `shard`, each with its stable
    /// key, in the dataset's order.
    pub fn shard_samples(
        &self,
        name: &str,
        shard: Shard,
    ) -> Result<Vec<(Vec<u8>, Sample)>, DatasetError> {
        let id = self.dataset_id(name)?;
        let root = self.root(name)?;
        let mut statement = self
            .connection
            .prepare("SELECT id, filepath FROM samples WHERE dataset_id = ?1 ORDER BY id")
            .map_err(|source| self.database(source))?;
        let rows = statement
            .query_map([id], |row| {
                Ok(Sample {
                    id: row.get(0)?,
                    filepath: row.get::<_, StoredPath>(1)?.0,
                })
            })
            .map_err(|source| self.database(source))?;
        let mut samples = Vec::new();
        for row in rows {
            let sample = row.map_err(|source| self.database(source))?;
            match stable_key(&root, &sample.filepath) {
                Some(key) if shard.contains(&key) => samples.push((key, sample)),
                Some(_) => {}
                None => tracing::warn!(
                    "sample `{}` is not under the dataset's root `{}`: in no shard",
                    sample.filepath.display(),
                    root.display()
                ),
            }
        }
        Ok(samples)
    }

    /// Folds the part files of `plan` into field `field` of dataset `name`.
    ///
    /// Part files come from other machines, so nothing in them is trusted:
    /// every part is read and checked first (each key must be a path
    /// [`key_path`] gives back, each label a label zoo writes that names no
    /// file, each field `field` or `field_<key>` and a valid name, every
    /// vector of one length), and nothing is written unless all of them
    /// pass; keys that name no sample of the dataset stop the merge before
    /// anything is written unless `allow_unknown`. Then each part is written
    /// in one transaction, each sample's result with `INSERT OR REPLACE`, so
    /// merging again changes nothing.
    pub fn merge_results(
        &mut self,
        name: &str,
        plan: &MergePlan,
        field: &str,
        allow_unknown: bool,
    ) -> Result<MergeSummary, DatasetError> {
        check_field(field)?;
        let id = self.dataset_id(name)?;
        let root = self.root(name)?;
        let database = database_error(&self.path);
        // The length vectors must have: that of the field's stored vectors.
        let mut dim: Option<usize> = self
            .connection
            .query_row(
                "SELECT e.dim FROM embeddings e JOIN samples s ON s.id = e.sample_id WHERE s.dataset_id = ?1 AND e.field = ?2 LIMIT 1",
                params![id, field],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map_err(database)?
            .map(|dim| dim as usize);
        let mut summary = MergeSummary::default();
        {
            let mut find = self
                .connection
                .prepare("SELECT id FROM samples WHERE dataset_id = ?1 AND filepath = ?2")
                .map_err(database)?;
            for (shard, part) in &plan.parts {
                read_part::<DatasetError>(&plan.location, part, *shard, field, |key, record| {
                    let path = plan.location.field_dir(part);
                    check_record(&path, &key, &record, plan.kind, &mut dim)?;
                    let Some(sample_path) = key_path(&root, &key) else {
                        return Err(corrupt_key(&path, &key));
                    };
                    let known = find
                        .query_row(params![id, StoredPath(sample_path)], |_| Ok(()))
                        .optional()
                        .map_err(database)?
                        .is_some();
                    if !known {
                        summary.unknown += 1;
                        summary
                            .first_unknown
                            .get_or_insert_with(|| String::from_utf8_lossy(&key).into_owned());
                    }
                    Ok::<_, DatasetError>(())
                })?;
            }
        }
        if summary.unknown > 0 && !allow_unknown {
            return Err(DatasetError::UnknownKeys {
                dataset: name.to_owned(),
                count: summary.unknown,
                first: summary.first_unknown.unwrap_or_default(),
            });
        }
        summary.unknown = 0;
        for (shard, part) in &plan.parts {
            let transaction = self
                .connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(database)?;
            {
                let mut find = transaction
                    .prepare_cached(
                        "SELECT id FROM samples WHERE dataset_id = ?1 AND filepath = ?2",
                    )
                    .map_err(database)?;
                let mut label = transaction
                    .prepare_cached("INSERT OR REPLACE INTO labels (sample_id, field, label) VALUES (?1, ?2, ?3)")
                    .map_err(database)?;
                let mut vector = transaction.prepare_cached("INSERT OR REPLACE INTO embeddings (sample_id, field, dim, data) VALUES (?1, ?2, ?3, ?4)").map_err(database)?;
                let mut run = transaction.prepare_cached("INSERT OR REPLACE INTO runs (sample_id, field, ok, error) VALUES (?1, ?2, ?3, ?4)").map_err(database)?;
                read_part::<DatasetError>(&plan.location, part, *shard, field, |key, record| {
                    // Checked again: the part may have been replaced since.
                    let path = plan.location.field_dir(part);
                    check_record(&path, &key, &record, plan.kind, &mut dim)?;
                    let sample_path =
                        key_path(&root, &key).ok_or_else(|| corrupt_key(&path, &key))?;
                    let sample: Option<i64> = find
                        .query_row(params![id, StoredPath(sample_path)], |row| row.get(0))
                        .optional()
                        .map_err(database)?;
                    let Some(sample) = sample else {
                        summary.unknown += 1;
                        summary
                            .first_unknown
                            .get_or_insert_with(|| String::from_utf8_lossy(&key).into_owned());
                        return Ok(());
                    };
                    match record {
                        Record::Labels(fields) => {
                            for (name, value) in fields {
                                let text = value.map(|value| value.to_string());
                                label
                                    .execute(params![sample, name, text])
                                    .map_err(database)?;
                            }
                            run.execute(params![sample, field, 1, Option::<String>::None])
                                .map_err(database)?;
                        }
                        Record::Vector(values) => {
                            let bytes: Vec<u8> = values
                                .iter()
                                .flat_map(|value| value.to_le_bytes())
                                .collect();
                            vector
                                .execute(params![sample, field, values.len() as i64, bytes])
                                .map_err(database)?;
                            run.execute(params![sample, field, 1, Option::<String>::None])
                                .map_err(database)?;
                        }
                        Record::Failed(error) => {
                            run.execute(params![sample, field, 0, error])
                                .map_err(database)?;
                        }
                    }
                    summary.records += 1;
                    Ok(())
                })?;
            }
            transaction.commit().map_err(database)?;
            summary.parts += 1;
        }
        Ok(summary)
    }

    /// The dataset `name` as it is now, for a run to write to: take it
    /// before asking what is [`Self::pending`], and pass it to
    /// [`Self::write_labels`]/[`Self::write_embeddings`].
    pub fn pin(&self, name: &str) -> Result<DatasetPin, DatasetError> {
        let id = self.dataset_id(name)?;
        let uid: Option<String> = self
            .connection
            .query_row("SELECT uid FROM datasets WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|source| self.database(source))?
            .flatten();
        let uid = uid.ok_or_else(|| DatasetError::Gone(name.to_owned()))?;
        Ok(DatasetPin {
            name: name.to_owned(),
            id,
            uid,
        })
    }

    /// Stores one batch of apply outcomes for run field `field` of the
    /// dataset `pin`, in one transaction; [`DatasetError::Gone`] when that
    /// dataset was deleted meanwhile (nothing is written, even where a new
    /// dataset reuses its row ids).
    pub fn write_labels(
        &mut self,
        pin: &DatasetPin,
        field: &str,
        outcomes: &[Outcome],
    ) -> Result<(), DatasetError> {
        // The label fields come from the model (`<field>_<key>`): checked
        // like the run's field before anything is written.
        check_field(field)?;
        for outcome in outcomes {
            if let Outcome::Labels { fields, .. } = outcome {
                for (name, _) in fields {
                    check_field(name)?;
                }
            }
        }
        let database = database_error(&self.path);
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(database)?;
        check_pin(
            &transaction,
            pin,
            outcomes.iter().map(|outcome| match outcome {
                Outcome::Labels { sample_id, .. } | Outcome::Failed { sample_id, .. } => *sample_id,
            }),
        )
        .map_err(|error| error.into_dataset_error(database))?;
        {
            let mut label = transaction
                .prepare(
                    "INSERT OR REPLACE INTO labels (sample_id, field, label) VALUES (?1, ?2, ?3)",
                )
                .map_err(database)?;
            let mut run = transaction.prepare("INSERT OR REPLACE INTO runs (sample_id, field, ok, error) VALUES (?1, ?2, ?3, ?4)").map_err(database)?;
            for outcome in outcomes {
                match outcome {
                    Outcome::Labels { sample_id, fields } => {
                        for (name, value) in fields {
                            let json = value.as_ref().map(|value| value.to_json().to_string());
                            label
                                .execute(params![sample_id, name, json])
                                .map_err(database)?;
                        }
                        run.execute(params![sample_id, field, 1, Option::<String>::None])
                            .map_err(database)?;
                    }
                    Outcome::Failed { sample_id, error } => {
                        run.execute(params![sample_id, field, 0, error])
                            .map_err(database)?;
                    }
                }
            }
        }
        transaction.commit().map_err(database)
    }

    /// Stores one batch of embeddings of the dataset `pin`, in one
    /// transaction; [`DatasetError::Gone`] when that dataset was deleted
    /// meanwhile.
    pub fn write_embeddings(
        &mut self,
        pin: &DatasetPin,
        field: &str,
        outcomes: &[EmbedOutcome],
    ) -> Result<(), DatasetError> {
        check_field(field)?;
        let database = database_error(&self.path);
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(database)?;
        check_pin(
            &transaction,
            pin,
            outcomes.iter().map(|outcome| match outcome {
                EmbedOutcome::Vector { sample_id, .. } | EmbedOutcome::Failed { sample_id, .. } => {
                    *sample_id
                }
            }),
        )
        .map_err(|error| error.into_dataset_error(database))?;
        {
            let mut vector = transaction.prepare("INSERT OR REPLACE INTO embeddings (sample_id, field, dim, data) VALUES (?1, ?2, ?3, ?4)").map_err(database)?;
            let mut run = transaction.prepare("INSERT OR REPLACE INTO runs (sample_id, field, ok, error) VALUES (?1, ?2, ?3, ?4)").map_err(database)?;
            for outcome in outcomes {
                match outcome {
                    EmbedOutcome::Vector { sample_id, values } => {
                        let bytes: Vec<u8> = values
                            .iter()
                            .flat_map(|value| value.to_le_bytes())
                            .collect();
                        vector
                            .execute(params![sample_id, field, values.len() as i64, bytes])
                            .map_err(database)?;
                        run.execute(params![sample_id, field, 1, Option::<String>::None])
                            .map_err(database)?;
                    }
                    EmbedOutcome::Failed { sample_id, error } => {
                        run.execute(params![sample_id, field, 0, error])
                            .map_err(database)?;
                    }
                }
            }
        }
        transaction.commit().map_err(database)
    }

    /// How many samples `field` has finished (a result stored, an empty one
    /// included, as when nothing passed the confidence threshold).
    pub fn finished(&self, name: &str, field: &str) -> Result<u64, DatasetError> {
        let id = self.dataset_id(name)?;
        self.connection
            .query_row(
                "SELECT COUNT(*) FROM runs r JOIN samples s ON s.id = r.sample_id WHERE s.dataset_id = ?1 AND r.field = ?2 AND r.ok = 1",
                params![id, field],
                |row| row.get::<_, i64>(0),
            )
            .map(|count| count as u64)
            .map_err(|source| self.database(source))
    }

    /// The recorded failures of `field`: `(filepath, error)`.
    pub fn failures(
        &self,
        name: &str,
        field: &str,
    ) -> Result<Vec<(PathBuf, String)>, DatasetError> {
        let id = self.dataset_id(name)?;
        self.query_rows(
            "SELECT s.filepath, r.error FROM runs r JOIN samples s ON s.id = r.sample_id WHERE s.dataset_id = ?1 AND r.field = ?2 AND r.ok = 0 ORDER BY s.id",
            params![id, field],
            |row| {
                Ok((
                    row.get::<_, StoredPath>(0)?.0,
                    row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                ))
            },
        )
    }

    /// Every sample as `{"filepath": ..., <field>: <label JSON>, ...}`, with
    /// embeddings as lists of floats. A file name that is not UTF-8 is shown
    /// with U+FFFD in place of its bad bytes (JSON holds only Unicode).
    pub fn samples_json(&self, name: &str) -> Result<Vec<Map<String, Value>>, DatasetError> {
        let mut samples = Vec::new();
        self.each_sample_json(name, |object| {
            samples.push(object);
            Ok(())
        })?;
        Ok(samples)
    }

    /// Hands each sample's [`Self::samples_json`] object to `each`, in
    /// dataset order, reading one sample at a time, so memory does not grow
    /// with the dataset. Returns how many samples there were.
    fn each_sample_json(
        &self,
        name: &str,
        mut each: impl FnMut(Map<String, Value>) -> Result<(), DatasetError>,
    ) -> Result<usize, DatasetError> {
        let id = self.dataset_id(name)?;
        let database = database_error(&self.path);
        let mut samples = self
            .connection
            .prepare("SELECT id, filepath FROM samples WHERE dataset_id = ?1 ORDER BY id")
            .map_err(database)?;
        let mut labels = self
            .connection
            .prepare("SELECT field, label FROM labels WHERE sample_id = ?1 ORDER BY field")
            .map_err(database)?;
        let mut embeddings = self
            .connection
            .prepare("SELECT field, data FROM embeddings WHERE sample_id = ?1 ORDER BY field")
            .map_err(database)?;
        let mut rows = samples.query([id]).map_err(database)?;
        let mut count = 0;
        while let Some(row) = rows.next().map_err(database)? {
            let sample: i64 = row.get(0).map_err(database)?;
            let path = row.get::<_, StoredPath>(1).map_err(database)?.0;
            let mut object = Map::new();
            object.insert("filepath".into(), json!(path.to_string_lossy()));
            let mut fields: Vec<(String, Value)> = labels
                .query_map([sample], |row| {
                    let label = row
                        .get::<_, Option<String>>(1)?
                        .and_then(|text| serde_json::from_str(&text).ok())
                        .unwrap_or(Value::Null);
                    Ok((row.get(0)?, label))
                })
                .and_then(|rows| rows.collect::<Result<_, _>>())
                .map_err(database)?;
            let vectors: Vec<(String, Value)> = embeddings
                .query_map([sample], |row| {
                    let data = row.get::<_, Vec<u8>>(1)?;
                    let values = decode_f32(&data).map(|value| json!(value)).collect();
                    Ok((row.get(0)?, Value::Array(values)))
                })
                .and_then(|rows| rows.collect::<Result<_, _>>())
                .map_err(database)?;
            fields.extend(vectors);
            for (field, value) in fields {
                // A field stored before names were checked (`filepath`, say)
                // must not replace the sample's own keys.
                if let Err(err) = validate_field_name(&field) {
                    tracing::warn!(
                        "field `{}` left out of the export: {err}",
                        field.escape_debug()
                    );
                    continue;
                }
                object.insert(field, value);
            }
            each(object)?;
            count += 1;
        }
        Ok(count)
    }

    /// Writes the dataset as JSON lines, a sample at a time.
    pub fn export_jsonl(&self, name: &str, out: &mut impl Write) -> Result<usize, DatasetError> {
        self.each_sample_json(name, |sample| {
            serde_json::to_writer(&mut *out, &sample).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            Ok(())
        })
    }

    /// Writes embeddings field `field` as an `N x D` float32 `.npy` (samples
    /// in dataset order, those without a vector left out) and returns
    /// `(rows, dim)`. Every vector must have the same length
    /// ([`DatasetError::Ragged`] names the first that does not); the file
    /// is written a row at a time into a temporary file renamed into place.
    pub fn export_embeddings_npy(
        &self,
        name: &str,
        field: &str,
        path: &Path,
    ) -> Result<(usize, usize), DatasetError> {
        let id = self.dataset_id(name)?;
        let database = database_error(&self.path);
        // First the lengths alone: the header needs the count, and a ragged
        // field is refused before anything is written.
        let mut count = 0;
        let mut dim = None;
        {
            let mut statement = self
                .connection
                .prepare("SELECT e.dim, length(e.data), s.filepath FROM embeddings e JOIN samples s ON s.id = e.sample_id WHERE s.dataset_id = ?1 AND e.field = ?2 ORDER BY s.id")
                .map_err(database)?;
            let mut rows = statement.query(params![id, field]).map_err(database)?;
            while let Some(row) = rows.next().map_err(database)? {
                let stated: i64 = row.get(0).map_err(database)?;
                let bytes: i64 = row.get(1).map_err(database)?;
                let found = usize::try_from(bytes / 4).unwrap_or(usize::MAX);
                let expected = *dim.get_or_insert(found);
                if found != expected || stated != bytes / 4 || bytes % 4 != 0 {
                    return Err(DatasetError::Ragged {
                        dataset: name.to_owned(),
                        field: field.to_owned(),
                        sample: row.get::<_, StoredPath>(2).map_err(database)?.0,
                        found,
                        expected,
                    });
                }
                count += 1;
            }
        }
        let Some(dim) = dim else {
            return Err(DatasetError::NoField {
                dataset: name.to_owned(),
                field: field.to_owned(),
            });
        };
        let header = npy_bytes("<f4", &[count, dim], &[]);
        let mut out = zoo_fs::AtomicFile::create(path)?;
        out.write_all(&header)?;
        let mut statement = self
            .connection
            .prepare("SELECT e.data, s.filepath FROM embeddings e JOIN samples s ON s.id = e.sample_id WHERE s.dataset_id = ?1 AND e.field = ?2 ORDER BY s.id")
            .map_err(database)?;
        let mut rows = statement.query(params![id, field]).map_err(database)?;
        let mut written = 0;
        while let Some(row) = rows.next().map_err(database)? {
            let data: Vec<u8> = row.get(0).map_err(database)?;
            // Rows added or changed since the count are refused, not written
            // under a header that no longer matches.
            if data.len() != dim * 4 || written == count {
                return Err(DatasetError::Ragged {
                    dataset: name.to_owned(),
                    field: field.to_owned(),
                    sample: row.get::<_, StoredPath>(1).map_err(database)?.0,
                    found: data.len() / 4,
                    expected: dim,
                });
            }
            out.write_all(&data)?;
            written += 1;
        }
        if written != count {
            return Err(DatasetError::NoField {
                dataset: name.to_owned(),
                field: field.to_owned(),
            });
        }
        out.commit()?;
        Ok((count, dim))
    }
}

/// The error for a part's key that is not a stable key of a path.
fn corrupt_key(path: &str, key: &[u8]) -> DatasetError {
    DatasetError::from(ResultsError::Corrupt {
        path: path.to_owned(),
        line: 0,
        reason: format!(
            "key `{}` is not the path of a sample in the dataset's folder",
            String::from_utf8_lossy(key).escape_debug()
        ),
    })
}

/// Checks one record of part `path` before anything is stored: it is of
/// the run's kind, its label fields are valid names holding labels zoo
/// writes, and its vector has the length of every other (`dim`, set by the
/// first).
fn check_record(
    path: &str,
    key: &[u8],
    record: &Record,
    kind: Option<ResultsKind>,
    dim: &mut Option<usize>,
) -> Result<(), DatasetError> {
    let corrupt = |reason: String| {
        DatasetError::from(ResultsError::Corrupt {
            path: path.to_owned(),
            line: 0,
            reason: format!(
                "the result of `{}`: {reason}",
                String::from_utf8_lossy(key).escape_debug()
            ),
        })
    };
    match record {
        Record::Labels(_) if kind == Some(ResultsKind::Embeddings) => {
            Err(corrupt("labels in results of `embed`".to_owned()))
        }
        Record::Vector(_) if kind == Some(ResultsKind::Labels) => {
            Err(corrupt("an embedding in results of `apply`".to_owned()))
        }
        Record::Labels(fields) => {
            for (name, value) in fields {
                check_field(name)?;
                if let Some(value) = value {
                    check_part_label(value)
                        .map_err(|problem| corrupt(format!("field `{name}`: {problem}")))?;
                }
            }
            Ok(())
        }
        Record::Vector(values) => match dim {
            Some(dim) if *dim != values.len() => Err(corrupt(format!(
                "an embedding of {} values where the others have {dim}",
                values.len()
            ))),
            Some(_) => Ok(()),
            None => {
                *dim = Some(values.len());
                Ok(())
            }
        },
        Record::Failed(_) => Ok(()),
    }
}

/// Why a pinned write was refused.
enum PinError {
    Gone(String),
    Database(rusqlite::Error),
}

impl PinError {
    fn into_dataset_error(
        self,
        database: impl Fn(rusqlite::Error) -> DatasetError,
    ) -> DatasetError {
        match self {
            Self::Gone(name) => DatasetError::Gone(name),
            Self::Database(source) => database(source),
        }
    }
}

/// Checks, inside a write transaction, that `pin`'s dataset still exists
/// with its `uid` and owns every sample in `samples`.
fn check_pin(
    transaction: &rusqlite::Transaction<'_>,
    pin: &DatasetPin,
    samples: impl Iterator<Item = i64>,
) -> Result<(), PinError> {
    let alive = transaction
        .query_row(
            "SELECT 1 FROM datasets WHERE id = ?1 AND uid = ?2",
            params![pin.id, pin.uid],
            |_| Ok(()),
        )
        .optional()
        .map_err(PinError::Database)?
        .is_some();
    if !alive {
        return Err(PinError::Gone(pin.name.clone()));
    }
    let mut owner = transaction
        .prepare_cached("SELECT dataset_id FROM samples WHERE id = ?1")
        .map_err(PinError::Database)?;
    for sample in samples {
        let found: Option<i64> = owner
            .query_row([sample], |row| row.get(0))
            .optional()
            .map_err(PinError::Database)?;
        if found != Some(pin.id) {
            return Err(PinError::Gone(pin.name.clone()));
        }
    }
    Ok(())
}

/// Starts creating dataset `name`: a `BEGIN IMMEDIATE` transaction (it takes
/// the write lock now, waiting up to the busy timeout, so the name check and
/// the insert are one step for every process) that re-checks the name and
/// inserts the dataset's row. Returns the transaction and the dataset's id;
/// the caller adds the samples and commits.
pub(crate) fn begin_dataset<'c>(
    connection: &'c mut Connection,
    path: &Path,
    name: &str,
    root: PathBuf,
) -> Result<(rusqlite::Transaction<'c>, i64), DatasetError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs()) as i64;
    let database = database_error(path);
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(database)?;
    let taken = transaction
        .query_row("SELECT 1 FROM datasets WHERE name = ?1", [name], |_| Ok(()))
        .optional()
        .map_err(database)?
        .is_some();
    if taken {
        return Err(DatasetError::Exists(name.to_owned()));
    }
    transaction
        .execute(
            "INSERT INTO datasets (name, root, created_at, uid) VALUES (?1, ?2, ?3, lower(hex(randomblob(16))))",
            params![name, StoredPath(root), now],
        )
        .map_err(|source| {
            if is_unique_violation(&source) {
                DatasetError::Exists(name.to_owned())
            } else {
                database(source)
            }
        })?;
    let id = transaction.last_insert_rowid();
    Ok((transaction, id))
}

/// The error for a failed statement on the database at `path`, as a closure
/// for `map_err` where `self` is borrowed by a transaction.
pub(crate) fn database_error(path: &Path) -> impl Fn(rusqlite::Error) -> DatasetError + Copy + '_ {
    move |source| DatasetError::Database {
        path: path.to_owned(),
        source,
    }
}
