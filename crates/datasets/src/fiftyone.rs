//! FiftyOne's dataset folder (`fo.types.FiftyOneDataset`), as FiftyOne
//! 1.22.1's `FiftyOneDatasetExporter` writes it and its importer reads it:
//!
//! ```text
//! DIR/
//! ├── metadata.json     the dataset document: `version`, `media_type`,
//! │                     `sample_fields` (the schema, with nested label
//! │                     fields), `info`, `classes`, `mask_targets`, ...
//! ├── samples.json      {"samples": [<sample document>, ...]} in extended
//! │                     JSON: `_id` as `{"$oid"}`, arrays as `{"$binary"}`
//! ├── data/             the images, named as FiftyOne names them
//! └── fields/           one folder per field that may hold media files
//! ```
//!
//! An import keeps what zoo does not model: each sample's other keys
//! (`_id`, `tags`, `metadata`, `_rand`, custom fields) in
//! `sample_documents`, and `metadata.json` in `dataset_documents`, so an
//! imported dataset exports back as it came.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value, json};
use zoo_model_core::{
    Label, NpyError, ObjectId, array_from_json_within, array_to_json, validate_field_name,
};

use crate::label_check::{MEDIA_KEYS, check_imported_label};
use crate::loader::open_regular;
use crate::paths::{ImportOptions, is_inside, resolve_named};
use crate::store::{
    DatasetError, DatasetInfo, Datasets, StoredPath, begin_dataset, database_error,
    is_unique_violation,
};

/// The largest `metadata.json` an import reads (64 MiB).
pub const MAX_METADATA_BYTES: u64 = 64 << 20;

/// The largest vector an import inflates (64 MiB: 16 million floats).
pub const MAX_VECTOR_BYTES: u64 = 64 << 20;

/// The FiftyOne version whose format is written.
pub(crate) const FIFTYONE_VERSION: &str = "1.22.1";

/// Label classes with a media-path key: FiftyOne's exporter makes a
/// `fields/<field>` folder for each (`<field>.detections` for lists).
const MEDIA_LABELS: [(&str, &str); 4] = [
    ("Detection", ""),
    ("Detections", ".detections"),
    ("Segmentation", ""),
    ("Heatmap", ""),
];

/// One entry of `sample_fields`, as FiftyOne's `SampleFieldDocument`.
fn field(
    name: &str,
    ftype: &str,
    embedded: Option<&str>,
    subfield: Option<&str>,
    fields: Vec<Value>,
    created_at: &Value,
) -> Value {
    let db_field = if name == "id" { "_id" } else { name };
    let read_only = matches!(name, "created_at" | "last_modified_at");
    json!({
        "name": name,
        "ftype": format!("fiftyone.core.fields.{ftype}"),
        "embedded_doc_type": embedded,
        "subfield": subfield.map(|subfield| format!("fiftyone.core.fields.{subfield}")),
        "fields": fields,
        "db_field": db_field,
        "description": null,
        "info": null,
        "read_only": read_only,
        "created_at": created_at,
    })
}

/// The declared fields of label class `class` (a nested schema).
fn label_fields(class: &str, created_at: &Value) -> Option<Vec<Value>> {
    let plain = |name: &str, ftype: &str| field(name, ftype, None, None, vec![], created_at);
    let list = |name: &str, subfield: &str| {
        field(name, "ListField", None, Some(subfield), vec![], created_at)
    };
    let attributes = || {
        field(
            "attributes",
            "DictField",
            Some("fiftyone.core.labels.Attribute"),
            Some("EmbeddedDocumentField"),
            vec![],
            created_at,
        )
    };
    let nested = |name: &str, item: &str| {
        // Fields of list items carry no creation date in FiftyOne's export.
        field(
            name,
            "ListField",
            Some(&format!("fiftyone.core.labels.{item}")),
            Some("EmbeddedDocumentField"),
            label_fields(item, &Value::Null).unwrap_or_default(),
            created_at,
        )
    };
    let base = || vec![plain("id", "ObjectIdField"), list("tags", "StringField")];
    Some(match class {
        "Classification" => {
            let mut fields = base();
            fields.extend([
                plain("label", "StringField"),
                plain("confidence", "FloatField"),
                plain("logits", "VectorField"),
            ]);
            fields
        }
        "Classifications" => vec![
            nested("classifications", "Classification"),
            plain("logits", "VectorField"),
        ],
        "Detection" => {
            let mut fields = base();
            fields.extend([
                attributes(),
                plain("label", "StringField"),
                list("bounding_box", "FloatField"),
                plain("mask", "ArrayField"),
                plain("mask_path", "StringField"),
                plain("confidence", "FloatField"),
                plain("index", "IntField"),
            ]);
            fields
        }
        "Detections" => vec![nested("detections", "Detection")],
        "Keypoint" => {
            let mut fields = base();
            fields.extend([
                attributes(),
                plain("label", "StringField"),
                plain("points", "KeypointsField"),
                list("confidence", "FloatField"),
                plain("index", "IntField"),
            ]);
            fields
        }
        "Keypoints" => vec![nested("keypoints", "Keypoint")],
        "Segmentation" => {
            let mut fields = base();
            fields.extend([
                plain("mask", "ArrayField"),
                plain("mask_path", "StringField"),
            ]);
            fields
        }
        "Heatmap" => {
            let mut fields = base();
            fields.extend([
                plain("map", "ArrayField"),
                plain("map_path", "StringField"),
                field(
                    "range",
                    "HeatmapRangeField",
                    None,
                    Some("FloatField"),
                    vec![],
                    created_at,
                ),
            ]);
            fields
        }
        "Regression" => {
            let mut fields = base();
            fields.extend([
                plain("value", "FloatField"),
                plain("confidence", "FloatField"),
            ]);
            fields
        }
        "Polyline" => {
            let mut fields = base();
            fields.extend([
                attributes(),
                plain("label", "StringField"),
                plain("points", "PolylinePointsField"),
                plain("confidence", "FloatField"),
                plain("index", "IntField"),
                plain("closed", "BooleanField"),
                plain("filled", "BooleanField"),
            ]);
            fields
        }
        "Polylines" => vec![nested("polylines", "Polyline")],
        _ => return None,
    })
}

