//! One FiftyOne dataset: its samples to run on, and the writing of results
//! into it as FiftyOne writes them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::sync::Collection;
use serde_json::{Value, json};
use zoo_model_core::{EmbedOutcome, Label, Outcome, Sample, array_to_json};

use crate::{FiftyOne, FiftyOneError};

/// What a run stores in a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    /// Labels (`apply`): an `EmbeddedDocumentField` of a label class.
    Labels,
    /// Embeddings (`embed`): a `VectorField`.
    Embeddings,
}

/// A dataset in FiftyOne's list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatasetSummary {
    /// Its name.
    pub name: String,
    /// How many samples it has.
    pub samples: u64,
    /// Its media type (`image`, `video`, `group`, ...).
    pub media_type: String,
}

/// What a field holds, as the dataset's schema says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FieldType {
    /// `EmbeddedDocumentField` of this class (`fiftyone.core.labels.X`).
    Embedded(String),
    /// Any other `ftype`.
    Other(String),
}

impl FieldType {
    fn describe(&self) -> String {
        match self {
            FieldType::Embedded(class) => format!("`{}` labels", class.escape_debug()),
            FieldType::Other(ftype) => format!("a `{}`", ftype.escape_debug()),
        }
    }
}

/// The `ftype` of FiftyOne's vector fields.
const VECTOR_FIELD: &str = "fiftyone.core.fields.VectorField";

/// The `ftype` of FiftyOne's label fields.
const EMBEDDED_FIELD: &str = "fiftyone.core.fields.EmbeddedDocumentField";

/// A FiftyOne dataset opened for a run.
#[derive(Debug)]
pub struct Dataset {
    fiftyone: FiftyOne,
    name: String,
    id: ObjectId,
    samples: Collection<Document>,
    collection_name: String,
    /// The declared top-level fields (`sample_fields`).
    schema: BTreeMap<String, FieldType>,
    /// The samples handed out by [`Dataset::pending`]: a run's sample id
    /// is the index of the sample's `_id` here.
    ids: Vec<ObjectId>,
    paths: Vec<PathBuf>,
    /// The failures of this run, by sample index.
    failures: Vec<(PathBuf, String)>,
}

/// Reads the dataset document's schema: `name` to type.
fn read_schema(
    name: &str,
    document: &Document,
) -> Result<BTreeMap<String, FieldType>, FiftyOneError> {
    let malformed = |message: String| FiftyOneError::Malformed {
        dataset: name.to_owned(),
        message,
    };
    let fields = document
        .get_array("sample_fields")
        .map_err(|_| malformed("its document has no `sample_fields` list".to_owned()))?;
    let mut schema = BTreeMap::new();
    for field in fields {
        let Bson::Document(field) = field else {
            return Err(malformed(
                "a `sample_fields` entry is not a document".to_owned(),
            ));
        };
        let (Ok(field_name), Ok(ftype)) = (field.get_str("name"), field.get_str("ftype")) else {
            return Err(malformed(
                "a `sample_fields` entry has no `name` or `ftype`".to_owned(),
            ));
        };
        let kind = match (ftype, field.get_str("embedded_doc_type")) {
            (EMBEDDED_FIELD, Ok(class)) => FieldType::Embedded(class.to_owned()),
            (other, _) => FieldType::Other(other.to_owned()),
        };
        schema.insert(field_name.to_owned(), kind);
    }
    Ok(schema)
}

