//! [`HostedModel`]: zoo's [`Model`] over a FiftyOne model in the worker.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use zoo_model_core::{
    Image, Input, InputData, Label, Model, ModelError, Prediction, Preprocess, PromptSupport,
    Prompts,
};

use crate::error::HostError;
use crate::frame::Frame;
use crate::worker::{HostSpec, Worker};

/// What `load_model` returned.
#[derive(Debug)]
pub enum Loaded {
    /// A deployment config (`{"type": ..., "config": ...}`): zoo runs it
    /// natively.
    Config(Value),
    /// A `fiftyone.core.models.Model`, alive in its worker.
    Model(HostedModel),
}

/// What the worker said about the model it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedInfo {
    /// The Python class (`module.QualName`).
    pub class: String,
    /// `model.has_logits`.
    pub has_logits: bool,
    /// `model.has_embeddings`.
    pub has_embeddings: bool,
    /// A `PromptMixin` whose `can_embed_prompts` is true (CLIP-like):
    /// [`Model::embed_prompts`] works.
    pub can_embed_prompts: bool,
    /// `model.ragged_batches`: images go one at a time (`predict`, or
    /// `predict_all` of a batch of one through FiftyOne's DataLoader path),
    /// as FiftyOne's `apply_model` ignores the batch size then.
    pub ragged_batches: bool,
    /// Whether it is a `TorchModelMixin`.
    pub torch: bool,
    /// Whether FiftyOne's `apply_model` feeds it through its DataLoader (a
    /// `SupportsGetItem` or `TorchModelMixin`): then the host turns each
    /// image into the RGB PIL image FiftyOne's loader reads, runs the
    /// model's `GetItem` or `transforms` on it and collates the batch as
    /// FiftyOne does, with the model's `preprocess` off for the run.
    pub data_loader: bool,
    /// The torch device it says it runs on (`cpu`, `cuda:0`), if any.
    pub device: Option<String>,
    /// The intra-op threads torch runs with in the host (after
    /// [`HostSpec::threads`] split them), else the `OMP_NUM_THREADS` it
    /// runs with; `None` when neither is known.
    pub threads: Option<usize>,
    /// Whether its config has `confidence_thresh` (then it thresholds its
    /// own predictions, as FiftyOne's `apply_model` defers to it).
    pub thresholds_itself: bool,
    /// A `SamplesMixin`: `apply_model`'s prompt field goes to its
    /// `needs_fields`, and `predict_all` gets the samples.
    pub samples_mixin: bool,
    /// A `SupportsGetItem` (not a `SamplesMixin`) whose `GetItem` takes
    /// `field_mapping={"prompt_field": F}` (SAM's).
    pub prompt_get_item: bool,
    /// The keys besides `filepath` and `id` its `GetItem` requires when no
    /// prompt field is given (ViTPose's `prompt_field`): it needs one.
    pub required_prompt_keys: Vec<String>,
}

impl HostedInfo {
    /// Whether and how the model reads per-sample prompts, as FiftyOne's
    /// `apply_model(..., prompt_field=F)` hands them over.
    pub fn prompt_support(&self) -> PromptSupport {
        if let Some(key) = self.required_prompt_keys.first() {
            return PromptSupport::Required { key: key.clone() };
        }
        if self.samples_mixin || self.prompt_get_item {
            return PromptSupport::Optional;
        }
        PromptSupport::Unsupported {
            why: format!(
                "FiftyOne's `{}` reads no per-sample prompts: it is no `SamplesMixin`, and its `GetItem` takes no `prompt_field`",
                self.class
            ),
        }
    }
}

/// Where a host's time went, summed over its predict and embed requests.
///
/// zoo sends each batch before it reads the answer to the batch before
/// ([`Model::prefetch`]), so the worker runs FiftyOne's DataLoader work on
/// batch N+1 while the model runs batch N: `feed_seconds` is that work's
/// whole time, `feed_wait_seconds` the part the model waited for.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostTiming {
    /// Predict and embed requests answered.
    pub requests: usize,
    /// Of them, those sent ahead of their call ([`Model::prefetch`]).
    pub sent_ahead: usize,
    /// Seconds zoo spent in its calls to the host: sending batches,
    /// waiting for answers, reading them.
    pub request_seconds: f64,
    /// Seconds the worker spent turning images into the model's inputs as
    /// FiftyOne's DataLoader does (its `GetItem` or transforms, collate),
    /// mostly while the model ran the batch before.
    pub feed_seconds: f64,
    /// Of `feed_seconds`, the seconds the model waited for them.
    pub feed_wait_seconds: f64,
    /// Seconds the worker spent in the model's `predict_all` / `embed_all`
    /// (or `predict` / `embed`).
    pub model_seconds: f64,
    /// Seconds spent crossing the boundary, measured piece by piece: zoo
    /// writing the pixels and reading and parsing the answers, the worker
    /// making arrays of the pixels and serialising labels and embeddings.
    pub boundary_seconds: f64,
}