/// The `sample_fields` entry FiftyOne 1.22.1 adds for a field holding
/// labels of class `class` (`Classification`, `Detections`, ...), created
/// at `created_at` (extended JSON `{"$date": ...}`); `None` for a class
/// whose schema zoo does not write.
pub fn label_field_schema(name: &str, class: &str, created_at: &Value) -> Option<Value> {
    let nested = label_fields(class, created_at)?;
    Some(field(
        name,
        "EmbeddedDocumentField",
        Some(&format!("fiftyone.core.labels.{class}")),
        None,
        nested,
        created_at,
    ))
}

/// The `sample_fields` entry FiftyOne 1.22.1 adds for an embeddings field
/// (`VectorField`).
pub fn vector_field_schema(name: &str, created_at: &Value) -> Value {
    field(name, "VectorField", None, None, vec![], created_at)
}

/// A field's provenance in one line, for FiftyOne's field `description`:
/// `made by zoo 0.1.0 with resnet18-imagenet-torch (weights sha256 ab12...)`.
pub fn provenance_line(provenance: &Value) -> String {
    let text = |key: &str| provenance.get(key).and_then(Value::as_str).unwrap_or("?");
    let weights = text("weights_sha256");
    format!(
        "made by zoo {} with {} (weights sha256 {}) on {}",
        text("zoo_version"),
        text("model"),
        weights.get(..16).unwrap_or(weights),
        text("created_at"),
    )
}

/// The fields every FiftyOne image sample has, in FiftyOne's order.
fn default_fields(created_at: &Value) -> Vec<Value> {
    let plain = |name: &str, ftype: &str| field(name, ftype, None, None, vec![], created_at);
    let metadata = ["size_bytes", "mime_type", "width", "height", "num_channels"]
        .into_iter()
        .map(|name| {
            plain(
                name,
                if name == "mime_type" {
                    "StringField"
                } else {
                    "IntField"
                },
            )
        })
        .collect();
    vec![
        plain("filepath", "StringField"),
        plain("last_modified_at", "DateTimeField"),
        plain("created_at", "DateTimeField"),
        plain("_rand", "FloatField"),
        plain("_dataset_id", "ObjectIdField"),
        plain("_media_type", "StringField"),
        field(
            "metadata",
            "EmbeddedDocumentField",
            Some("fiftyone.core.metadata.ImageMetadata"),
            None,
            metadata,
            created_at,
        ),
        field(
            "tags",
            "ListField",
            None,
            Some("StringField"),
            vec![],
            created_at,
        ),
        plain("id", "ObjectIdField"),
    ]
}

/// Extended JSON for a time in seconds since the epoch: `{"$date": ISO}`.
fn date(seconds: i64) -> Value {
    let days = seconds.div_euclid(86_400);
    let rest = seconds.rem_euclid(86_400);
    // Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    json!({"$date": format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )})
}

/// A stable pseudo-random number in `[0.999, 1)` for a sample, as FiftyOne's
/// `_rand` (`random() * 0.001 + 0.999`), from SplitMix64 of its row id.
fn sample_rand(sample: i64) -> f64 {
    let mut z = (sample as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 0.001 + 0.999
}

/// Stable ids for a zoo-made dataset and its samples: the dataset's
/// creation time, 5 bytes from its row id, and the sample's row id (0 for
/// the dataset itself; sample rows start at 1).
fn stable_id(created_at: i64, dataset: i64, sample: i64) -> ObjectId {
    let tag = (dataset as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .to_be_bytes();
    let mut unique = [0; 5];
    unique.copy_from_slice(&tag[..5]);
    ObjectId::from_parts(created_at as u32, unique, sample as u32)
}

/// FiftyOne's media file names (`UniqueFilenameMaker`): the base name, `%`
/// made `-`, with `-2`, `-3`, ... before the extension on a clash, files
/// already in the folder counted.
struct UniqueNames(HashMap<String, usize>);

impl UniqueNames {
    fn new(existing: impl IntoIterator<Item = String>) -> Self {
        let mut counts = HashMap::new();
        for name in existing {
            *counts.entry(name).or_default() += 1;
        }
        Self(counts)
    }

    fn name(&mut self, file_name: &str) -> String {
        let (stem, extension) = match file_name.rfind('.') {
            Some(dot) if dot > 0 => file_name.split_at(dot),
            _ => (file_name, ""),
        };
        let stem = stem.replace('%', "-");
        let name = format!("{stem}{extension}");
        let count = self.0.entry(name.clone()).or_default();
        *count += 1;
        let mut count = *count;
        if count == 1 {
            return name;
        }
        loop {
            let candidate = format!("{stem}-{count}{extension}");
            if self.0.contains_key(&candidate) {
                if let Some(total) = self.0.get_mut(&name) {
                    *total += 1;
                }
                count += 1;
            } else {
                self.0.insert(candidate.clone(), 1);
                return candidate;
            }
        }
    }
}

/// JSON as Python's `json.dumps` (and so FiftyOne's exporter) writes it:
/// `", "` and `": "` between items, non-ASCII characters as `\\uXXXX`.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for character in fragment.chars() {
            if character.is_ascii() {
                writer.write_all(&[character as u8])?;
            } else {
                let mut units = [0; 2];
                for unit in character.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// `value` as Python's `json.dumps` writes it.
fn python_json(value: &Value) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    // Serialising a `Value` into a `Vec` cannot fail.
    let _ = serde::Serialize::serialize(value, &mut serializer);
    String::from_utf8_lossy(&out).into_owned()
}

/// What a sample field holds, for the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FieldKind {
    /// A label of this `_cls`.
    Label(String),
    /// A float32 vector.
    Vector,
}

/// What an export needs of a dataset besides its samples.
struct Rows {
    dataset_id: i64,
    created_at: i64,
    /// The folder it was made or imported from.
    root: PathBuf,
    /// Imported with `--allow-outside-paths`.
    outside_paths: bool,
    /// Imported from a FiftyOne folder (not indexed by zoo).
    imported: bool,
    dataset_document: Option<Map<String, Value>>,
    /// Which model made each field, as zoo recorded it.
    provenance: BTreeMap<String, Value>,
}

/// One sample's stored fields, read for an export.
struct SampleRows {
    labels: Vec<(String, Option<Value>)>,
    /// Little-endian `f32` values by field.
    vectors: Vec<(String, Vec<u8>)>,
    document: Option<Map<String, Value>>,
}

/// Which files an export may copy, and how.
struct CopyRules<'a> {
    dataset: &'a str,
    root: &'a Path,
    check_images: bool,
    check_media: bool,
}