/// Lists FiftyOne's datasets.
pub(crate) fn list(fiftyone: &FiftyOne) -> Result<Vec<DatasetSummary>, FiftyOneError> {
    let cursor = fiftyone
        .database()
        .collection::<Document>("datasets")
        .find(doc! {})
        .projection(doc! {"name": 1, "sample_collection_name": 1, "media_type": 1})
        .sort(doc! {"name": 1})
        .run()
        .map_err(|err| fiftyone.error(err))?;
    let mut summaries = Vec::new();
    for document in cursor {
        let document = document.map_err(|err| fiftyone.error(err))?;
        let (Ok(name), Ok(collection)) = (
            document.get_str("name"),
            document.get_str("sample_collection_name"),
        ) else {
            continue;
        };
        let samples = fiftyone
            .database()
            .collection::<Document>(collection)
            .estimated_document_count()
            .run()
            .map_err(|err| fiftyone.error(err))?;
        summaries.push(DatasetSummary {
            name: name.to_owned(),
            samples,
            media_type: document.get_str("media_type").unwrap_or("").to_owned(),
        });
    }
    Ok(summaries)
}

/// A label as FiftyOne's BSON.
fn label_bson(label: &Label) -> Result<Bson, String> {
    Bson::try_from(label.to_json()).map_err(|err| format!("a label is not valid BSON: {err}"))
}

/// A vector as FiftyOne's `VectorField` keeps it.
fn vector_bson(values: &[f32]) -> Result<Bson, String> {
    let bytes: Vec<u8> = values
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect();
    Bson::try_from(array_to_json("<f4", &[values.len()], &bytes))
        .map_err(|err| format!("a vector is not valid BSON: {err}"))
}

/// `now` as the extended JSON FiftyOne's schema entries carry.
fn json_date(now: DateTime) -> Value {
    json!({"$date": {"$numberLong": now.timestamp_millis().to_string()}})
}

impl Dataset {
    /// Opens dataset `name`: an image dataset of FiftyOne's.
    pub(crate) fn open(fiftyone: FiftyOne, name: &str) -> Result<Self, FiftyOneError> {
        let datasets = fiftyone.database().collection::<Document>("datasets");
        let Some(document) = datasets
            .find_one(doc! {"name": name})
            .run()
            .map_err(|err| fiftyone.error(err))?
        else {
            let known = list(&fiftyone)?
                .into_iter()
                .map(|summary| summary.name)
                .collect();
            return Err(FiftyOneError::NoDataset {
                name: name.to_owned(),
                known,
            });
        };
        let malformed = |message: &str| FiftyOneError::Malformed {
            dataset: name.to_owned(),
            message: message.to_owned(),
        };
        let id = document
            .get_object_id("_id")
            .map_err(|_| malformed("its document has no ObjectId `_id`"))?;
        let collection_name = document
            .get_str("sample_collection_name")
            .map_err(|_| malformed("its document names no `sample_collection_name`"))?
            .to_owned();
        match document.get_str("media_type") {
            Ok("image") => {}
            other => {
                return Err(FiftyOneError::Malformed {
                    dataset: name.to_owned(),
                    message: format!(
                        "its media type is `{}`: zoo applies image models to image datasets (select the image slice of a grouped dataset and clone it: `dataset.select_group_slices(\"left\").clone(\"NAME\")`)",
                        other.unwrap_or("none").escape_debug()
                    ),
                });
            }
        }
        let schema = read_schema(name, &document)?;
        let samples = fiftyone.database().collection::<Document>(&collection_name);
        Ok(Self {
            fiftyone,
            name: name.to_owned(),
            id,
            samples,
            collection_name,
            schema,
            ids: Vec::new(),
            paths: Vec::new(),
            failures: Vec::new(),
        })
    }

    /// The dataset's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many samples the dataset has.
    pub fn len(&self) -> Result<u64, FiftyOneError> {
        self.samples
            .count_documents(doc! {})
            .run()
            .map_err(|err| self.fiftyone.error(err))
    }

    /// Whether the dataset has no samples.
    pub fn is_empty(&self) -> Result<bool, FiftyOneError> {
        Ok(self.len()? == 0)
    }