impl HostTiming {
    /// Seconds outside the model's work: pipes, framing, arrays, label
    /// serialisation on both sides.
    pub fn boundary_seconds(&self) -> f64 {
        self.boundary_seconds
    }
}

/// A batch sent ahead of its call ([`Model::prefetch`]): which call it is
/// for, and the inputs it was made of (their pixel buffers' addresses and
/// shapes, which stay put while the engine moves them into the call).
#[derive(Debug, PartialEq, Eq)]
struct Pending {
    op: &'static str,
    inputs: Vec<(usize, [usize; 3])>,
}

/// The identity of a batch of inputs, for matching a call with the batch
/// sent ahead for it; `None` when an input is not pixels (never sent).
fn identity(inputs: &[&Input]) -> Option<Vec<(usize, [usize; 3])>> {
    inputs
        .iter()
        .map(|input| match &input.data {
            InputData::Pixels(bytes) => Some((bytes.as_ptr() as usize, input.shape)),
            InputData::Values(_) => None,
        })
        .collect()
}

/// Starts the worker, which runs the source's `load_model`; returns the
/// config it returned, or the model it holds.
pub fn load(spec: &HostSpec) -> Result<Loaded, HostError> {
    let mut worker = Worker::spawn(spec)?;
    let answer = worker.answer("load_model")?;
    worker.set_timeout(spec.batch_timeout);
    let header = answer.header;
    match header.get("kind").and_then(Value::as_str) {
        Some("config") => Ok(Loaded::Config(header["config"].clone())),
        Some("model") => {
            let flag = |key: &str| header.get(key).and_then(Value::as_bool).unwrap_or(false);
            let info = HostedInfo {
                class: header["class"].as_str().unwrap_or("?").to_owned(),
                has_logits: flag("has_logits"),
                has_embeddings: flag("has_embeddings"),
                can_embed_prompts: flag("can_embed_prompts"),
                ragged_batches: flag("ragged_batches"),
                torch: flag("torch"),
                data_loader: flag("data_loader"),
                device: header
                    .get("device")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                threads: header
                    .get("threads")
                    .and_then(Value::as_u64)
                    .map(|n| n as usize),
                thresholds_itself: flag("thresholds_itself"),
                samples_mixin: flag("samples_mixin"),
                prompt_get_item: flag("prompt_get_item"),
                required_prompt_keys: header
                    .get("required_prompt_keys")
                    .and_then(Value::as_array)
                    .map(|keys| {
                        keys.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            tracing::debug!(model = %spec.model_name, ?info, "hosting a Python model");
            Ok(Loaded::Model(HostedModel {
                worker,
                info: Box::new(info),
                timing: Box::default(),
                pending: std::collections::VecDeque::new(),
                store_logits: false,
                threshold: None,
                prompts: None,
            }))
        }
        Some("error") => Err(load_error(&worker, &header)),
        _ => Err(HostError::Protocol {
            model: spec.model_name.clone(),
            message: format!("its first answer was `{header}`"),
        }),
    }
}

/// The error a failed `load_model` (or `import fiftyone`) reported.
fn load_error(worker: &Worker, header: &Value) -> HostError {
    let text = |key: &str| header.get(key).and_then(Value::as_str).map(str::to_owned);
    let traceback = text("traceback")
        .map(|traceback| format!(":\n{}", tail(&traceback, 12)))
        .unwrap_or_default();
    let stage = text("stage").unwrap_or_else(|| "load_model".to_owned());
    let missing = matches!(
        text("exception").as_deref(),
        Some("ModuleNotFoundError" | "ImportError")
    );
    match (missing, text("module")) {
        (true, Some(module)) => HostError::MissingModule {
            python: worker.python.clone(),
            model: worker.model.clone(),
            module,
            stage,
            traceback,
        },
        _ => HostError::Load {
            init: worker.init.clone(),
            model: worker.model.clone(),
            message: text("error").unwrap_or_else(|| "it failed".to_owned()),
            traceback,
        },
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A FiftyOne model that a source's `load_model` returned, alive in its
/// own Python worker and driven through zoo's [`Model`] trait: images go as
/// decoded `uint8` HWC RGB pixels, labels come back as FiftyOne's
/// `Label.to_dict()`, embeddings as `float32`.
///
/// A worker that dies or hangs (then it is killed with its process group,
/// after `timeout`) fails the batch with fatal [`ModelError`], which stops
/// the run; a Python exception in `predict_all` fails the batch only.
#[derive(Debug)]
pub struct HostedModel {
    worker: Worker,
    /// Boxed: it keeps [`Loaded`]'s variants of similar sizes.
    info: Box<HostedInfo>,
    /// Boxed, as `info`.
    timing: Box<HostTiming>,
    /// Batches sent ahead, oldest first, whose answers are still to read.
    pending: std::collections::VecDeque<Pending>,
    store_logits: bool,
    threshold: Option<f64>,
    /// The run's prompts ([`Model::set_prompts`]): each `predict` request
    /// carries its samples' labels.
    prompts: Option<Arc<Prompts>>,
}

impl HostedModel {
    /// What the worker said about the model.
    pub fn info(&self) -> &HostedInfo {
        &self.info
    }

    /// Where this host's time went so far.
    pub fn timing(&self) -> HostTiming {
        *self.timing
    }

    /// The samples of a `predict` request when the run has prompts: each
    /// one's id, file path and prompt label (`null` for none).
    fn samples(&self, op: &str, ids: &[i64]) -> Result<Option<Value>, ModelError> {
        let Some(prompts) = self.prompts.as_ref().filter(|_| op == "predict") else {
            return Ok(None);
        };
        ids.iter()
            .map(|id| {
                let sample = prompts.samples.get(id).ok_or_else(|| {
                    ModelError::preprocess(format!(
                        "sample {id} has no entry in the prompts of field `{}`",
                        prompts.field
                    ))
                })?;
                Ok(json!({"id": id, "filepath": sample.filepath, "prompt": sample.label}))
            })
            .collect::<Result<Vec<Value>, ModelError>>()
            .map(|samples| Some(Value::Array(samples)))
    }

    /// Writes a request for `op` on the images of `inputs` (of the samples
    /// `ids`, which carry their prompts when the run has them).
    fn send(&mut self, op: &str, ids: &[i64], inputs: &[&Input]) -> Result<(), ModelError> {
        let mut shapes = Vec::with_capacity(inputs.len());
        let mut pixels = Vec::with_capacity(inputs.len());
        for input in inputs {
            let InputData::Pixels(bytes) = &input.data else {
                return Err(ModelError::preprocess(
                    "the model host takes pixels, not normalised values".into(),
                ));
            };
            shapes.push(json!([input.shape[1], input.shape[2]]));
            pixels.push(bytes.as_slice());
        }
        let mut header = json!({"op": op, "shapes": shapes});
        if let Some(samples) = self.samples(op, ids)? {
            header["samples"] = samples;
        }
        let started = std::time::Instant::now();
        let sent = self.worker.send(&header, &pixels).map_err(fatal);
        let seconds = started.elapsed().as_secs_f64();
        self.timing.request_seconds += seconds;
        self.timing.boundary_seconds += seconds;
        sent
    }

    /// Reads the answers to batches sent ahead that no call took (a run
    /// that stopped early): the next answer is then this call's.
    fn drain(&mut self, stage: &str) -> Result<(), ModelError> {
        while self.pending.pop_front().is_some() {
            self.worker.answer(stage).map_err(fatal)?;
        }
        Ok(())
    }

    /// Runs `op` on `inputs`: takes the answer to the batch sent ahead for
    /// them, or sends them now; returns the answer's items and payload.
    fn run(
        &mut self,
        op: &'static str,
        ids: &[i64],
        inputs: &[Input],
    ) -> Result<(Vec<Value>, Vec<u8>), ModelError> {
        let started = std::time::Instant::now();
        let refs: Vec<&Input> = inputs.iter().collect();
        let ahead = Pending {
            op,
            inputs: identity(&refs).unwrap_or_default(),
        };
        if self.pending.front() == Some(&ahead) {
            self.pending.pop_front();
            self.timing.sent_ahead += 1;
        } else {
            self.drain(op)?;
            self.send(op, ids, &refs)?;
        }
        let answer = self.worker.answer(op).map_err(fatal);
        let reading = std::time::Instant::now();
        let Frame {
            header,
            payload,
            read_seconds,
        } = answer?;
        let seconds = |key: &str| {
            header
                .get("seconds")
                .and_then(|seconds| seconds.get(key))
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        };
        self.timing.requests += 1;
        self.timing.feed_seconds += seconds("feed");
        self.timing.feed_wait_seconds += seconds("feed_wait");
        self.timing.model_seconds += seconds("model");
        self.timing.boundary_seconds += seconds("io") + read_seconds;
        let result = items_of(header, payload, inputs.len());
        let now = std::time::Instant::now();
        self.timing.boundary_seconds += (now - reading).as_secs_f64();
        self.timing.request_seconds += (now - started).as_secs_f64();
        result
    }
}

/// The items and payload of a `predict`/`embed` answer for `count` images.
fn items_of(
    header: Value,
    payload: Vec<u8>,
    count: usize,
) -> Result<(Vec<Value>, Vec<u8>), ModelError> {
    if header.get("ok").and_then(Value::as_bool) != Some(true) {
        return Err(python_error(&header));
    }
    let items = match header {
        Value::Object(mut header) => match header.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    if items.len() != count {
        return Err(ModelError::inference(format!(
            "the model returned {} results for {count} images",
            items.len(),
        )));
    }
    // Ragged models run image by image; one image's exception fails
    // the call (the caller runs them one per call).
    if let Some(error) = items
        .iter()
        .find_map(|item| item.get("error").and_then(Value::as_str))
    {
        return Err(ModelError::inference(error.to_owned()));
    }
    Ok((items, payload))
}

/// A host failure (died, hung, broken pipe): the run cannot go on.
fn fatal(error: HostError) -> ModelError {
    ModelError::fatal(error.to_string())
}

/// A Python exception the worker caught.
fn python_error(header: &Value) -> ModelError {
    let error = header
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("the model failed");
    match header.get("traceback").and_then(Value::as_str) {
        Some(traceback) => ModelError::inference(format!("{error}:\n{}", tail(traceback, 6))),
        None => ModelError::inference(error.to_owned()),
    }
}

/// One label of an answer (`null` for none).
fn label(value: &Value) -> Result<Option<Label>, ModelError> {
    if value.is_null() {
        return Ok(None);
    }
    Label::from_json(value).map(Some).map_err(|err| {
        ModelError::inference(format!("the model returned a label zoo cannot read: {err}"))
    })
}

/// One item of a `predict` answer.
fn prediction(item: &Value) -> Result<Prediction, ModelError> {
    if let Some(value) = item.get("label") {
        return Ok(Prediction::Label(label(value)?));
    }
    if let Some(map) = item.get("map").and_then(Value::as_object) {
        let mut labels = BTreeMap::new();
        for (key, value) in map {
            labels.insert(key.clone(), label(value)?);
        }
        return Ok(Prediction::Map(labels));
    }
    if item.get("none").is_some() {
        return Ok(Prediction::Label(None));
    }
    Err(ModelError::inference(format!(
        "the model host answered `{item}` for an image"
    )))
}

/// The vectors of an `embed` answer: each item's `dim` values, in order,
/// from the `float32` payload, which must hold exactly their sum.
fn vectors(items: &[Value], payload: &[u8]) -> Result<Vec<Vec<f32>>, ModelError> {
    let mut dims = Vec::with_capacity(items.len());
    let mut total: u64 = 0;
    for item in items {
        let dim = item.get("dim").and_then(Value::as_u64).ok_or_else(|| {
            ModelError::inference(format!("the model host answered `{item}` for an image"))
        })?;
        total = total.saturating_add(dim);
        dims.push(dim as usize);
    }
    if total.saturating_mul(4) != payload.len() as u64 {
        return Err(ModelError::inference(format!(
            "the model host sent {} bytes for {total} values",
            payload.len()
        )));
    }
    let mut values = payload
        .chunks_exact(4)
        .map(|bytes| f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
    Ok(dims
        .into_iter()
        .map(|dim| values.by_ref().take(dim).collect())
        .collect())
}

/// Decoded images go to the worker as they are: HWC `uint8` RGB.
struct Pixels;

impl Preprocess for Pixels {
    fn preprocess(&self, image: Image) -> Result<Input, ModelError> {
        Ok(Input {
            shape: [3, image.height as usize, image.width as usize],
            original_size: (image.width, image.height),
            data: InputData::Pixels(image.pixels),
        })
    }
}

impl Model for HostedModel {
    fn preprocessor(&self) -> Arc<dyn Preprocess> {
        Arc::new(Pixels)
    }

    fn predict_all(&mut self, inputs: &[Input]) -> Result<Vec<Prediction>, ModelError> {
        if self.prompts.is_some() {
            return Err(ModelError::unsupported(
                "this run has prompts: the samples of each batch must be named (`predict_samples`)"
                    .into(),
            ));
        }
        let (items, _) = self.run("predict", &[], inputs)?;
        items.iter().map(prediction).collect()
    }

    fn prompt_support(&self) -> PromptSupport {
        self.info.prompt_support()
    }

    /// Keeps the run's prompts: `setup` names their field to the worker,
    /// and each `predict` request carries its samples' labels.
    fn set_prompts(&mut self, prompts: Arc<Prompts>) -> Result<(), ModelError> {
        if let PromptSupport::Unsupported { why } = self.info.prompt_support() {
            return Err(ModelError::unsupported(why));
        }
        self.prompts = Some(prompts);
        Ok(())
    }

    fn predict_samples(
        &mut self,
        ids: &[i64],
        inputs: &[Input],
    ) -> Result<Vec<Prediction>, ModelError> {
        let (items, _) = self.run("predict", ids, inputs)?;
        items.iter().map(prediction).collect()
    }

    fn prefetch_samples(&mut self, ids: &[i64], inputs: &[&Input], embeddings: bool) {
        let op = if embeddings { "embed" } else { "predict" };
        let Some(inputs_id) = identity(inputs) else {
            // Not pixels: the call itself says so.
            return;
        };
        // A failed send (the worker died) shows in the call, which sends
        // again and reports why.
        if self.send(op, ids, inputs).is_ok() {
            self.pending.push_back(Pending {
                op,
                inputs: inputs_id,
            });
        }
    }

    /// Sends each batch ahead of its call: the worker runs FiftyOne's
    /// DataLoader work on it while the model runs the batch before.
    fn prefetches(&self) -> bool {
        true
    }

    fn prefetch(&mut self, inputs: &[&Input], embeddings: bool) {
        self.prefetch_samples(&[], inputs, embeddings);
    }

    fn ragged_batches(&self) -> bool {
        self.info.ragged_batches
    }

    fn has_logits(&self) -> bool {
        self.info.has_logits
    }

    fn set_store_logits(&mut self, store: bool) {
        self.store_logits = store && self.info.has_logits;
    }

    fn set_confidence_thresh(&mut self, threshold: f64) -> bool {
        self.threshold = Some(threshold);
        self.info.thresholds_itself
    }

    fn has_embeddings(&self) -> bool {
        self.info.has_embeddings
    }

    fn embed_all(&mut self, inputs: &[Input]) -> Result<Vec<Vec<f32>>, ModelError> {
        let (items, payload) = self.run("embed", &[], inputs)?;
        vectors(&items, &payload)
    }

    fn can_embed_prompts(&self) -> bool {
        self.info.can_embed_prompts
    }

    /// FiftyOne's `embed_prompts` in the host: the prompts go as JSON, the
    /// vectors come back as one float32 payload.
    fn embed_prompts(&mut self, prompts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        if !self.info.can_embed_prompts {
            return Err(ModelError::unsupported(format!(
                "`{}` does not embed text prompts (it is no FiftyOne `PromptMixin` that can)",
                self.info.class
            )));
        }
        self.drain("embed_prompts")?;
        let answer = self
            .worker
            .request(
                &json!({"op": "embed_prompts", "prompts": prompts}),
                &[],
                "embed_prompts",
            )
            .map_err(fatal)?;
        let (items, payload) = items_of(answer.header, answer.payload, prompts.len())?;
        vectors(&items, &payload)
    }

    /// Sets `store_logits` and the threshold, then enters the model's
    /// context manager (once for the run, as FiftyOne's `apply_model`).
    fn setup(&mut self) -> Result<(), ModelError> {
        let request = json!({
            "op": "setup",
            "store_logits": self.store_logits,
            "confidence_thresh": self.threshold,
            "prompt_field": self.prompts.as_ref().map(|prompts| prompts.field.as_str()),
        });
        self.drain("setup")
            .map_err(|err| ModelError::config(err.to_string()))?;
        let answer = self
            .worker
            .request(&request, &[], "setup")
            .map_err(|err| ModelError::config(err.to_string()))?;
        if answer.header.get("ok").and_then(Value::as_bool) != Some(true) {
            return Err(ModelError::config(python_error(&answer.header).to_string()));
        }
        Ok(())
    }

    /// Leaves the model's context manager; logs where the host's time went
    /// (`ZOO_LOG=zoo_python_host=info`).
    fn teardown(&mut self) {
        let timing = *self.timing;
        tracing::info!(
            model = %self.worker.model,
            requests = timing.requests,
            sent_ahead = timing.sent_ahead,
            request_seconds = timing.request_seconds,
            feed_seconds = timing.feed_seconds,
            feed_wait_seconds = timing.feed_wait_seconds,
            model_seconds = timing.model_seconds,
            boundary_seconds = timing.boundary_seconds,
            "model host timing"
        );
        if let Err(err) = self.drain("teardown") {
            tracing::warn!(model = %self.worker.model, "reading the answers to unused batches failed: {err}");
        }
        if let Err(err) = self
            .worker
            .request(&json!({"op": "teardown"}), &[], "teardown")
        {
            tracing::warn!(model = %self.worker.model, "leaving the model's context failed: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// JSON as a hostile worker could answer: the keys zoo reads, with any
    /// values.
    fn answer_json() -> impl Strategy<Value = Value> {
        let words = prop::sample::select(vec![
            "ok",
            "items",
            "error",
            "traceback",
            "label",
            "map",
            "none",
            "dim",
            "_cls",
            "Classification",
            "Detections",
            "detections",
            "confidence",
            "label",
            "$numberDouble",
            "NaN",
            "a.b",
            "",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(|n| json!(n)),
            any::<i32>().prop_map(|n| json!(n)),
            (0.0..1.0f64).prop_map(|n| json!(n)),
            words.clone().prop_map(|word| json!(word)),
        ];
        leaf.prop_recursive(5, 64, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((words.clone(), inner), 0..5).prop_map(|pairs| {
                    Value::Object(
                        pairs
                            .into_iter()
                            .map(|(key, value)| (key.to_owned(), value))
                            .collect(),
                    )
                }),
            ]
        })
    }

    fn clean(error: &ModelError) -> bool {
        !error.to_string().is_empty()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Whatever a worker answers, reading it gives labels or a clean
        /// error, never a panic.
        #[test]
        fn any_answer_is_predictions_or_a_clean_error(
            header in answer_json(),
            items in prop::collection::vec(answer_json(), 0..4),
            count in 0..4usize,
            payload in prop::collection::vec(any::<u8>(), 0..64),
            ok in any::<bool>(),
        ) {
            for header in [header, json!({"ok": ok, "items": items})] {
                match items_of(header, payload.clone(), count) {
                    Ok((items, payload)) => {
                        prop_assert_eq!(items.len(), count);
                        for item in &items {
                            if let Err(error) = prediction(item) {
                                prop_assert!(clean(&error));
                            }
                        }
                        match vectors(&items, &payload) {
                            Ok(vectors) => {
                                let values: usize = vectors.iter().map(Vec::len).sum();
                                prop_assert_eq!(values * 4, payload.len());
                            }
                            Err(error) => prop_assert!(clean(&error)),
                        }
                    }
                    Err(error) => prop_assert!(clean(&error)),
                }
            }
        }
    }

    #[test]
    fn embedding_sizes_that_overflow_are_refused() {
        let items = [json!({"dim": u64::MAX}), json!({"dim": u64::MAX})];
        let error = vectors(&items, &[0; 8]).unwrap_err();
        assert!(error.to_string().contains("sent 8 bytes"), "{error}");
    }
}
