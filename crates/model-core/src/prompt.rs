//! Per-sample prompts: FiftyOne's `apply_model(..., prompt_field=FIELD)`,
//! where a model (ViTPose, SAM) reads each sample's label in `FIELD` (its
//! boxes or points) along with the image.

use std::collections::HashMap;

use serde_json::Value;

/// Whether and how a model reads per-sample prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptSupport {
    /// It reads none; `why` says so in a sentence naming the model's kind.
    Unsupported {
        /// Why, for the error that refuses `--prompt-field`.
        why: String,
    },
    /// It reads a prompt field when given one and runs without one too
    /// (a FiftyOne `SamplesMixin`, SAM's automatic mode).
    Optional,
    /// It cannot run without one: its FiftyOne `GetItem` requires `key`.
    Required {
        /// The `GetItem` key the prompt field fills (`prompt_field`).
        key: String,
    },
}

/// One sample's prompt, as read from its dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePrompt {
    /// The sample's file path (or URL) as its dataset stores it.
    pub filepath: String,
    /// Its label in the prompt field, in FiftyOne's JSON
    /// (`Label.to_dict(extended=True)`), already checked to be a label;
    /// `None` when the sample has none.
    pub label: Option<Value>,
}

/// The prompts of a run: the prompt field's name and each sample's label in
/// it, by sample id (the ids of [`crate::Sample`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompts {
    /// The dataset field the prompts come from (FiftyOne's `prompt_field`).
    pub field: String,
    /// Each sample's prompt, by sample id.
    pub samples: HashMap<i64, SamplePrompt>,
}