impl CopyRules<'_> {
    /// Copies the regular file `source` to `target` (a name the export
    /// made); with `check`, only from inside the dataset's folder.
    fn copy(&self, source: &Path, check: bool, target: &Path) -> Result<(), DatasetError> {
        if check && !is_inside(self.root, source) {
            return Err(DatasetError::Outside {
                dataset: self.dataset.to_owned(),
                path: source.to_path_buf(),
                root: self.root.to_path_buf(),
            });
        }
        let (mut file, _) = open_regular(source).map_err(|source| DatasetError::Export {
            dataset: self.dataset.to_owned(),
            source,
        })?;
        std::io::copy(&mut file, &mut fs_err::File::create(target)?)?;
        Ok(())
    }
}

/// Puts back into `rewritten` (a label rewritten from zoo's old form) the
/// keys of `old` that the rewrite does not model (`mask_path`, custom
/// attributes), in the label and in its list items.
fn keep_other_keys(rewritten: &mut Value, old: &Value) {
    let (Value::Object(new), Value::Object(old)) = (rewritten, old) else {
        return;
    };
    for (key, value) in old {
        match new.get_mut(key) {
            None => {
                new.insert(key.clone(), value.clone());
            }
            Some(Value::Array(items)) => {
                if let Value::Array(old_items) = value
                    && old_items.len() == items.len()
                {
                    for (item, old_item) in items.iter_mut().zip(old_items) {
                        if old_item.get("_cls").is_some() {
                            keep_other_keys(item, old_item);
                        }
                    }
                }
            }
            Some(_) => {}
        }
    }
}

