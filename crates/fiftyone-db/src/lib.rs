//! FiftyOne's own database: apply models straight to the datasets FiftyOne
//! users keep in MongoDB, the way FiftyOne 1.22.1's `apply_model` and
//! `compute_embeddings` write them, so `fo.load_dataset(NAME)` (and the
//! App) shows zoo's fields as if FiftyOne had written them.
//!
//! ```text
//! <database_name> (default `fiftyone`)
//! ├── config                 {version: "1.22.1", type: "fiftyone"}: checked
//! ├── datasets               one document per dataset: `name`,
//! │                          `sample_collection_name`, `media_type`,
//! │                          `sample_fields` (the schema), `last_modified_at`
//! └── samples.<dataset id>   one document per sample: `_id`, `filepath`,
//!                            `tags`, ..., and one key per field
//! ```
//!
//! Where zoo takes a dataset, `fiftyone:NAME` names FiftyOne's dataset
//! `NAME` ([`dataset_name`]). The server is found as FiftyOne's own client
//! finds it ([`Connection::from_env`]). Reading: the samples' `_id` and
//! `filepath`, in the collection's natural order (FiftyOne's), optionally
//! only those with one of some tags. Writing, one bulk `update` per batch:
//! each label as FiftyOne's BSON (`_id`, `_cls`, `tags`, masks and logits
//! as FiftyOne's zlib-compressed `.npy` bytes), each vector as FiftyOne's
//! `VectorField` keeps it, the sample's `last_modified_at` stamped, and,
//! before a field's first value, its `sample_fields` entry added as
//! FiftyOne's `add_sample_field` adds it.
//!
//! Safety: zoo writes only the run's fields (and `last_modified_at`) of the
//! samples it ran on; a field that exists with another type is refused,
//! naming both; a database of another FiftyOne version is refused, naming
//! both versions (FiftyOne migrates its layout between versions). MongoDB
//! keeps each sample's update whole (a standalone server has no
//! transactions across documents): a killed run leaves every sample either
//! labelled or not, and the next run does the rest.

mod connection;
mod dataset;

pub use connection::Connection;
pub use dataset::{Dataset, DatasetSummary, ResultKind};

use std::path::PathBuf;
use std::time::Duration;

use mongodb::bson::{Document, doc};
use mongodb::options::ClientOptions;
use mongodb::sync::{Client, Database};

/// The FiftyOne version whose database layout zoo reads and writes.
pub const FIFTYONE_VERSION: &str = "1.22.1";

/// How a dataset argument names a FiftyOne dataset: `fiftyone:NAME`.
pub const PREFIX: &str = "fiftyone:";

/// The FiftyOne dataset `dataset` names (`fiftyone:NAME`), if it names one.
pub fn dataset_name(dataset: &str) -> Option<&str> {
    dataset.strip_prefix(PREFIX)
}

/// What can go wrong with FiftyOne's database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FiftyOneError {
    /// No database is configured or running.
    #[error("no FiftyOne database to connect to: {0}")]
    NoDatabase(String),
    /// FiftyOne's config file could not be read.
    #[error("cannot read FiftyOne's config file `{}`: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The server did not answer, or refused an operation.
    #[error(
        "FiftyOne's database `{database}` at {uri} (found by {found_by}): {source}; check that the server runs and that FiftyOne itself can reach it (`fiftyone app launch`)"
    )]
    Database {
        /// The server.
        uri: String,
        /// The database.
        database: String,
        /// How the server was found.
        found_by: String,
        /// The driver's error.
        #[source]
        source: Box<mongodb::error::Error>,
    },
    /// The database is not FiftyOne's.
    #[error(
        "database `{database}` at {uri} is not FiftyOne's: it has no `config` document naming a FiftyOne version; point FIFTYONE_DATABASE_URI / FIFTYONE_DATABASE_NAME at FiftyOne's database"
    )]
    NotFiftyOne {
        /// The server.
        uri: String,
        /// The database.
        database: String,
    },
    /// The database is another FiftyOne version's.
    #[error(
        "FiftyOne's database `{database}` at {uri} is FiftyOne {found}'s; zoo reads and writes FiftyOne {tested}'s layout only (FiftyOne migrates its layout between versions): use FiftyOne {tested}, or export the dataset (`dataset.export(DIR, dataset_type=fo.types.FiftyOneDataset)`) and `zoo datasets import` it"
    )]
    Version {
        /// The server.
        uri: String,
        /// The database.
        database: String,
        /// The database's FiftyOne version.
        found: String,
        /// The version zoo was tested with.
        tested: &'static str,
    },
    /// No dataset of that name.
    #[error(
        "FiftyOne has no dataset named `{}`: FiftyOne's datasets are {}",
        name.escape_debug(),
        if known.is_empty() { "none".to_owned() } else { known.iter().map(|name| format!("`{}`", name.escape_debug())).collect::<Vec<_>>().join(", ") }
    )]
    NoDataset {
        /// The name asked for.
        name: String,
        /// The datasets there are.
        known: Vec<String>,
    },
    /// A field exists with another type.
    #[error(
        "field `{}` of FiftyOne dataset `{}` holds {existing}, and zoo's results are {new}: store them under another field, or delete this one in FiftyOne (`dataset.delete_sample_field(\"{}\")`)",
        field.escape_debug(), dataset.escape_debug(), field.escape_debug()
    )]
    FieldType {
        /// The dataset.
        dataset: String,
        /// The field.
        field: String,
        /// What the dataset's schema says it holds.
        existing: String,
        /// What zoo would write.
        new: String,
    },
    /// The dataset's documents are not as FiftyOne writes them.
    #[error("FiftyOne dataset `{}`: {message}", dataset.escape_debug())]
    Malformed {
        /// The dataset.
        dataset: String,
        /// What is wrong.
        message: String,
    },
}

