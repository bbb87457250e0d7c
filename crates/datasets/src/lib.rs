//! Datasets: the samples models run on and the labels they produce, in one
//! SQLite file (`<datasets dir>/datasets-v1.sqlite`), so nothing has to run
//! beside zoo.
//!
//! ```text
//! datasets(id, name UNIQUE, root, created_at)
//! samples(id, dataset_id, filepath)            one row per image; the path
//!                                               as text, or as a blob of its
//!                                               raw bytes when not UTF-8
//! labels(sample_id, field, label JSON|NULL)     FiftyOne label JSON
//! embeddings(sample_id, field, dim, data)       little-endian f32
//! runs(sample_id, field, ok, error)             what apply/embed finished
//! sample_documents(sample_id, document JSON)    an imported FiftyOne sample's
//!                                               other keys (`_id`, `tags`, ...)
//! dataset_documents(dataset_id, document JSON)  an imported `metadata.json`
//! field_provenance(dataset_id, field, JSON)    which model made each field
//!                                               (exported as the field's
//!                                               FiftyOne `info`/`description`)
//! ```
//!
//! Exports: JSON lines, `.npy` embeddings, and FiftyOne's dataset folder
//! (`Datasets::export_fiftyone`, loaded by `fo.Dataset.from_dir(DIR,
//! dataset_type=fo.types.FiftyOneDataset)`), which
//! `Datasets::import_fiftyone` also reads.
//!
//! Results are written a batch per transaction: an interrupted run keeps
//! every finished batch, and the next run asks [`Datasets::pending`] for
//! the rest. [`FileLoader`] decodes images for the apply engine, within
//! [`ImageLimits`] (regular files only, a byte cap, Pillow's pixel cap).
//!
//! Everything read from a folder, part file or label zoo did not write is
//! hostile: files are read only when regular and within a cap
//! (`zoo_fs::read_untrusted`), paths they name must stay inside the folder
//! they came from (unless [`ImportOptions::allow_outside_paths`]), labels
//! are checked before anything is stored, and an export writes only inside
//! its folder under names it makes.
//!
//! Field names follow FiftyOne's rules (`zoo_model_core::validate_field_name`)
//! wherever a field is written; `--overwrite` of a field clears it and its
//! `<field>_<key>` map fields by exact comparison. Creating a dataset is one
//! `BEGIN IMMEDIATE` transaction, so concurrent processes never collide on
//! its name.

mod fiftyone;
mod label_check;
mod loader;
mod paths;
mod remote;
mod results;
mod shard;
mod store;

pub use fiftyone::{
    MAX_METADATA_BYTES, MAX_VECTOR_BYTES, label_field_schema, provenance_line, vector_field_schema,
};
pub use loader::jpeg::JpegError;
pub use loader::{
    FileLoader, IMAGE_EXTENSIONS, ImageLimits, LoadError, decode_image, decode_image_within,
};
pub use paths::ImportOptions;
pub use paths::MAX_SAMPLES_BYTES;
pub use remote::{ObjectLoader, RemoteBytes, is_url};
pub use results::{
    MergePlan, ResultsError, ResultsKind, ResultsLocation, ResultsStore, ShardResults, ShardState,
    ShardSummary,
};
pub use shard::{MAX_SHARDS, Shard, ShardError, key_path, stable_key};
pub use store::{
    DatasetError, DatasetInfo, DatasetPin, Datasets, ExportFormat, MergeSummary, StoredLabel,
};