fn parse_object(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// Whether zoo's stored label JSON predates FiftyOne's form (no `_id`, or an
/// array not in `{"$binary": ...}`), so it is rewritten for the export.
fn is_old_form(value: &Value) -> bool {
    let Some(object) = value.as_object() else {
        return false;
    };
    let binary = |key: &str| {
        object
            .get(key)
            .is_some_and(|array| !array.is_null() && array.get("$binary").is_none())
    };
    match object.get("_cls").and_then(Value::as_str) {
        Some("Classifications" | "Detections" | "Keypoints") => object
            .values()
            .filter_map(Value::as_array)
            .flatten()
            .any(is_old_form),
        Some(_) => !object.contains_key("_id") || binary("mask") || binary("logits"),
        None => false,
    }
}

impl Datasets {
    fn export_rows(&self, name: &str) -> Result<Rows, DatasetError> {
        let dataset_id = self.dataset_id(name)?;
        let database = database_error(&self.path);
        let (created_at, root, outside_paths): (i64, StoredPath, bool) = self
            .connection
            .query_row(
                "SELECT created_at, root, outside_paths FROM datasets WHERE id = ?1",
                [dataset_id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .map_err(database)?;
        let dataset_document = self
            .connection
            .query_row(
                "SELECT document FROM dataset_documents WHERE dataset_id = ?1",
                [dataset_id],
                |row| row.get::<_, String>(0),
            )
            .optional()
            .map_err(database)?;
        Ok(Rows {
            dataset_id,
            created_at,
            root: root.0,
            outside_paths,
            imported: dataset_document.is_some(),
            dataset_document: dataset_document.and_then(|text| parse_object(&text)),
            provenance: self.provenance_of(dataset_id)?,
        })
    }

    /// One sample's labels, vectors and kept document, read for an export.
    fn sample_rows(&self, sample: i64) -> Result<SampleRows, DatasetError> {
        let labels = self.query_rows(
            "SELECT field, label FROM labels WHERE sample_id = ?1 ORDER BY field",
            [sample],
            |row| {
                let text: Option<String> = row.get(1)?;
                let value = text.and_then(|text| serde_json::from_str::<Value>(&text).ok());
                Ok((row.get::<_, String>(0)?, value))
            },
        )?;
        let vectors = self.query_rows(
            "SELECT field, data FROM embeddings WHERE sample_id = ?1 ORDER BY field",
            [sample],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?)),
        )?;
        let document = self
            .connection
            .query_row(
                "SELECT document FROM sample_documents WHERE sample_id = ?1",
                [sample],
                |row| row.get::<_, String>(0),
            )
            .optional()
            .map_err(database_error(&self.path))?
            .and_then(|text| parse_object(&text));
        Ok(SampleRows {
            labels,
            vectors,
            document,
        })
    }

    /// Writes FiftyOne's dataset folder (`fo.types.FiftyOneDataset`) as
    /// FiftyOne 1.22.1 writes it: `data/` with the images, `samples.json`,
    /// `metadata.json` with the schema (labels as embedded documents of
    /// their class, embeddings as `VectorField`s), and `fields/` folders.
    /// Labels go out in FiftyOne's JSON; what an import kept comes back
    /// as it was. Masks and maps kept in files (`mask_path`, `map_path`)
    /// are copied into `fields/` and named relative to `dir`, as FiftyOne's
    /// exporter does, so the folder loads anywhere.
    ///
    /// Samples are read and written one at a time (`samples.json` streams
    /// into a temporary file renamed into place at the end), so memory does
    /// not grow with the dataset. Every file is written under a name the
    /// export makes (FiftyOne's unique base names, folders named after
    /// checked field names) strictly inside `dir`; a file to copy must be a
    /// regular file, and, for an imported dataset, inside the imported
    /// folder unless it was imported with `--allow-outside-paths`.
    pub fn export_fiftyone(&self, name: &str, dir: &Path) -> Result<usize, DatasetError> {
        let rows = self.export_rows(name)?;
        let data = dir.join("data");
        fs_err::create_dir_all(&data)?;
        let mut names = UniqueNames::new(
            fs_err::read_dir(&data)?
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned()),
        );
        let dataset_object_id = rows
            .dataset_document
            .as_ref()
            .and_then(|document| document.get("_id").cloned())
            .unwrap_or_else(|| stable_id(rows.created_at, rows.dataset_id, 0).to_json());
        let created = date(rows.created_at);
        let mut kinds: BTreeMap<String, FieldKind> = BTreeMap::new();
        let mut media_names = HashMap::new();
        let copy = CopyRules {
            dataset: name,
            root: &rows.root,
            // Images of a dataset made from a folder were indexed there; an
            // imported dataset's are held to its folder unless allowed out.
            check_images: rows.imported && !rows.outside_paths,
            check_media: !rows.outside_paths,
        };
        let mut out = zoo_fs::AtomicFile::create(&dir.join("samples.json"))?;
        out.write_all(b"{\"samples\": [")?;
        let mut statement = self
            .connection
            .prepare("SELECT id, filepath FROM samples WHERE dataset_id = ?1 ORDER BY id")
            .map_err(database_error(&self.path))?;
        let mut sample_rows = statement
            .query([rows.dataset_id])
            .map_err(database_error(&self.path))?;
        let mut count = 0;
        while let Some(row) = sample_rows.next().map_err(database_error(&self.path))? {
            let sample: i64 = row.get(0).map_err(database_error(&self.path))?;
            let source = row
                .get::<_, StoredPath>(1)
                .map_err(database_error(&self.path))?
                .0;
            let file_name = source
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let file_name = names.name(&file_name);
            // Opened as the loader opens images: a FIFO or a device swapped
            // in after indexing fails at once, never blocks or copies forever.
            copy.copy(&source, copy.check_images, &data.join(&file_name))?;
            let SampleRows {
                labels,
                vectors,
                document: stored,
            } = self.sample_rows(sample)?;
            let stored = stored.as_ref();
            let kept = |key: &str| stored.and_then(|document| document.get(key)).cloned();
            let mut document = Map::new();
            document.insert(
                "_id".into(),
                kept("_id").unwrap_or_else(|| {
                    stable_id(rows.created_at, rows.dataset_id, sample).to_json()
                }),
            );
            document.insert("filepath".into(), json!(format!("data/{file_name}")));
            document.insert("tags".into(), kept("tags").unwrap_or_else(|| json!([])));
            document.insert(
                "_media_type".into(),
                kept("_media_type").unwrap_or_else(|| json!("image")),
            );
            document.insert(
                "_rand".into(),
                kept("_rand").unwrap_or_else(|| json!(sample_rand(sample))),
            );
            for (key, value) in stored.into_iter().flatten() {
                if !matches!(
                    key.as_str(),
                    "_id"
                        | "filepath"
                        | "tags"
                        | "_media_type"
                        | "_rand"
                        | "_dataset_id"
                        | "created_at"
                        | "last_modified_at"
                ) {
                    document.insert(key.clone(), value.clone());
                }
            }
            for (field, value) in labels {
                // A field stored before names were checked (`filepath`, or
                // `/tmp/x`) must neither replace the sample's own keys nor
                // name a folder.
                if let Err(err) = validate_field_name(&field) {
                    tracing::warn!(
                        "field `{}` left out of the export: {err}",
                        field.escape_debug()
                    );
                    continue;
                }
                let mut value = match value {
                    Some(value) if is_old_form(&value) => match Label::from_json(&value) {
                        Ok(label) => {
                            let mut rewritten = label.to_json();
                            keep_other_keys(&mut rewritten, &value);
                            rewritten
                        }
                        Err(_) => value,
                    },
                    Some(value) => value,
                    None => Value::Null,
                };
                export_media_files(&mut value, &field, dir, &copy, &mut media_names)?;
                if let Some(class) = value.get("_cls").and_then(Value::as_str) {
                    kinds
                        .entry(field.clone())
                        .or_insert_with(|| FieldKind::Label(class.to_owned()));
                }
                document.insert(field, value);
            }
            for (field, data) in vectors {
                if validate_field_name(&field).is_err() {
                    continue;
                }
                document.insert(
                    field.clone(),
                    array_to_json("<f4", &[data.len() / 4], &data),
                );
                kinds.insert(field, FieldKind::Vector);
            }
            document.insert("_dataset_id".into(), dataset_object_id.clone());
            document.insert(
                "created_at".into(),
                kept("created_at").unwrap_or_else(|| created.clone()),
            );
            document.insert(
                "last_modified_at".into(),
                kept("last_modified_at").unwrap_or_else(|| created.clone()),
            );
            if count > 0 {
                out.write_all(b",")?;
            }
            out.write_all(python_json(&Value::Object(document)).as_bytes())?;
            count += 1;
        }
        out.write_all(b"]}")?;
        out.commit()?;

        let metadata = self.dataset_document(name, &rows, &dataset_object_id, &kinds);
        zoo_fs::write_atomic(
            &dir.join("metadata.json"),
            python_json(&metadata).as_bytes(),
        )?;
        for (field, kind) in &kinds {
            if let FieldKind::Label(class) = kind
                && let Some((_, suffix)) = MEDIA_LABELS.iter().find(|(name, _)| name == class)
            {
                fs_err::create_dir_all(dir.join("fields").join(format!("{field}{suffix}")))?;
            }
        }
        Ok(count)
    }

    /// `metadata.json`: the imported document (or FiftyOne's defaults) with
    /// a schema entry for every field zoo added.
    fn dataset_document(
        &self,
        name: &str,
        rows: &Rows,
        id: &Value,
        kinds: &BTreeMap<String, FieldKind>,
    ) -> Value {
        let created = date(rows.created_at);
        let mut document = rows.dataset_document.clone().unwrap_or_else(|| {
            let id_hex = id.get("$oid").and_then(Value::as_str).unwrap_or_default();
            let mut document = Map::new();
            for (key, value) in [
                ("_id", id.clone()),
                ("name", json!(name)),
                ("slug", json!(slug(name))),
                ("version", json!(FIFTYONE_VERSION)),
                ("created_at", created.clone()),
                ("last_modified_at", created.clone()),
                ("last_deletion_at", Value::Null),
                ("last_loaded_at", created.clone()),
                ("sample_collection_name", json!(format!("samples.{id_hex}"))),
                ("persistent", json!(false)),
                ("media_type", json!("image")),
                ("_media_roots", json!([])),
                ("_media_sources", json!([])),
                ("_media_source_layouts", json!([])),
                ("group_media_types", json!({})),
                ("tags", json!([])),
                ("info", json!({})),
                (
                    "app_config",
                    json!({
                        "dynamic_groups_target_frame_rate": 30,
                        "grid_media_field": "filepath",
                        "media_fallback": false,
                        "media_fields": ["filepath"],
                        "modal_media_field": "filepath",
                        "plugins": {},
                    }),
                ),
                ("classes", json!({})),
                ("default_classes", json!([])),
                ("mask_targets", json!({})),
                ("default_mask_targets", json!({})),
                ("skeletons", json!({})),
                ("camera_intrinsics", json!({})),
                ("static_transforms", json!({})),
                ("sample_fields", Value::Array(default_fields(&created))),
                ("frame_fields", json!([])),
                ("saved_views", json!([])),
                ("workspaces", json!([])),
                ("annotation_runs", json!({})),
                ("brain_methods", json!({})),
                ("evaluations", json!({})),
                ("runs", json!({})),
                ("active_label_schemas", json!([])),
                ("label_schemas", json!({})),
                ("frame_label_schemas", json!({})),
            ] {
                document.insert(key.to_owned(), value);
            }
            document
        });
        let mut fields = match document.shift_remove("sample_fields") {
            Some(Value::Array(fields)) => fields,
            _ => default_fields(&created),
        };
        let declared: BTreeSet<String> = fields
            .iter()
            .filter_map(|entry| entry.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect();
        for (field_name, kind) in kinds {
            if declared.contains(field_name) {
                continue;
            }
            let entry = match kind {
                FieldKind::Vector => vector_field_schema(field_name, &created),
                FieldKind::Label(class) => match label_field_schema(field_name, class, &created) {
                    Some(entry) => entry,
                    None => continue,
                },
            };
            fields.push(entry);
        }
        // Which model made a field goes where FiftyOne keeps a field's
        // metadata: its `info` (the record) and `description` (one line).
        for entry in &mut fields {
            let Some(entry) = entry.as_object_mut() else {
                continue;
            };
            let Some(provenance) = entry
                .get("name")
                .and_then(Value::as_str)
                .and_then(|field| rows.provenance.get(field))
            else {
                continue;
            };
            entry.insert("description".into(), json!(provenance_line(provenance)));
            entry.insert("info".into(), json!({ "zoo_provenance": provenance }));
        }
        document.insert("sample_fields".into(), Value::Array(fields));
        Value::Object(document)
    }

    /// Creates dataset `name` from FiftyOne's dataset folder `dir` (what
    /// `dataset.export(dir, dataset_type=fo.types.FiftyOneDataset)` writes),
    /// with the default [`ImportOptions`]: every file it names must lie
    /// inside `dir`.
    pub fn import_fiftyone(&mut self, name: &str, dir: &Path) -> Result<DatasetInfo, DatasetError> {
        self.import_fiftyone_with(name, dir, ImportOptions::default())
    }

    /// Creates dataset `name` from FiftyOne's dataset folder `dir`: label
    /// fields go to the labels, float32 vector fields to the embeddings,
    /// every other key of each sample and `metadata.json` are kept for the
    /// export back.
    ///
    /// The folder is a stranger's: its JSON files are read only when they
    /// are regular files within a size cap ([`MAX_METADATA_BYTES`],
    /// [`crate::MAX_SAMPLES_BYTES`]); `filepath`s, `mask_path`s and `map_path`s are
    /// resolved against `dir` (never the current directory) and must stay
    /// inside it unless `options` allow otherwise; field names follow
    /// FiftyOne's rules; a vector inflates to at most [`MAX_VECTOR_BYTES`].
    /// Anything refused fails the whole import, naming the sample, and
    /// nothing is stored.
    pub fn import_fiftyone_with(
        &mut self,
        name: &str,
        dir: &Path,
        options: ImportOptions,
    ) -> Result<DatasetInfo, DatasetError> {
        if self.exists(name) {
            return Err(DatasetError::Exists(name.to_owned()));
        }
        let root = fs_err::canonicalize(dir)?;
        let allow_outside = options.allow_outside_paths;
        let max_samples = options.max_samples_bytes;
        let problem = |problem: String| DatasetError::Import {
            dir: dir.to_path_buf(),
            problem,
        };
        let read_json = |path: &Path, limit: u64| -> Result<Value, DatasetError> {
            let bytes = zoo_fs::read_untrusted(path, limit)?;
            let text = String::from_utf8_lossy(&bytes);
            serde_json::from_str(&text)
                .or_else(|_| serde_json::from_str(&python_constants_as_null(&text)))
                .map_err(|source| DatasetError::ImportJson {
                    path: path.to_path_buf(),
                    source,
                })
        };
        let metadata_path = root.join("metadata.json");
        if fs_err::symlink_metadata(&metadata_path).is_err() {
            return Err(problem(
                "it has no `metadata.json`: give the folder FiftyOne's `dataset.export(..., dataset_type=fo.types.FiftyOneDataset)` wrote".into(),
            ));
        }
        let Value::Object(metadata) = read_json(&metadata_path, MAX_METADATA_BYTES)? else {
            return Err(problem("`metadata.json` is not a JSON object".into()));
        };
        match metadata.get("media_type").and_then(Value::as_str) {
            None | Some("image") => {}
            Some(other) => {
                return Err(problem(format!(
                    "its media type is `{}`; zoo imports image datasets only",
                    other.escape_debug()
                )));
            }
        }
        if root.join("frames.json").exists() || root.join("frames").exists() {
            return Err(problem(
                "it has video frames; zoo imports image datasets only".into(),
            ));
        }
        let samples_path = root.join("samples.json");
        let samples: Vec<Value> = if fs_err::symlink_metadata(&samples_path).is_ok() {
            match read_json(&samples_path, max_samples)
                .map_err(|error| too_big(error, max_samples))?
            {
                Value::Object(mut object) => match object.remove("samples") {
                    Some(Value::Array(samples)) => samples,
                    _ => return Err(problem("`samples.json` has no `samples` list".into())),
                },
                _ => return Err(problem("`samples.json` is not a JSON object".into())),
            }
        } else if root.join("samples").is_dir() {
            let mut files: Vec<PathBuf> = fs_err::read_dir(root.join("samples"))?
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
                .collect();
            files.sort();
            // The files together are held to the cap of one `samples.json`.
            let mut budget = max_samples;
            let mut samples = Vec::with_capacity(files.len());
            for path in &files {
                let size = zoo_fs::open_untrusted(path)?.1;
                if size > budget {
                    return Err(problem(format!(
                        "its `samples/` files hold over {max_samples} bytes, the most zoo reads: raise `ZOO_MAX_IMPORT_BYTES` to import it"
                    )));
                }
                budget -= size;
                samples.push(read_json(path, size)?);
            }
            samples
        } else {
            return Err(problem(
                "it has neither `samples.json` nor `samples/`".into(),
            ));
        };

        // What each field holds, by the schema; a field not declared is a
        // label when its value says `_cls`.
        let mut kinds: HashMap<String, FieldKind> = HashMap::new();
        for entry in metadata
            .get("sample_fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(field_name), Some(ftype)) = (
                entry.get("name").and_then(Value::as_str),
                entry.get("ftype").and_then(Value::as_str),
            ) else {
                continue;
            };
            let embedded = entry.get("embedded_doc_type").and_then(Value::as_str);
            match (ftype, embedded) {
                ("fiftyone.core.fields.VectorField", _) => {
                    kinds.insert(field_name.to_owned(), FieldKind::Vector);
                }
                ("fiftyone.core.fields.EmbeddedDocumentField", Some(class))
                    if class.starts_with("fiftyone.core.labels.") =>
                {
                    kinds.insert(
                        field_name.to_owned(),
                        FieldKind::Label(
                            class.trim_start_matches("fiftyone.core.labels.").to_owned(),
                        ),
                    );
                }
                _ => {}
            }
        }

        let database = database_error(&self.path);
        let (transaction, dataset_id) =
            begin_dataset(&mut self.connection, &self.path, name, root.clone())?;
        transaction
            .execute(
                "INSERT INTO dataset_documents (dataset_id, document) VALUES (?1, ?2)",
                params![dataset_id, Value::Object(metadata).to_string()],
            )
            .map_err(database)?;
        transaction
            .execute(
                "UPDATE datasets SET outside_paths = ?2 WHERE id = ?1",
                params![dataset_id, allow_outside],
            )
            .map_err(database)?;
        {
            let mut insert_sample = transaction
                .prepare("INSERT INTO samples (dataset_id, filepath) VALUES (?1, ?2)")
                .map_err(database)?;
            let mut insert_label = transaction
                .prepare("INSERT INTO labels (sample_id, field, label) VALUES (?1, ?2, ?3)")
                .map_err(database)?;
            let mut insert_vector = transaction
                .prepare(
                    "INSERT INTO embeddings (sample_id, field, dim, data) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(database)?;
            let mut insert_document = transaction
                .prepare("INSERT INTO sample_documents (sample_id, document) VALUES (?1, ?2)")
                .map_err(database)?;
            // One sample at a time, inside the transaction: a refused sample
            // rolls back everything (the transaction is dropped unfinished),
            // and no more than one sample's vectors are inflated at once.
            for (index, sample) in samples.into_iter().enumerate() {
                let Value::Object(sample) = sample else {
                    return Err(problem(format!("sample {index} is not a JSON object")));
                };
                let Some(filepath) = sample.get("filepath").and_then(Value::as_str) else {
                    return Err(problem(format!("sample {index} has no `filepath`")));
                };
                let path = resolve_named(&root, filepath, allow_outside)
                    .map_err(|why| problem(format!("sample {index}'s `filepath`: {why}")))?;
                insert_sample
                    .execute(params![dataset_id, StoredPath(path.clone())])
                    .map_err(|source| {
                        if is_unique_violation(&source) {
                            problem(format!(
                                "two samples have the file `{}`; a zoo dataset has one sample per file",
                                path.display()
                            ))
                        } else {
                            database(source)
                        }
                    })?;
                let sample_id = transaction.last_insert_rowid();
                let mut document = Map::new();
                for (key, mut value) in sample {
                    if key == "filepath" {
                        continue;
                    }
                    let kind = kinds.get(&key).cloned().or_else(|| {
                        value
                            .get("_cls")
                            .and_then(Value::as_str)
                            .filter(|class| label_fields(class, &Value::Null).is_some())
                            .map(|class| FieldKind::Label(class.to_owned()))
                    });
                    let field_problem = |why: String| {
                        problem(format!(
                            "sample {index}, field `{}`: {why}",
                            key.escape_debug()
                        ))
                    };
                    // A label or vector field becomes a field zoo stores
                    // (and a folder name in an export), so its name must
                    // follow FiftyOne's rules (no `/`, not absolute); under
                    // any other name it is kept as JSON, exported back
                    // unchanged and never used as a path.
                    let kind = kind.filter(|_| validate_field_name(&key).is_ok());
                    match kind {
                        Some(FieldKind::Label(_)) => {
                            check_imported_label(&mut value, &root, allow_outside)
                                .map_err(field_problem)?;
                            let text = (!value.is_null()).then(|| value.to_string());
                            insert_label
                                .execute(params![sample_id, key, text])
                                .map_err(database)?;
                        }
                        Some(FieldKind::Vector) if value.is_null() => {
                            document.insert(key, value);
                        }
                        Some(FieldKind::Vector) => {
                            match array_from_json_within(&value, MAX_VECTOR_BYTES) {
                                Ok(array) if array.dtype == "<f4" && array.shape.len() == 1 => {
                                    insert_vector
                                        .execute(params![
                                            sample_id,
                                            key,
                                            array.shape[0] as i64,
                                            array.data
                                        ])
                                        .map_err(database)?;
                                }
                                Err(error @ NpyError::TooBig { .. }) => {
                                    return Err(field_problem(format!(
                                        "{error}: a vector is at most {MAX_VECTOR_BYTES} bytes"
                                    )));
                                }
                                // Another dtype or shape: kept as FiftyOne
                                // wrote it, exported back unchanged.
                                _ => {
                                    document.insert(key, value);
                                }
                            }
                        }
                        None => {
                            document.insert(key, value);
                        }
                    }
                }
                insert_document
                    .execute(params![sample_id, Value::Object(document).to_string()])
                    .map_err(database)?;
            }
        }
        transaction.commit().map_err(database)?;
        self.info(name)
    }
}

/// A `samples.json` over the cap, with the knob that raises it.
fn too_big(error: DatasetError, limit: u64) -> DatasetError {
    match error {
        DatasetError::Untrusted(zoo_fs::UntrustedError::TooBig { path, size, .. }) => {
            DatasetError::Import {
                dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                problem: format!(
                    "`{}` is {size} bytes or more, over the limit of {limit} bytes: raise `ZOO_MAX_IMPORT_BYTES` to import it",
                    path.display()
                ),
            }
        }
        other => other,
    }
}

/// Copies the files label `value` of field `field` names (`mask_path`,
/// `map_path`; in a `Detections`' items too) into export `dir`, as FiftyOne's
/// `FiftyOneDatasetExporter` does: `fields/<field>/` (`fields/<field>.detections/`
/// for the items), each file under its own base name made unique in its
/// folder (`name-2.png`, ...), and points the keys at the copies, relative
/// to `dir`. A relative path is taken from the dataset's folder, never the
/// current directory; the file must lie inside that folder (unless the
/// dataset was imported with `--allow-outside-paths`) and be a regular file.
fn export_media_files(
    value: &mut Value,
    field: &str,
    dir: &Path,
    copy: &CopyRules<'_>,
    names: &mut HashMap<PathBuf, UniqueNames>,
) -> Result<(), DatasetError> {
    let Value::Object(object) = value else {
        return Ok(());
    };
    copy_media_keys(object, field, dir, copy, names)?;
    if let Some(Value::Array(items)) = object.get_mut("detections") {
        let folder = format!("{field}.detections");
        for item in items {
            if let Value::Object(item) = item {
                copy_media_keys(item, &folder, dir, copy, names)?;
            }
        }
    }
    Ok(())
}

/// [`export_media_files`] for the keys of one label object, into
/// `fields/<folder>/` (`folder` is a checked field name: one plain name).
fn copy_media_keys(
    object: &mut Map<String, Value>,
    folder: &str,
    dir: &Path,
    copy: &CopyRules<'_>,
    names: &mut HashMap<PathBuf, UniqueNames>,
) -> Result<(), DatasetError> {
    for key in MEDIA_KEYS {
        let Some(Value::String(path)) = object.get_mut(key) else {
            continue;
        };
        let source = copy.root.join(path.as_str());
        let target_dir = dir.join("fields").join(folder);
        fs_err::create_dir_all(&target_dir)?;
        let unique = match names.entry(target_dir.clone()) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let existing = fs_err::read_dir(&target_dir)?
                    .filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned());
                entry.insert(UniqueNames::new(existing))
            }
        };
        let file_name = source
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| key.to_owned());
        let file_name = unique.name(&file_name);
        copy.copy(&source, copy.check_media, &target_dir.join(&file_name))?;
        *path = format!("fields/{folder}/{file_name}");
    }
    Ok(())
}

