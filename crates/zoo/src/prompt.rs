//! Per-sample prompts for `apply` (FiftyOne's `apply_model(...,
//! prompt_field=FIELD)`): the checks before a run, and each sample's label
//! in `FIELD`, read from its dataset and checked before it goes to the
//! model.

use std::collections::HashMap;
use std::sync::Arc;

use zoo_datasets::{Datasets, StoredLabel};
use zoo_model_core::{
    Image, ImageLoader, Label, PromptSupport, Prompts, Sample, SamplePrompt, validate_field_name,
};

use crate::error::{Context, Result, bail};
use crate::load::LoadedModel;

/// The longest prompt label read from a dataset (its JSON text): a
/// `Detections` of some ten thousand boxes. A longer one fails its sample.
pub const MAX_PROMPT_BYTES: u64 = 4 << 20;

/// Refuses, before anything runs, a prompt field the model cannot take, and
/// a model that needs one run without.
pub(crate) fn check_model(model: &mut LoadedModel, prompt_field: Option<&str>) -> Result<()> {
    let name = model.name().to_owned();
    let support = model.model_mut().prompt_support();
    match (support, prompt_field) {
        (PromptSupport::Unsupported { why }, Some(field)) => bail!(
            Config,
            "`--prompt-field {}` cannot be used with `{name}`: {why}; leave `--prompt-field` out",
            field.escape_debug()
        ),
        (PromptSupport::Required { key }, None) => bail!(
            Config,
            "`{name}` needs a prompt for every sample (its FiftyOne `GetItem` requires `{key}`): name the label field that holds them (such as a `Detections` field of boxes) with `--prompt-field FIELD`"
        ),
        (_, Some(field)) => validate_field_name(field).with_context(|| {
            format!(
                "`--prompt-field {}` names no field a dataset can have",
                field.escape_debug()
            )
        }),
        (_, None) => Ok(()),
    }
}

/// The prompts of `pending`, read from field `field` of zoo dataset
/// `dataset`, and the samples whose prompt is refused (with why): a label
/// over [`MAX_PROMPT_BYTES`], one that is not FiftyOne's JSON of a label,
/// or none where the model needs one (`required`). A field no sample of the
/// dataset has is an error naming the field and the dataset.
pub(crate) fn read(
    store: &Datasets,
    dataset: &str,
    field: &str,
    pending: &[Sample],
    required: bool,
) -> Result<(Prompts, HashMap<i64, String>)> {
    let stored = store
        .field_labels(dataset, field, MAX_PROMPT_BYTES)
        .with_context(|| format!("reading the prompts of `--prompt-field {field}` failed"))?;
    let mut prompts = Prompts {
        field: field.to_owned(),
        samples: HashMap::with_capacity(pending.len()),
    };
    let mut refused = HashMap::new();
    for sample in pending {
        match checked(stored.get(&sample.id), field) {
            Ok(None) if required => {
                refused.insert(
                    sample.id,
                    format!("the sample has no label in the prompt field `{field}`, and the model needs one per sample"),
                );
            }
            Ok(label) => {
                prompts.samples.insert(
                    sample.id,
                    SamplePrompt {
                        filepath: sample.filepath.to_string_lossy().into_owned(),
                        label,
                    },
                );
            }
            Err(why) => {
                refused.insert(sample.id, why);
            }
        }
    }
    Ok((prompts, refused))
}

/// A stored prompt label as the model gets it: FiftyOne's JSON of a label
/// zoo reads, or `None`; else why not.
fn checked(stored: Option<&StoredLabel>, field: &str) -> Result<Option<serde_json::Value>, String> {
    let text = match stored {
        None | Some(StoredLabel::None) => return Ok(None),
        Some(StoredLabel::TooLarge(length)) => {
            return Err(format!(
                "its label in the prompt field `{field}` is {length} bytes long, over the {MAX_PROMPT_BYTES} zoo reads as a prompt"
            ));
        }
        Some(StoredLabel::Json(text)) => text,
    };
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|err| format!("its label in the prompt field `{field}` is not JSON: {err}"))?;
    Label::from_json(&value).map_err(|err| {
        format!("its label in the prompt field `{field}` is not a FiftyOne label zoo reads: {err}")
    })?;
    Ok(Some(value))
}

/// Hands every copy of `model` the run's prompts.
pub(crate) fn hand_over(model: &mut LoadedModel, prompts: Prompts) -> Result<()> {
    let prompts = Arc::new(prompts);
    for copy in model.copies_mut() {
        copy.set_prompts(Arc::clone(&prompts))?;
    }
    Ok(())
}

/// The images of a run with prompts: a sample whose prompt was refused
/// fails with why, before its image is read.
pub(crate) struct PromptedLoader<'a> {
    /// What reads the images.
    pub(crate) images: &'a dyn ImageLoader,
    /// The samples whose prompt was refused, with why.
    pub(crate) refused: HashMap<i64, String>,
}

impl ImageLoader for PromptedLoader<'_> {
    fn load(&self, sample: &Sample) -> Result<Image, String> {
        match self.refused.get(&sample.id) {
            Some(why) => Err(why.clone()),
            None => self.images.load(sample),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_prompts_are_labels_or_a_reason() {
        let field = "boxes";
        let detections = r#"{"_cls": "Detections", "detections": [{"_id": {"$oid": "6b172efb8405027ab03b41dc"}, "_cls": "Detection", "label": "person", "bounding_box": [0.1, 0.2, 0.3, 0.4], "attributes": {}, "tags": []}]}"#;
        let value = checked(Some(&StoredLabel::Json(detections.to_owned())), field)
            .unwrap()
            .unwrap();
        assert_eq!(value["detections"][0]["label"], "person");
        assert_eq!(checked(None, field), Ok(None));
        assert_eq!(checked(Some(&StoredLabel::None), field), Ok(None));
        let too_long = checked(Some(&StoredLabel::TooLarge(5 << 20)), field).unwrap_err();
        assert!(
            too_long.contains("5242880 bytes") && too_long.contains("`boxes`"),
            "{too_long}"
        );
        let not_json =
            checked(Some(&StoredLabel::Json("{\"_cls\":".to_owned())), field).unwrap_err();
        assert!(not_json.contains("is not JSON"), "{not_json}");
        for hostile in [
            r#"{"_cls": "Detections", "detections": "boxes"}"#,
            r#"{"_cls": "Sample", "filepath": "/etc/passwd"}"#,
            r#"[1, 2, 3]"#,
            r#"{"detections": []}"#,
        ] {
            let why = checked(Some(&StoredLabel::Json(hostile.to_owned())), field).unwrap_err();
            assert!(why.contains("not a FiftyOne label"), "{hostile}: {why}");
        }
    }
}
