//! Datasets: the samples models run on and the labels they produce, in one
//! SQLite file (`<datasets dir>/datasets-v1.sqlite`), so nothing has to run
//! beside zoo.
//!
//! ```text
//! datasets(id, name UNIQUE, root, created_at)
//! samples(id, dataset_id, filepath)            one row per image
//! labels(sample_id, field, label JSON|NULL)     FiftyOne label JSON
//! embeddings(sample_id, field, dim, data)       little-endian f32
//! runs(sample_id, field, ok, error)             what apply/embed finished
//! ```
//!
//! Results are written a batch per transaction: an interrupted run keeps
//! every finished batch, and the next run asks [`Datasets::pending`] for
//! the rest. [`FileLoader`] decodes images for the apply engine.

mod loader;
mod store;

pub use loader::{FileLoader, IMAGE_EXTENSIONS, decode_image};
pub use store::{DatasetError, DatasetInfo, Datasets, ExportFormat};