/// Python's `json` writes `NaN`, `Infinity` and `-Infinity` (FiftyOne's
/// keypoints use `NaN` for points not seen), which JSON does not have:
/// outside strings they become `null`, which FiftyOne reads as `None`.
fn python_constants_as_null(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut in_string = false;
    while let Some(character) = rest.chars().next() {
        if in_string {
            match character {
                '\\' => {
                    let escaped: String = rest.chars().take(2).collect();
                    out.push_str(&escaped);
                    rest = &rest[escaped.len()..];
                    continue;
                }
                '"' => in_string = false,
                _ => {}
            }
        } else {
            if character == '"' {
                in_string = true;
            }
            let constant = ["NaN", "Infinity", "-Infinity"]
                .into_iter()
                .find(|constant| rest.starts_with(constant));
            if let Some(constant) = constant {
                out.push_str("null");
                rest = &rest[constant.len()..];
                continue;
            }
        }
        out.push(character);
        rest = &rest[character.len_utf8()..];
    }
    out
}

/// FiftyOne's dataset slug: lower case, runs of other characters as `-`.
fn slug(name: &str) -> String {
    let mut slug = String::new();
    for character in name.chars() {
        if character.is_alphanumeric() {
            slug.extend(character.to_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_iso_utc() {
        assert_eq!(date(0), json!({"$date": "1970-01-01T00:00:00.000Z"}));
        assert_eq!(
            date(1_795_398_459),
            json!({"$date": "2026-11-23T01:47:39.000Z"})
        );
        assert_eq!(
            date(951_782_400),
            json!({"$date": "2000-02-29T00:00:00.000Z"})
        );
    }

    #[test]
    fn json_is_written_as_pythons_json_dumps() {
        // `json.dumps({"a": [1, "é😀"], "b": {"c": None}})` in Python 3.11.
        let value = json!({"a": [1, "é😀"], "b": {"c": null}});
        assert_eq!(
            python_json(&value),
            r#"{"a": [1, "\u00e9\ud83d\ude00"], "b": {"c": null}}"#
        );
        let parsed: Value = serde_json::from_str(&python_json(&value)).unwrap();
        assert_eq!(parsed, value);
    }

    #[test]
    fn file_names_are_fiftyones() {
        let mut names = UniqueNames::new(["b.png".to_owned()]);
        assert_eq!(names.name("a.png"), "a.png");
        assert_eq!(names.name("a.png"), "a-2.png");
        assert_eq!(names.name("a-2.png"), "a-2-2.png");
        assert_eq!(names.name("b.png"), "b-2.png");
        assert_eq!(names.name("50%.jpg"), "50-.jpg");
        assert_eq!(names.name("noext"), "noext");
    }

    #[test]
    fn pythons_nan_and_infinity_read_as_null() {
        let text = r#"{"points": [[NaN, 0.5], [Infinity, -Infinity]], "label": "NaN \" Infinity"}"#;
        let value: Value = serde_json::from_str(&python_constants_as_null(text)).unwrap();
        assert_eq!(
            value,
            json!({"points": [[null, 0.5], [null, null]], "label": "NaN \" Infinity"})
        );
    }

    #[test]
    fn zoos_old_label_rows_are_rewritten_in_fiftyones_form() {
        let old =
            json!({"_cls": "Classification", "label": "a", "confidence": null, "logits": [1.0]});
        assert!(is_old_form(&old));
        let new = Label::from_json(&old).unwrap().to_json();
        assert!(!is_old_form(&new));
        assert!(new["logits"]["$binary"].is_object());
        let detections = json!({"_cls": "Detections", "detections": [{"_cls": "Detection", "label": "p", "bounding_box": [0, 0, 1, 1]}]});
        assert!(is_old_form(&detections));
        assert!(!is_old_form(
            &Label::from_json(&detections).unwrap().to_json()
        ));
    }

    #[test]
    fn rand_is_in_fiftyones_range_and_stable() {
        for sample in 1..1000 {
            let value = sample_rand(sample);
            assert!((0.999..1.0).contains(&value), "{value}");
            assert_eq!(value, sample_rand(sample));
        }
        assert_eq!(slug("My Data_set"), "my-data-set");
    }
}