    /// The dataset's top-level fields and their types (FiftyOne's
    /// `ftype`, and the label class of label fields).
    pub fn fields(&self) -> Vec<(String, String)> {
        self.schema
            .iter()
            .map(|(name, kind)| {
                let kind = match kind {
                    FieldType::Embedded(class) => class.clone(),
                    FieldType::Other(ftype) => ftype.clone(),
                };
                (name.clone(), kind)
            })
            .collect()
    }

    /// The refusal of `field`, which the schema declares as `existing`, for
    /// results described as `new`.
    fn field_type_error(&self, field: &str, existing: &FieldType, new: String) -> FiftyOneError {
        FiftyOneError::FieldType {
            dataset: self.name.clone(),
            field: field.to_owned(),
            existing: existing.describe(),
            new,
        }
    }

    /// Refuses `field` when the schema has it with a type `kind` cannot
    /// hold (a label field for embeddings, a `filepath` for labels, ...).
    fn check_kind(&self, field: &str, kind: ResultKind) -> Result<(), FiftyOneError> {
        let Some(existing) = self.schema.get(field) else {
            return Ok(());
        };
        let fits = match (kind, existing) {
            (ResultKind::Embeddings, FieldType::Other(ftype)) => ftype == VECTOR_FIELD,
            (ResultKind::Labels, FieldType::Embedded(class)) => {
                class.starts_with("fiftyone.core.labels.")
            }
            _ => false,
        };
        if fits {
            return Ok(());
        }
        let new = match kind {
            ResultKind::Labels => "labels",
            ResultKind::Embeddings => "embeddings (a `VectorField`)",
        };
        Err(self.field_type_error(field, existing, new.to_owned()))
    }

    /// The samples a run into `field` has left to do, in FiftyOne's order:
    /// those whose `field` is unset or `None` (every sample with
    /// `overwrite`), only those with one of `tags` when given. A run's
    /// sample id is the sample's index in this list.
    pub fn pending(
        &mut self,
        field: &str,
        kind: ResultKind,
        overwrite: bool,
        tags: &[String],
    ) -> Result<Vec<Sample>, FiftyOneError> {
        self.check_kind(field, kind)?;
        let mut filter = Document::new();
        if !overwrite {
            filter.insert(field, Bson::Null);
        }
        if !tags.is_empty() {
            filter.insert("tags", doc! {"$in": tags});
        }
        let cursor = self
            .samples
            .find(filter)
            .projection(doc! {"_id": 1, "filepath": 1})
            .run()
            .map_err(|err| self.fiftyone.error(err))?;
        self.ids.clear();
        self.paths.clear();
        self.failures.clear();
        let mut pending = Vec::new();
        for document in cursor {
            let document = document.map_err(|err| self.fiftyone.error(err))?;
            let (Ok(id), Ok(filepath)) =
                (document.get_object_id("_id"), document.get_str("filepath"))
            else {
                return Err(FiftyOneError::Malformed {
                    dataset: self.name.clone(),
                    message: format!(
                        "a sample of `{}` has no ObjectId `_id` or string `filepath`",
                        self.collection_name
                    ),
                });
            };
            let index = i64::try_from(self.ids.len()).unwrap_or(i64::MAX);
            self.ids.push(id);
            self.paths.push(PathBuf::from(filepath));
            pending.push(Sample {
                id: index,
                filepath: PathBuf::from(filepath),
            });
        }
        Ok(pending)
    }

    /// How many samples have a value (not `None`) in `field`.
    pub fn count_results(&self, field: &str) -> Result<u64, FiftyOneError> {
        self.samples
            .count_documents(doc! {field: {"$ne": Bson::Null}})
            .run()
            .map_err(|err| self.fiftyone.error(err))
    }

    /// The samples of this run that failed, with why.
    pub fn failures(&self) -> &[(PathBuf, String)] {
        &self.failures
    }

    /// The `_id` of a run's sample `id`.
    fn object_id(&self, id: i64) -> Result<ObjectId, FiftyOneError> {
        usize::try_from(id)
            .ok()
            .and_then(|index| self.ids.get(index))
            .copied()
            .ok_or_else(|| FiftyOneError::Malformed {
                dataset: self.name.clone(),
                message: format!("no sample {id} in this run"),
            })
    }