/// A connection to FiftyOne's database, its version checked.
#[derive(Debug, Clone)]
pub struct FiftyOne {
    connection: Connection,
    database: Database,
}

impl FiftyOne {
    /// Connects to FiftyOne's database as FiftyOne finds it
    /// ([`Connection::from_env`]) and checks its version.
    pub fn from_env() -> Result<Self, FiftyOneError> {
        Self::connect(Connection::from_env()?)
    }

    /// Connects to `connection` and checks that it holds FiftyOne
    /// [`FIFTYONE_VERSION`]'s database.
    pub fn connect(connection: Connection) -> Result<Self, FiftyOneError> {
        let fail = |source: mongodb::error::Error| FiftyOneError::Database {
            uri: connection.uri.clone(),
            database: connection.database.clone(),
            found_by: connection.found_by.clone(),
            source: Box::new(source),
        };
        let mut options = ClientOptions::parse(&connection.uri).run().map_err(fail)?;
        options.app_name = Some("zoo".to_owned());
        if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(Duration::from_secs(10));
        }
        if options.connect_timeout.is_none() {
            options.connect_timeout = Some(Duration::from_secs(10));
        }
        let client = Client::with_options(options).map_err(fail)?;
        let database = client.database(&connection.database);
        let fiftyone = Self {
            connection,
            database,
        };
        fiftyone.check_version()?;
        Ok(fiftyone)
    }

    /// Where the database is.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    pub(crate) fn database(&self) -> &Database {
        &self.database
    }

    /// Wraps a driver error with where it happened.
    pub(crate) fn error(&self, source: mongodb::error::Error) -> FiftyOneError {
        FiftyOneError::Database {
            uri: self.connection.uri.clone(),
            database: self.connection.database.clone(),
            found_by: self.connection.found_by.clone(),
            source: Box::new(source),
        }
    }

    /// FiftyOne's `config` document (the newest, as FiftyOne picks it)
    /// must name [`FIFTYONE_VERSION`].
    fn check_version(&self) -> Result<(), FiftyOneError> {
        let mut newest: Option<Document> = None;
        let cursor = self
            .database
            .collection::<Document>("config")
            .find(doc! {})
            .run()
            .map_err(|err| self.error(err))?;
        for document in cursor {
            let document = document.map_err(|err| self.error(err))?;
            let later = match (&newest, document.get_object_id("_id")) {
                (None, _) => true,
                (Some(kept), Ok(id)) => kept.get_object_id("_id").is_ok_and(|kept| id > kept),
                (Some(_), Err(_)) => false,
            };
            if later {
                newest = Some(document);
            }
        }
        let version = newest
            .as_ref()
            .and_then(|document| document.get_str("version").ok())
            .ok_or_else(|| FiftyOneError::NotFiftyOne {
                uri: self.connection.uri.clone(),
                database: self.connection.database.clone(),
            })?;
        if version != FIFTYONE_VERSION {
            return Err(FiftyOneError::Version {
                uri: self.connection.uri.clone(),
                database: self.connection.database.clone(),
                found: version.escape_debug().to_string(),
                tested: FIFTYONE_VERSION,
            });
        }
        Ok(())
    }

    /// FiftyOne's datasets, by name, with their sample counts.
    pub fn list(&self) -> Result<Vec<DatasetSummary>, FiftyOneError> {
        dataset::list(self)
    }

    /// FiftyOne's dataset `name`.
    pub fn dataset(&self, name: &str) -> Result<Dataset, FiftyOneError> {
        Dataset::open(self.clone(), name)
    }
}
