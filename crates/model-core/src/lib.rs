//! The model interface of zoo: label types, the [`Model`] traits, the model
//! [`ModelFactory`], and the apply/embed engine.
//!
//! - [`Label`]: FiftyOne's label types, serialised as FiftyOne writes them
//!   (`_id`, `_cls`, `tags`, relative boxes, masks and logits as
//!   zlib-compressed `.npy` in `{"$binary": ...}`), and read back.
//! - [`Model`]: `predict_all` on a batch of preprocessed [`Input`]s; the
//!   model's [`Preprocess`] runs on decode threads so decoding and resizing
//!   overlap with the forward pass; capabilities for logits and embeddings.
//! - [`ModelFactory`]: builds a model from a deployment config by its `type`
//!   name; backends register builders (this crate knows no backend).
//! - [`apply`] and [`embed`]: the engine over samples from any
//!   [`ImageLoader`], writing results batch by batch through a callback.
//!
//! This crate does no disk or network I/O of its own: images arrive through
//! [`ImageLoader`], results leave through callbacks.
//!
//! ```
//! use zoo_model_core::Label;
//! let label = Label::Classification { label: "cat".into(), confidence: Some(0.9), logits: None };
//! assert_eq!(label.to_json()["_cls"], "Classification");
//! ```

mod apply;
mod factory;
mod fields;
mod image;
mod label;
mod model;
mod npy;
mod object_id;
mod prompt;
mod runtime;

pub use apply::{
    ApplyError, ApplyOptions, ApplySummary, EmbedOutcome, ImageLoader, Outcome, Sample, apply,
    apply_on, chunk_len, embed, embed_on,
};
pub use factory::{ModelBuilder, ModelFactory, ModelSpec};
pub use fields::{FieldNameError, RESERVED_FIELDS, label_fields, validate_field_name};
pub use image::Image;
pub use label::{Detection, Keypoint, Label, LabelError, Polyline, SegmentationMask};
pub use model::{
    Input, InputData, Model, ModelError, ModelErrorKind, Prediction, Preprocess, SetupGuard,
};
pub use npy::{
    MAX_ARRAY_BYTES, NpyArray, NpyError, array_from_json, array_from_json_within, array_to_json,
    npy_bytes, npy_f32_bytes, parse_npy,
};
pub use object_id::ObjectId;
pub use prompt::{PromptSupport, Prompts, SamplePrompt};
pub use runtime::{Runtime, SystemInfo};
