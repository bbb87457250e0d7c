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
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value, json};
use zoo_model_core::{Label, ObjectId, array_from_json, array_to_json, validate_field_name};

use crate::loader::open_regular;
use crate::store::{
    DatasetError, DatasetInfo, Datasets, StoredPath, begin_dataset, database_error, decode_f32,
    is_unique_violation,
};

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
        _ => return None,
    })
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

/// The row data of one dataset, read once for an export.
struct Rows {
    dataset_id: i64,
    created_at: i64,
    samples: Vec<(i64, PathBuf)>,
    labels: BTreeMap<i64, Vec<(String, Option<Value>)>>,
    vectors: BTreeMap<i64, Vec<(String, Vec<f32>)>>,
    documents: HashMap<i64, Map<String, Value>>,
    dataset_document: Option<Map<String, Value>>,
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
        let created_at: i64 = self
            .connection
            .query_row(
                "SELECT created_at FROM datasets WHERE id = ?1",
                [dataset_id],
                |row| row.get(0),
            )
            .map_err(database)?;
        let samples: Vec<(i64, PathBuf)> = self.query_rows(
            "SELECT id, filepath FROM samples WHERE dataset_id = ?1 ORDER BY id",
            [dataset_id],
            |row| Ok((row.get(0)?, row.get::<_, StoredPath>(1)?.0)),
        )?;
        let mut labels: BTreeMap<i64, Vec<(String, Option<Value>)>> = BTreeMap::new();
        let rows: Vec<(i64, String, Option<String>)> = self.query_rows(
            "SELECT l.sample_id, l.field, l.label FROM labels l JOIN samples s ON s.id = l.sample_id WHERE s.dataset_id = ?1 ORDER BY l.field",
            [dataset_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        for (sample, field, text) in rows {
            let value = text.and_then(|text| serde_json::from_str::<Value>(&text).ok());
            labels.entry(sample).or_default().push((field, value));
        }
        let mut vectors: BTreeMap<i64, Vec<(String, Vec<f32>)>> = BTreeMap::new();
        let rows: Vec<(i64, String, Vec<u8>)> = self.query_rows(
            "SELECT e.sample_id, e.field, e.data FROM embeddings e JOIN samples s ON s.id = e.sample_id WHERE s.dataset_id = ?1 ORDER BY e.field",
            [dataset_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        for (sample, field, data) in rows {
            vectors
                .entry(sample)
                .or_default()
                .push((field, decode_f32(&data).collect()));
        }
        let documents = self
            .query_rows::<_, Vec<(i64, String)>>(
                "SELECT d.sample_id, d.document FROM sample_documents d JOIN samples s ON s.id = d.sample_id WHERE s.dataset_id = ?1",
                [dataset_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?
            .into_iter()
            .filter_map(|(sample, text)| Some((sample, parse_object(&text)?)))
            .collect();
        let dataset_document = self
            .connection
            .query_row(
                "SELECT document FROM dataset_documents WHERE dataset_id = ?1",
                [dataset_id],
                |row| row.get::<_, String>(0),
            )
            .optional()
            .map_err(database)?
            .and_then(|text| parse_object(&text));
        Ok(Rows {
            dataset_id,
            created_at,
            samples,
            labels,
            vectors,
            documents,
            dataset_document,
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
        let mut samples = Vec::with_capacity(rows.samples.len());
        for (sample, source) in &rows.samples {
            let file_name = source
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let file_name = names.name(&file_name);
            // Opened as the loader opens images: a FIFO or a device swapped
            // in after indexing fails at once, never blocks or copies forever.
            let (mut image, _) = open_regular(source).map_err(|source| DatasetError::Export {
                dataset: name.to_owned(),
                source,
            })?;
            std::io::copy(
                &mut image,
                &mut fs_err::File::create(data.join(&file_name))?,
            )?;
            let stored = rows.documents.get(sample);
            let kept = |key: &str| stored.and_then(|document| document.get(key)).cloned();
            let mut document = Map::new();
            document.insert(
                "_id".into(),
                kept("_id").unwrap_or_else(|| {
                    stable_id(rows.created_at, rows.dataset_id, *sample).to_json()
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
                kept("_rand").unwrap_or_else(|| json!(sample_rand(*sample))),
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
            for (field, value) in rows.labels.get(sample).into_iter().flatten() {
                // A field stored before names were checked (`filepath`, say)
                // must not replace the sample's own keys.
                if let Err(err) = validate_field_name(field) {
                    tracing::warn!(
                        "field `{}` left out of the export: {err}",
                        field.escape_debug()
                    );
                    continue;
                }
                let mut value = match value {
                    Some(value) if is_old_form(value) => Label::from_json(value)
                        .map(|label| label.to_json())
                        .unwrap_or_else(|_| value.clone()),
                    Some(value) => value.clone(),
                    None => Value::Null,
                };
                export_media_files(&mut value, field, dir, name, &mut media_names)?;
                if let Some(class) = value.get("_cls").and_then(Value::as_str) {
                    kinds
                        .entry(field.clone())
                        .or_insert_with(|| FieldKind::Label(class.to_owned()));
                }
                document.insert(field.clone(), value);
            }
            for (field, values) in rows.vectors.get(sample).into_iter().flatten() {
                if validate_field_name(field).is_err() {
                    continue;
                }
                let bytes: Vec<u8> = values
                    .iter()
                    .flat_map(|value| value.to_le_bytes())
                    .collect();
                document.insert(field.clone(), array_to_json("<f4", &[values.len()], &bytes));
                kinds.insert(field.clone(), FieldKind::Vector);
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
            samples.push(Value::Object(document));
        }

        let mut text = String::from("{\"samples\": [");
        for (index, sample) in samples.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            text.push_str(&python_json(sample));
        }
        text.push_str("]}");
        zoo_fs::write_atomic(&dir.join("samples.json"), text.as_bytes())?;

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
        Ok(samples.len())
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
                FieldKind::Vector => field(field_name, "VectorField", None, None, vec![], &created),
                FieldKind::Label(class) => match label_fields(class, &created) {
                    Some(nested) => field(
                        field_name,
                        "EmbeddedDocumentField",
                        Some(&format!("fiftyone.core.labels.{class}")),
                        None,
                        nested,
                        &created,
                    ),
                    None => continue,
                },
            };
            fields.push(entry);
        }
        document.insert("sample_fields".into(), Value::Array(fields));
        Value::Object(document)
    }

    /// Creates dataset `name` from FiftyOne's dataset folder `dir` (what
    /// `dataset.export(dir, dataset_type=fo.types.FiftyOneDataset)` writes):
    /// label fields go to the labels, float32 vector fields to the
    /// embeddings, every other key of each sample and `metadata.json` are
    /// kept for the export back. Relative `filepath`s are taken from `dir`
    /// (the images stay where they are); relative `mask_path`s too, where
    /// the folder has `fields/`, as FiftyOne's importer does.
    pub fn import_fiftyone(&mut self, name: &str, dir: &Path) -> Result<DatasetInfo, DatasetError> {
        if self.exists(name) {
            return Err(DatasetError::Exists(name.to_owned()));
        }
        let root = fs_err::canonicalize(dir)?;
        let problem = |problem: String| DatasetError::Import {
            dir: dir.to_path_buf(),
            problem,
        };
        let read_json = |path: &Path| -> Result<Value, DatasetError> {
            let text = fs_err::read_to_string(path)?;
            serde_json::from_str(&text)
                .or_else(|_| serde_json::from_str(&python_constants_as_null(&text)))
                .map_err(|source| DatasetError::ImportJson {
                    path: path.to_path_buf(),
                    source,
                })
        };
        let metadata_path = root.join("metadata.json");
        if !metadata_path.is_file() {
            return Err(problem(
                "it has no `metadata.json`: give the folder FiftyOne's `dataset.export(..., dataset_type=fo.types.FiftyOneDataset)` wrote".into(),
            ));
        }
        let Value::Object(metadata) = read_json(&metadata_path)? else {
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
        let samples: Vec<Value> = if root.join("samples.json").is_file() {
            match read_json(&root.join("samples.json"))? {
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
            files
                .iter()
                .map(|path| read_json(path))
                .collect::<Result<_, _>>()?
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
        let media_fields = root.join("fields").is_dir();

        struct Imported {
            path: PathBuf,
            labels: Vec<(String, Option<String>)>,
            vectors: Vec<(String, Vec<f32>)>,
            document: Map<String, Value>,
        }
        let mut imported = Vec::with_capacity(samples.len());
        for (index, sample) in samples.into_iter().enumerate() {
            let Value::Object(sample) = sample else {
                return Err(problem(format!("sample {index} is not a JSON object")));
            };
            let Some(filepath) = sample.get("filepath").and_then(Value::as_str) else {
                return Err(problem(format!("sample {index} has no `filepath`")));
            };
            let path = Path::new(filepath);
            let path = if path.is_absolute() {
                path.to_path_buf()
            } else {
                root.join(path)
            };
            let mut item = Imported {
                path,
                labels: Vec::new(),
                vectors: Vec::new(),
                document: Map::new(),
            };
            for (key, mut value) in sample {
                if key == "filepath" {
                    continue;
                }
                let allowed = validate_field_name(&key).is_ok();
                let kind = kinds.get(&key).cloned().or_else(|| {
                    value
                        .get("_cls")
                        .and_then(Value::as_str)
                        .filter(|class| label_fields(class, &Value::Null).is_some())
                        .map(|class| FieldKind::Label(class.to_owned()))
                });
                match kind {
                    Some(FieldKind::Label(_))
                        if allowed && (value.is_object() || value.is_null()) =>
                    {
                        if media_fields {
                            absolute_media_paths(&mut value, &root);
                        }
                        let text = (!value.is_null()).then(|| value.to_string());
                        item.labels.push((key, text));
                    }
                    Some(FieldKind::Vector) if allowed => match array_from_json(&value) {
                        Ok(array) if array.dtype == "<f4" && array.shape.len() == 1 => {
                            let values = array.to_f32().unwrap_or_default();
                            item.vectors.push((key, values));
                        }
                        _ => {
                            item.document.insert(key, value);
                        }
                    },
                    _ => {
                        item.document.insert(key, value);
                    }
                }
            }
            imported.push(item);
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
            for item in imported {
                insert_sample
                    .execute(params![dataset_id, StoredPath(item.path.clone())])
                    .map_err(|source| {
                        if is_unique_violation(&source) {
                            problem(format!(
                                "two samples have the file `{}`; a zoo dataset has one sample per file",
                                item.path.display()
                            ))
                        } else {
                            database(source)
                        }
                    })?;
                let sample_id = transaction.last_insert_rowid();
                for (field_name, label) in item.labels {
                    insert_label
                        .execute(params![sample_id, field_name, label])
                        .map_err(database)?;
                }
                for (field_name, values) in item.vectors {
                    let bytes: Vec<u8> = values
                        .iter()
                        .flat_map(|value| value.to_le_bytes())
                        .collect();
                    insert_vector
                        .execute(params![sample_id, field_name, values.len() as i64, bytes])
                        .map_err(database)?;
                }
                insert_document
                    .execute(params![sample_id, Value::Object(item.document).to_string()])
                    .map_err(database)?;
            }
        }
        transaction.commit().map_err(database)?;
        self.info(name)
    }
}

/// The label keys that name a media file (FiftyOne's media fields of
/// `Segmentation`, `Heatmap` and `Detection`).
const MEDIA_KEYS: [&str; 2] = ["mask_path", "map_path"];

/// Copies the files label `value` of field `field` names (`mask_path`,
/// `map_path`; in a `Detections`' items too) into export `dir`, as FiftyOne's
/// `FiftyOneDatasetExporter` does: `fields/<field>/` (`fields/<field>.detections/`
/// for the items), each file under its own name made unique in its folder
/// (`name-2.png`, ...), and points the keys at the copies, relative to
/// `dir`. A file is opened as images are (a regular file only, never a FIFO
/// or a device).
fn export_media_files(
    value: &mut Value,
    field: &str,
    dir: &Path,
    dataset: &str,
    names: &mut HashMap<PathBuf, UniqueNames>,
) -> Result<(), DatasetError> {
    let Value::Object(object) = value else {
        return Ok(());
    };
    copy_media_keys(object, field, dir, dataset, names)?;
    if let Some(Value::Array(items)) = object.get_mut("detections") {
        let folder = format!("{field}.detections");
        for item in items {
            if let Value::Object(item) = item {
                copy_media_keys(item, &folder, dir, dataset, names)?;
            }
        }
    }
    Ok(())
}

/// [`export_media_files`] for the keys of one label object, into
/// `fields/<folder>/`.
fn copy_media_keys(
    object: &mut Map<String, Value>,
    folder: &str,
    dir: &Path,
    dataset: &str,
    names: &mut HashMap<PathBuf, UniqueNames>,
) -> Result<(), DatasetError> {
    for key in MEDIA_KEYS {
        let Some(Value::String(path)) = object.get_mut(key) else {
            continue;
        };
        let source = PathBuf::from(path.as_str());
        let (mut file, _) = open_regular(&source).map_err(|source| DatasetError::Export {
            dataset: dataset.to_owned(),
            source,
        })?;
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
        std::io::copy(
            &mut file,
            &mut fs_err::File::create(target_dir.join(&file_name))?,
        )?;
        *path = format!("fields/{folder}/{file_name}");
    }
    Ok(())
}

/// Joins relative `mask_path`/`map_path` values of a label with `root`, as
/// FiftyOne's importer does for media fields.
fn absolute_media_paths(value: &mut Value, root: &Path) {
    match value {
        Value::Object(object) => {
            for key in MEDIA_KEYS {
                if let Some(Value::String(path)) = object.get_mut(key)
                    && !Path::new(path.as_str()).is_absolute()
                {
                    *path = root.join(path.as_str()).to_string_lossy().into_owned();
                }
            }
            for nested in object.values_mut() {
                if nested.is_array() {
                    absolute_media_paths(nested, root);
                }
            }
        }
        Value::Array(values) => {
            for nested in values {
                absolute_media_paths(nested, root);
            }
        }
        _ => {}
    }
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
