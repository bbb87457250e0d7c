//! The model interface.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::image::Image;
use crate::label::Label;
use crate::prompt::{PromptSupport, Prompts};

/// What kind of failure a [`ModelError`] is: what the engine and callers
/// decide on, instead of the message's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelErrorKind {
    /// The model could not be built from its config.
    Config,
    /// An input could not be prepared.
    Preprocess,
    /// The forward pass failed.
    Inference,
    /// The model does not offer what was asked.
    Unsupported,
    /// The model can run no more (its process died or hung and was
    /// killed): the engine records the batch's samples as failed, stores
    /// them with every finished batch, and stops the run with this error.
    Fatal,
}

/// Why a model failed: a [`ModelErrorKind`], a message naming the input
/// and what to do, and the underlying error where there is one.
#[derive(Debug, thiserror::Error)]
#[error("{}{message}", kind_prefix(*kind))]
pub struct ModelError {
    kind: ModelErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// What a message of each kind is prefixed with when shown.
fn kind_prefix(kind: ModelErrorKind) -> &'static str {
    match kind {
        ModelErrorKind::Config => "cannot build model: ",
        ModelErrorKind::Preprocess => "cannot prepare the image: ",
        ModelErrorKind::Inference => "inference failed: ",
        ModelErrorKind::Unsupported | ModelErrorKind::Fatal => "",
    }
}

impl ModelError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ModelErrorKind, message: String) -> Self {
        Self {
            kind,
            message,
            source: None,
        }
    }

    /// The model could not be built from its config.
    pub fn config(message: String) -> Self {
        Self::new(ModelErrorKind::Config, message)
    }

    /// An input could not be prepared.
    pub fn preprocess(message: String) -> Self {
        Self::new(ModelErrorKind::Preprocess, message)
    }

    /// The forward pass failed.
    pub fn inference(message: String) -> Self {
        Self::new(ModelErrorKind::Inference, message)
    }

    /// The model does not offer what was asked.
    pub fn unsupported(message: String) -> Self {
        Self::new(ModelErrorKind::Unsupported, message)
    }

    /// The model can run no more; the run stops after recording the batch.
    pub fn fatal(message: String) -> Self {
        Self::new(ModelErrorKind::Fatal, message)
    }

    /// The same error, caused by `source` (shown after it in an error chain).
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ModelErrorKind {
        self.kind
    }

    /// The message, without the kind's prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the model can run no more (the run stops).
    pub fn is_fatal(&self) -> bool {
        self.kind == ModelErrorKind::Fatal
    }

    /// Whether the model does not offer what was asked.
    pub fn is_unsupported(&self) -> bool {
        self.kind == ModelErrorKind::Unsupported
    }
}

/// A preprocessed model input.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// `[channels, height, width]`.
    pub shape: [usize; 3],
    /// `channels * height * width` values.
    pub data: InputData,
    /// The original image size `(width, height)`, for relative coordinates.
    pub original_size: (u32, u32),
}

/// The values of an [`Input`]: normalised, or pixels the model normalises
/// where it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum InputData {
    /// Normalised `f32` values in `CHW` order.
    Values(Vec<f32>),
    /// Resized `u8` pixels in `HWC` order, not yet normalised. A model on a
    /// GPU takes these: a quarter of the bytes cross the bus and the
    /// normalisation runs on the device.
    Pixels(Vec<u8>),
}

