//! The config checks every native Hugging Face `transformers` model class
//! runs (`transformers_model.rs`, `zero_shot_model.rs`,
//! `zero_shot_detector.rs`, `transformers_embedder.rs`,
//! `transformers_depth.rs`, `transformers_segmenter.rs`): FiftyOne's fields
//! read with their path in errors, and the fields that would hand the model
//! to Python or change its processor refused by name.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use zoo_model_core::{ModelError, ModelSpec};

/// The class's fields of `spec`'s config; a wrong one is an error naming
/// its path.
pub(crate) fn fields<T: DeserializeOwned>(spec: &ModelSpec) -> Result<T, ModelError> {
    serde_path_to_error::deserialize(Value::Object(spec.config.clone())).map_err(|err| {
        ModelError::config(format!(
            "`{}` {}; correct the value or remove the field from the model's config",
            err.path(),
            err.inner()
        ))
    })
}

/// `entrypoint_fcn` names a Python function: zoo builds `what` (such as
/// `transformers classifiers`) from their repo instead.
pub(crate) fn refuse_entrypoint(entrypoint: Option<&Value>, what: &str) -> Result<(), ModelError> {
    if entrypoint.is_some_and(|value| !value.is_null()) {
        return Err(ModelError::unsupported(format!(
            "the config's `entrypoint_fcn` names a Python function to build the model; zoo builds {what} from their repo: remove it"
        )));
    }
    Ok(())
}

/// `output_processor_cls`, when given, must be `expected`, the one output
/// processor zoo runs `what` with.
pub(crate) fn check_output_processor(
    given: Option<&str>,
    expected: &str,
    what: &str,
) -> Result<(), ModelError> {
    match given {
        Some(processor) if processor != expected => Err(ModelError::unsupported(format!(
            "`output_processor_cls` `{processor}`: zoo runs {what} with `{expected}` only"
        ))),
        _ => Ok(()),
    }
}

/// `transformers_processor_kwargs` other than `return_tensors: pt` change
/// the image processor, which zoo runs as the repo's file says.
pub(crate) fn refuse_processor_kwargs(
    kwargs: Option<&Map<String, Value>>,
) -> Result<(), ModelError> {
    if let Some(kwargs) = kwargs
        && let Some((key, value)) = kwargs.iter().find(|(key, value)| {
            !(key.as_str() == "return_tensors" && value.as_str() == Some("pt"))
        })
    {
        return Err(ModelError::unsupported(format!(
            "`transformers_processor_kwargs.{key}` (`{value}`) changes the image processor, which zoo runs as the repo's `preprocessor_config.json` says; remove it"
        )));
    }
    Ok(())
}