    /// Records a failed sample of this run.
    fn failed(&mut self, id: i64, error: &str) {
        let path = usize::try_from(id)
            .ok()
            .and_then(|index| self.paths.get(index))
            .cloned()
            .unwrap_or_default();
        self.failures.push((path, error.to_owned()));
    }

    /// Declares `field` in the dataset's schema as `entry` (FiftyOne's
    /// `sample_fields` entry), unless it is declared; refuses a field
    /// declared with another type.
    fn declare(
        &mut self,
        field: &str,
        wanted: FieldType,
        entry: Value,
    ) -> Result<(), FiftyOneError> {
        if let Some(existing) = self.schema.get(field) {
            if *existing == wanted {
                return Ok(());
            }
            return Err(self.field_type_error(field, existing, wanted.describe()));
        }
        let entry = Bson::try_from(entry).map_err(|err| FiftyOneError::Malformed {
            dataset: self.name.clone(),
            message: format!("the schema entry of `{field}` is not BSON: {err}"),
        })?;
        let datasets = self.fiftyone.database().collection::<Document>("datasets");
        // Pushed only where no entry of that name is: two runs declaring
        // the same field at once add it once.
        datasets
            .update_one(
                doc! {"_id": self.id, "sample_fields.name": {"$ne": field}},
                doc! {
                    "$push": {"sample_fields": entry},
                    "$set": {"last_modified_at": DateTime::now()},
                },
            )
            .run()
            .map_err(|err| self.fiftyone.error(err))?;
        let document = datasets
            .find_one(doc! {"_id": self.id})
            .run()
            .map_err(|err| self.fiftyone.error(err))?
            .ok_or_else(|| FiftyOneError::Malformed {
                dataset: self.name.clone(),
                message: "it was deleted during the run".to_owned(),
            })?;
        self.schema = read_schema(&self.name, &document)?;
        match self.schema.get(field) {
            Some(existing) if *existing == wanted => Ok(()),
            Some(existing) => Err(self.field_type_error(field, existing, wanted.describe())),
            None => Err(FiftyOneError::Malformed {
                dataset: self.name.clone(),
                message: format!("its schema did not take field `{field}`"),
            }),
        }
    }

    /// Records which model made `field` where FiftyOne keeps a field's
    /// metadata: the `sample_fields` entry's `info` (`{"zoo_provenance":
    /// provenance}`) and `description` (`line`), as `field.info = ...;
    /// field.save()` would. Nothing happens for a field not declared (a run
    /// whose every sample failed).
    pub fn set_field_provenance(
        &mut self,
        field: &str,
        provenance: &Value,
        line: &str,
    ) -> Result<(), FiftyOneError> {
        let info =
            Bson::try_from(serde_json::json!({ "zoo_provenance": provenance })).map_err(|err| {
                FiftyOneError::Malformed {
                    dataset: self.name.clone(),
                    message: format!("the provenance of `{field}` is not BSON: {err}"),
                }
            })?;
        self.fiftyone
            .database()
            .collection::<Document>("datasets")
            .update_one(
                doc! {"_id": self.id, "sample_fields.name": field},
                doc! {
                    "$set": {
                        "sample_fields.$.info": info,
                        "sample_fields.$.description": line,
                        "last_modified_at": DateTime::now(),
                    },
                },
            )
            .run()
            .map_err(|err| self.fiftyone.error(err))?;
        Ok(())
    }