impl InputData {
    /// How many values (or pixel channels) it holds.
    pub fn len(&self) -> usize {
        match self {
            InputData::Values(values) => values.len(),
            InputData::Pixels(pixels) => pixels.len(),
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The normalised values, if it holds them.
    pub fn values(&self) -> Option<&[f32]> {
        match self {
            InputData::Values(values) => Some(values),
            InputData::Pixels(_) => None,
        }
    }
}

/// What a model predicts for one image.
#[derive(Debug, Clone, PartialEq)]
pub enum Prediction {
    /// One label (or none, e.g. below a threshold).
    Label(Option<Label>),
    /// Several labels by key, stored as `<field>_<key>`.
    Map(BTreeMap<String, Option<Label>>),
}

/// Turns a decoded image into a model input. Runs on decode threads, so it
/// must be shareable.
pub trait Preprocess: Send + Sync {
    /// Prepares one image.
    fn preprocess(&self, image: Image) -> Result<Input, ModelError>;
}

/// An image model (FiftyOne's `Model`, with `LogitsMixin` and
/// `EmbeddingsMixin` as capabilities).
pub trait Model: Send {
    /// The preprocessing that turns decoded images into inputs.
    fn preprocessor(&self) -> Arc<dyn Preprocess>;

    /// How many copies of this model apply/embed should run side by side
    /// for the best throughput (each on its own thread, decoding its own
    /// batches); 1 unless the model knows better.
    fn workers(&self) -> usize {
        1
    }

    /// Told before a run how many copies run side by side, so that a copy
    /// can size its own thread use; does nothing unless the model needs it.
    fn set_workers(&mut self, _workers: usize) {}

    /// Predicts a batch. Inputs of different shapes may arrive together; the
    /// engine groups equal shapes before calling, so a backend may stack them.
    fn predict_all(&mut self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError>;

    /// Predicts one input.
    fn predict(&mut self, input: &Input) -> Result<Prediction, ModelError> {
        self.predict_all(std::slice::from_ref(input))?
            .pop()
            .ok_or_else(|| ModelError::inference("the model returned no prediction".into()))
    }

    /// Whether inputs of different sizes must run one at a time (FiftyOne's
    /// `ragged_batches`); the engine then batches equal sizes only.
    fn ragged_batches(&self) -> bool {
        true
    }

    /// Whether `predict_all` gives labels. A FiftyOne `TorchImageModel`
    /// whose config names no output processor returns raw outputs that
    /// `apply_model` cannot store (DINOv2's entries); apply refuses such a
    /// model up front.
    fn has_labels(&self) -> bool {
        true
    }

    /// Whether the model can store logits on its labels.
    fn has_logits(&self) -> bool {
        false
    }

    /// Asks the model to store logits (when it has them).
    fn set_store_logits(&mut self, store: bool) {
        let _ = store;
    }

    /// Hands the model an apply-time `confidence_thresh` (overriding its
    /// config's); `true` when the model applies it itself, as FiftyOne's
    /// `apply_model` defers to a model whose config has
    /// `confidence_thresh` (then the engine does not filter again). The
    /// default returns `false` and the engine filters the labels.
    fn set_confidence_thresh(&mut self, threshold: f64) -> bool {
        let _ = threshold;
        false
    }

    /// Whether the model computes embeddings.
    fn has_embeddings(&self) -> bool {
        false
    }

    /// One embedding vector per input.
    fn embed_all(&mut self, inputs: &[Input]) -> Result<Vec<Vec<f32>>, ModelError> {
        let _ = inputs;
        Err(ModelError::unsupported(
            "this model does not compute embeddings".into(),
        ))
    }

    /// Whether the model embeds text prompts (FiftyOne's
    /// `PromptMixin.can_embed_prompts`, e.g. CLIP).
    fn can_embed_prompts(&self) -> bool {
        false
    }

    /// One text embedding per prompt, in the space of the image embeddings
    /// (FiftyOne's `embed_prompts`).
    fn embed_prompts(&mut self, prompts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let _ = prompts;
        Err(ModelError::unsupported(
            "this model does not embed text prompts".into(),
        ))
    }

    /// Whether the model reads per-sample prompts (FiftyOne's
    /// `prompt_field`). The default: it reads none, as no model zoo runs
    /// natively does.
    fn prompt_support(&self) -> PromptSupport {
        PromptSupport::Unsupported {
            why: "it runs natively in zoo, which reads no per-sample prompts for its native models"
                .into(),
        }
    }

    /// Hands the model the prompts of the coming run's samples; the engine
    /// then names the samples of each batch ([`Model::predict_samples`]).
    /// The default refuses, as [`Model::prompt_support`] says.
    fn set_prompts(&mut self, prompts: Arc<Prompts>) -> Result<(), ModelError> {
        let _ = prompts;
        Err(ModelError::unsupported(
            "this model reads no per-sample prompts".into(),
        ))
    }

    /// Predicts a batch of the images of the samples `ids` (in order): what
    /// the engine calls, so that a model given [`Model::set_prompts`] reads
    /// each sample's prompt. The default is [`Model::predict_all`].
    fn predict_samples(
        &mut self,
        ids: &[i64],
        inputs: &[Input],
    ) -> Result<Vec<Prediction>, ModelError> {
        let _ = ids;
        self.predict_all(inputs)
    }

    /// [`Model::prefetch`] of the images of the samples `ids` (in order).
    /// The default is [`Model::prefetch`].
    fn prefetch_samples(&mut self, ids: &[i64], inputs: &[&Input], embeddings: bool) {
        let _ = ids;
        self.prefetch(inputs, embeddings);
    }

    /// Whether the model takes batches ahead of their calls
    /// ([`Model::prefetch`]). The engine then hands it each batch before
    /// it calls the model on the batch before.
    fn prefetches(&self) -> bool {
        false
    }

    /// The inputs of a coming call of [`Model::predict_all`] (or of
    /// [`Model::embed_all`] when `embeddings`), handed over before the
    /// current call, so that a model that works elsewhere (the Python model
    /// host) prepares them while the current one runs. The engine makes
    /// the calls it announced, with the same inputs (moved, not copied), in
    /// the same order, unless the run stops first; the model must still
    /// answer any call correctly. Errors show in the call. The default does
    /// nothing.
    fn prefetch(&mut self, inputs: &[&Input], embeddings: bool) {
        let _ = (inputs, embeddings);
    }

    /// Acquires resources before a run (the context manager's `__enter__`).
    fn setup(&mut self) -> Result<(), ModelError> {
        Ok(())
    }

    /// Releases them (`__exit__`).
    fn teardown(&mut self) {}
}

/// Holds a model set up for the guard's lifetime; tears it down on drop.
pub struct SetupGuard<'a> {
    model: &'a mut dyn Model,
}

impl<'a> SetupGuard<'a> {
    /// Sets `model` up.
    pub fn new(model: &'a mut dyn Model) -> Result<Self, ModelError> {
        model.setup()?;
        Ok(Self { model })
    }

    /// The model.
    pub fn model(&mut self) -> &mut dyn Model {
        self.model
    }
}

impl Drop for SetupGuard<'_> {
    fn drop(&mut self) {
        self.model.teardown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_their_kind_prefix_and_source() {
        let error = ModelError::config("`image_size` must be positive".to_owned());
        assert_eq!(error.kind(), ModelErrorKind::Config);
        assert_eq!(
            error.to_string(),
            "cannot build model: `image_size` must be positive"
        );
        assert!(!error.is_fatal());
        let io = std::io::Error::other("disk gone");
        let error = ModelError::fatal("the model host died".to_owned()).with_source(io);
        assert!(error.is_fatal());
        assert_eq!(error.message(), "the model host died");
        assert_eq!(error.to_string(), "the model host died");
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk gone"));
        assert!(ModelError::unsupported("no text".to_owned()).is_unsupported());
    }
}