    /// Sends one bulk `update` of `updates` (`{q, u}` statements).
    fn update(&self, updates: Vec<Document>) -> Result<(), FiftyOneError> {
        if updates.is_empty() {
            return Ok(());
        }
        let expected = updates.len();
        let reply = self
            .fiftyone
            .database()
            .run_command(doc! {
                "update": &self.collection_name,
                "updates": updates,
                "ordered": false,
            })
            .run()
            .map_err(|err| self.fiftyone.error(err))?;
        if let Ok(errors) = reply.get_array("writeErrors")
            && let Some(first) = errors.first()
        {
            return Err(FiftyOneError::Malformed {
                dataset: self.name.clone(),
                message: format!(
                    "{} of {expected} sample updates failed (the first: {first})",
                    errors.len()
                ),
            });
        }
        let matched = reply
            .get_i32("n")
            .map_or(0, |n| usize::try_from(n).unwrap_or(0));
        if matched != expected {
            return Err(FiftyOneError::Malformed {
                dataset: self.name.clone(),
                message: format!(
                    "{} of {expected} samples were deleted during the run; their results are not stored",
                    expected.saturating_sub(matched)
                ),
            });
        }
        Ok(())
    }

    /// Stores one batch of apply outcomes: each sample's labels under
    /// their fields (declared first), its `last_modified_at` stamped, in
    /// one bulk update; failures are kept for [`Dataset::failures`].
    pub fn write_labels(&mut self, outcomes: &[Outcome]) -> Result<(), FiftyOneError> {
        let now = DateTime::now();
        let mut updates = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match outcome {
                Outcome::Labels { sample_id, fields } => {
                    let mut set = Document::new();
                    for (field, label) in fields {
                        let value = match label {
                            Some(label) => {
                                let value = label_bson(label).map_err(|message| {
                                    FiftyOneError::Malformed {
                                        dataset: self.name.clone(),
                                        message,
                                    }
                                })?;
                                let class = match &value {
                                    Bson::Document(document) => {
                                        document.get_str("_cls").unwrap_or_default().to_owned()
                                    }
                                    _ => String::new(),
                                };
                                let created = json_date(now);
                                let entry = zoo_datasets::label_field_schema(field, &class, &created)
                                    .ok_or_else(|| FiftyOneError::Malformed {
                                        dataset: self.name.clone(),
                                        message: format!(
                                            "zoo does not write FiftyOne's schema for `{class}` labels"
                                        ),
                                    })?;
                                self.declare(
                                    field,
                                    FieldType::Embedded(format!("fiftyone.core.labels.{class}")),
                                    entry,
                                )?;
                                value
                            }
                            None => {
                                self.check_kind(field, ResultKind::Labels)?;
                                Bson::Null
                            }
                        };
                        set.insert(field.clone(), value);
                    }
                    set.insert("last_modified_at", now);
                    updates.push(doc! {
                        "q": {"_id": self.object_id(*sample_id)?},
                        "u": {"$set": set},
                    });
                }
                Outcome::Failed { sample_id, error } => self.failed(*sample_id, error),
            }
        }
        self.update(updates)
    }

    /// Stores one batch of embeddings into `field` (declared a
    /// `VectorField` first), in one bulk update.
    pub fn write_embeddings(
        &mut self,
        field: &str,
        outcomes: &[EmbedOutcome],
    ) -> Result<(), FiftyOneError> {
        let now = DateTime::now();
        let mut updates = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match outcome {
                EmbedOutcome::Vector { sample_id, values } => {
                    if updates.is_empty() {
                        let entry = zoo_datasets::vector_field_schema(field, &json_date(now));
                        self.declare(field, FieldType::Other(VECTOR_FIELD.to_owned()), entry)?;
                    }
                    let value =
                        vector_bson(values).map_err(|message| FiftyOneError::Malformed {
                            dataset: self.name.clone(),
                            message,
                        })?;
                    updates.push(doc! {
                        "q": {"_id": self.object_id(*sample_id)?},
                        "u": {"$set": {field: value, "last_modified_at": now}},
                    });
                }
                EmbedOutcome::Failed { sample_id, error } => self.failed(*sample_id, error),
            }
        }
        self.update(updates)
    }
}
