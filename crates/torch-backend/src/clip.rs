//! CLIP (OpenAI's ViT models, as FiftyOne's vendored
//! `fiftyone/utils/clip/model.py` builds them): the image encoder
//! (`encode_image`, FiftyOne's `embeddings_layer: visual`), the text
//! encoder (`encode_text`) and the zero-shot logits of
//! `TorchCLIPModel._get_class_logits`.
//!
//! Sizes are inferred from the state dict exactly as `build_model` infers
//! them (`visual.conv1.weight` gives the width and patch, the position
//! embeddings the resolution, `ln_final.weight` the text width, heads are
//! `width // 64`), and parameter names are the state dict's, so the tensors
//! of OpenAI's TorchScript archives (`ViT-B-32.pt`; read by zoo's own
//! unpickler, no code run) load as they are, in `f32` as FiftyOne's
//! `.float()` runs them. ResNet CLIPs (`ModifiedResNet`) are not built.

use std::collections::BTreeMap;

use tch::nn::{self, Init};
use tch::{Kind, TchError, Tensor};

use crate::net::layers::{Conv, Forward, linear};
use crate::net::vit::LayerNorm;

/// The sizes of a CLIP, as `build_model` reads them off a state dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClipConfig {
    /// The joint embedding size (`text_projection.shape[1]`).
    pub(crate) embed_dim: i64,
    /// Input side in pixels (`patch * grid`).
    pub(crate) image_resolution: i64,
    /// Vision transformer blocks.
    pub(crate) vision_layers: i64,
    /// Vision transformer width.
    pub(crate) vision_width: i64,
    /// Pixels per patch side.
    pub(crate) vision_patch: i64,
    /// Text tokens (77 for OpenAI's models).
    pub(crate) context_length: i64,
    /// Token vocabulary size.
    pub(crate) vocab_size: i64,
    /// Text transformer width.
    pub(crate) text_width: i64,
    /// Text transformer blocks.
    pub(crate) text_layers: i64,
}

/// The state-dict entries `build_model` drops (TorchScript attributes).
const DROPPED: [&str; 3] = ["input_resolution", "context_length", "vocab_size"];

impl ClipConfig {
    /// `build_model`'s inference from `shapes` (name to shape), or an error
    /// naming the missing or malformed entry.
    pub(crate) fn infer(shapes: &BTreeMap<String, Vec<i64>>) -> Result<ClipConfig, String> {
        let shape = |name: &str, rank: usize| -> Result<&[i64], String> {
            match shapes.get(name) {
                Some(shape) if shape.len() == rank => Ok(shape),
                Some(shape) => Err(format!(
                    "`{name}` has shape {shape:?}, not {rank} dimensions"
                )),
                None => Err(format!(
                    "no `{name}`: not a ViT CLIP state dict (ResNet CLIPs are not built natively)"
                )),
            }
        };
        let conv = shape("visual.conv1.weight", 4)?;
        let blocks = |prefix: &str| {
            shapes
                .keys()
                .filter_map(|key| key.strip_prefix(prefix))
                .filter_map(|rest| rest.split('.').next())
                .filter_map(|index| index.parse::<i64>().ok())
                .collect::<std::collections::BTreeSet<_>>()
                .len() as i64
        };
        let positions = shape("visual.positional_embedding", 2)?[0];
        let grid = ((positions - 1) as f64).sqrt().round() as i64;
        let config = ClipConfig {
            embed_dim: shape("text_projection", 2)?[1],
            image_resolution: conv[3] * grid,
            vision_layers: blocks("visual.transformer.resblocks."),
            vision_width: conv[0],
            vision_patch: conv[3],
            context_length: shape("positional_embedding", 2)?[0],
            vocab_size: shape("token_embedding.weight", 2)?[0],
            text_width: shape("ln_final.weight", 1)?[0],
            text_layers: blocks("transformer.resblocks."),
        };
        if grid * grid + 1 != positions {
            return Err(format!(
                "`visual.positional_embedding` has {positions} rows, not a square grid plus one"
            ));
        }
        for (what, width) in [("vision", config.vision_width), ("text", config.text_width)] {
            if width < 64 || width % 64 != 0 {
                return Err(format!(
                    "the {what} width {width} is not a multiple of CLIP's 64-wide heads"
                ));
            }
        }
        Ok(config)
    }
}

/// The tensors of a CLIP state dict that `build_model` loads (its int
/// attributes dropped).
pub(crate) fn clip_tensors(tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    tensors
        .into_iter()
        .filter(|(name, _)| !DROPPED.contains(&name.as_str()))
        .collect()
}

/// `nn.MultiheadAttention` (self-attention, no `bias_k`/`bias_v`):
/// `in_proj_weight`, `in_proj_bias`, `out_proj` under its path.
struct MultiheadAttention {
    in_weight: Tensor,
    in_bias: Tensor,
    out: nn::Linear,
    heads: i64,
    causal: bool,
}

impl MultiheadAttention {
    fn new(path: nn::Path<'_>, width: i64, heads: i64, causal: bool) -> MultiheadAttention {
        MultiheadAttention {
            in_weight: path.var("in_proj_weight", &[3 * width, width], Init::Const(0.0)),
            in_bias: path.var("in_proj_bias", &[3 * width], Init::Const(0.0)),
            out: linear(&path / "out_proj", width, width),
            heads,
            causal,
        }
    }
}

impl Forward for MultiheadAttention {
    /// Batch-first `[B, L, D]`: the packed projection, heads of `D / heads`,
    /// libtorch's `scaled_dot_product_attention` (causal for the text
    /// encoder, which `build_attention_mask`'s upper `-inf` triangle is),
    /// then `out_proj`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let size = xs.size();
        let [batch, tokens, width] = size[..] else {
            return Err(TchError::Shape(format!(
                "attention takes [batch, tokens, width], got {size:?}"
            )));
        };
        let head = width / self.heads;
        let qkv = xs
            .f_linear(&self.in_weight, Some(&self.in_bias))?
            .f_reshape([batch, tokens, 3, self.heads, head])?
            .f_permute([2, 0, 3, 1, 4])?;
        let attended = Tensor::f_scaled_dot_product_attention(
            &qkv.f_get(0)?,
            &qkv.f_get(1)?,
            &qkv.f_get(2)?,
            None::<&Tensor>,
            0.0,
            self.causal,
            None::<f64>,
            false,
        )?;
        let merged = attended
            .f_transpose(1, 2)?
            .f_contiguous()?
            .f_view([batch, tokens, width])?;
        self.out.forward(&merged)
    }
}

/// `ResidualAttentionBlock`: `x + attn(ln_1(x))`, then
/// `x + c_proj(quick_gelu(c_fc(ln_2(x))))`.
struct ResidualBlock {
    ln_1: LayerNorm,
    attention: MultiheadAttention,
    ln_2: LayerNorm,
    c_fc: nn::Linear,
    c_proj: nn::Linear,
}

impl ResidualBlock {
    fn new(path: nn::Path<'_>, width: i64, causal: bool) -> ResidualBlock {
        ResidualBlock {
            ln_1: LayerNorm::new(&path / "ln_1", width, 1e-5),
            attention: MultiheadAttention::new(&path / "attn", width, width / 64, causal),
            ln_2: LayerNorm::new(&path / "ln_2", width, 1e-5),
            c_fc: linear(&path / "mlp" / "c_fc", width, 4 * width),
            c_proj: linear(&path / "mlp" / "c_proj", 4 * width, width),
        }
    }
}

/// `QuickGELU`: `x * sigmoid(1.702 * x)`.
fn quick_gelu(xs: &Tensor) -> Result<Tensor, TchError> {
    xs.f_mul(&xs.f_mul_scalar(1.702)?.f_sigmoid()?)
}

impl Forward for ResidualBlock {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let xs = xs.f_add(&self.attention.forward(&self.ln_1.forward(xs)?)?)?;
        let hidden = quick_gelu(&self.c_fc.forward(&self.ln_2.forward(&xs)?)?)?;
        xs.f_add(&self.c_proj.forward(&hidden)?)
    }
}

fn transformer(path: nn::Path<'_>, width: i64, layers: i64, causal: bool) -> Vec<ResidualBlock> {
    (0..layers)
        .map(|index| ResidualBlock::new(&path / "resblocks" / index, width, causal))
        .collect()
}

/// A CLIP with both encoders and its logit scale.
pub(crate) struct Clip {
    config: ClipConfig,
    conv1: Conv,
    class_embedding: Tensor,
    visual_positions: Tensor,
    ln_pre: LayerNorm,
    visual_blocks: Vec<ResidualBlock>,
    ln_post: LayerNorm,
    proj: Tensor,
    token_embedding: Tensor,
    positions: Tensor,
    text_blocks: Vec<ResidualBlock>,
    ln_final: LayerNorm,
    text_projection: Tensor,
    logit_scale: Tensor,
}

impl Clip {
    /// CLIP `config` under `root`, with the state dict's names.
    pub(crate) fn new(root: &nn::Path<'_>, config: ClipConfig) -> Clip {
        let visual = root / "visual";
        let (width, text_width) = (config.vision_width, config.text_width);
        let grid = config.image_resolution / config.vision_patch;
        let zeros = Init::Const(0.0);
        let conv1 = (&visual / "conv1").var(
            "weight",
            &[width, 3, config.vision_patch, config.vision_patch],
            zeros,
        );
        Clip {
            config,
            conv1: Conv::from_parts(conv1, None, config.vision_patch, 0, 1),
            class_embedding: visual.var("class_embedding", &[width], zeros),
            visual_positions: visual.var("positional_embedding", &[grid * grid + 1, width], zeros),
            ln_pre: LayerNorm::new(&visual / "ln_pre", width, 1e-5),
            visual_blocks: transformer(&visual / "transformer", width, config.vision_layers, false),
            ln_post: LayerNorm::new(&visual / "ln_post", width, 1e-5),
            proj: visual.var("proj", &[width, config.embed_dim], zeros),
            token_embedding: (root / "token_embedding").var(
                "weight",
                &[config.vocab_size, text_width],
                zeros,
            ),
            positions: root.var(
                "positional_embedding",
                &[config.context_length, text_width],
                zeros,
            ),
            text_blocks: transformer(root / "transformer", text_width, config.text_layers, true),
            ln_final: LayerNorm::new(root / "ln_final", text_width, 1e-5),
            text_projection: root.var("text_projection", &[text_width, config.embed_dim], zeros),
            logit_scale: root.var("logit_scale", &[], zeros),
        }
    }

    /// The sizes this CLIP was built with.
    pub(crate) fn config(&self) -> ClipConfig {
        self.config
    }

    /// `encode_image`: `[B, 3, R, R]` to `[B, embed_dim]` (unnormalised).
    pub(crate) fn encode_image(&self, images: &Tensor) -> Result<Tensor, TchError> {
        let size = images.size();
        let side = self.config.image_resolution;
        if size.len() != 4 || size[2] != side || size[3] != side {
            return Err(TchError::Shape(format!(
                "CLIP's image encoder takes [batch, 3, {side}, {side}], got {size:?}; \
                 set `image_size` to [{side}, {side}] in the model config"
            )));
        }
        let batch = size[0];
        let patches = self
            .conv1
            .forward(images)?
            .f_flatten(2, -1)?
            .f_permute([0, 2, 1])?;
        let class = self
            .class_embedding
            .f_to_kind(patches.kind())?
            .f_view([1, 1, -1])?
            .f_expand([batch, 1, -1], false)?;
        let mut tokens = Tensor::f_cat(&[class, patches], 1)?
            .f_add(&self.visual_positions.f_to_kind(images.kind())?)?;
        tokens = self.ln_pre.forward(&tokens)?;
        for block in &self.visual_blocks {
            tokens = block.forward(&tokens)?;
        }
        self.ln_post
            .forward(&tokens.f_select(1, 0)?)?
            .f_matmul(&self.proj)
    }

    /// `encode_text`: token ids `[B, context_length]` to `[B, embed_dim]`,
    /// read at each row's highest id (`text.argmax(dim=-1)`: the
    /// end-of-text token).
    pub(crate) fn encode_text(&self, tokens: &Tensor) -> Result<Tensor, TchError> {
        let size = tokens.size();
        let context = self.config.context_length;
        if size.len() != 2 || size[1] != context {
            return Err(TchError::Shape(format!(
                "CLIP's text encoder takes [batch, {context}] token ids, got {size:?}"
            )));
        }
        let ids = tokens.f_to_kind(Kind::Int64)?;
        let mut xs = Tensor::f_embedding(&self.token_embedding, &ids, -1, false, false)?
            .f_add(&self.positions)?;
        for block in &self.text_blocks {
            xs = block.forward(&xs)?;
        }
        let xs = self.ln_final.forward(&xs)?;
        let rows = Tensor::f_arange(size[0], (Kind::Int64, xs.device()))?;
        let ends = ids.f_argmax(-1, false)?;
        xs.f_index(&[Some(rows), Some(ends)])?
            .f_matmul(&self.text_projection)
    }

    /// `_get_class_logits`' `logits_per_image`: both sides L2-normalised,
    /// scaled by `exp(logit_scale)`; `[images, texts]`.
    pub(crate) fn logits(
        &self,
        image_features: &Tensor,
        text_features: &Tensor,
    ) -> Result<Tensor, TchError> {
        let normalise = |xs: &Tensor| -> Result<Tensor, TchError> {
            xs.f_div(&xs.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?)
        };
        let images = normalise(image_features)?;
        let texts = normalise(text_features)?;
        images
            .f_mul(&self.logit_scale.f_exp()?)?
            .f_matmul(&texts.f_transpose(0, 1)?)
    }
}

/// A CLIP read from a state dict file: OpenAI's TorchScript archives
/// (`ViT-B-32.pt`, half-precision tensors), a `torch.save` state dict or
/// safetensors, run in `f32` on the CPU as FiftyOne's `TorchCLIPModel`
/// runs it after `build_model(...).float()`.
pub struct ClipModel {
    clip: Clip,
    /// Owns the variables the network's tensors share.
    _store: nn::VarStore,
}

impl std::fmt::Debug for ClipModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipModel")
            .field("config", &self.clip.config)
            .finish()
    }
}

fn inference(error: TchError) -> zoo_model_core::ModelError {
    zoo_model_core::ModelError::inference(error.to_string())
}

/// How many prompts the text encoder runs at once.
const TEXT_ROWS_PER_PASS: usize = 256;

fn rows(tensor: &Tensor) -> Result<Vec<Vec<f32>>, zoo_model_core::ModelError> {
    let tensor = tensor
        .f_to_kind(Kind::Float)
        .and_then(|tensor| tensor.f_contiguous())
        .map_err(inference)?;
    let size = tensor.size();
    let columns = size.get(1).copied().unwrap_or(0).max(1) as usize;
    let values =
        Vec::<f32>::try_from(tensor.f_flatten(0, -1).map_err(inference)?).map_err(inference)?;
    Ok(values.chunks(columns).map(<[f32]>::to_vec).collect())
}

impl ClipModel {
    /// Reads the weights at `path`, infers the sizes as FiftyOne's
    /// `build_model` does and loads every tensor (all must fit).
    pub fn load(path: &std::path::Path) -> Result<ClipModel, crate::WeightsError> {
        let tensors = clip_tensors(crate::read_named_tensors(path)?);
        let shapes: BTreeMap<String, Vec<i64>> = tensors
            .iter()
            .map(|(name, tensor)| (name.clone(), tensor.size()))
            .collect();
        let config =
            ClipConfig::infer(&shapes).map_err(|message| crate::WeightsError::Mismatch {
                path: path.display().to_string(),
                message,
            })?;
        let mut store = nn::VarStore::new(tch::Device::Cpu);
        let clip = Clip::new(&store.root(), config);
        crate::load_into(&mut store, tensors, path)?;
        Ok(ClipModel {
            clip,
            _store: store,
        })
    }

    /// The text encoder's context length (token rows are padded to it).
    pub fn context_length(&self) -> usize {
        self.clip.config().context_length as usize
    }

    /// The token vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.clip.config().vocab_size as usize
    }

    /// The image side the encoder takes (FiftyOne's `image_size`).
    pub fn image_resolution(&self) -> u32 {
        self.clip.config().image_resolution as u32
    }

    /// `encode_image` of preprocessed `inputs` (CHW `f32` values of the
    /// encoder's resolution): one unnormalised embedding per input.
    pub fn embed_images(
        &self,
        inputs: &[zoo_model_core::Input],
    ) -> Result<Vec<Vec<f32>>, zoo_model_core::ModelError> {
        let mut images = Vec::with_capacity(inputs.len());
        for input in inputs {
            let values = input.data.values().ok_or_else(|| {
                zoo_model_core::ModelError::inference(
                    "CLIP takes normalised values, not pixels".into(),
                )
            })?;
            let [c, h, w] = input.shape.map(|side| side as i64);
            images.push(
                Tensor::f_from_slice(values)
                    .and_then(|tensor| tensor.f_view([c, h, w]))
                    .map_err(inference)?,
            );
        }
        let batch = Tensor::f_stack(&images, 0).map_err(inference)?;
        let features = tch::no_grad(|| self.clip.encode_image(&batch)).map_err(inference)?;
        rows(&features)
    }

    /// `encode_text` of token id rows (each with its start and end tokens,
    /// at most the context length; zero-padded here as FiftyOne pads).
    pub fn embed_token_rows(
        &self,
        token_rows: &[Vec<i64>],
    ) -> Result<Vec<Vec<f32>>, zoo_model_core::ModelError> {
        // A few prompts at a time: the text encoder's activations grow with
        // the rows (20,000 classes at once took 7.5 GB), its rows do not
        // depend on each other.
        let mut features = Vec::with_capacity(token_rows.len());
        for chunk in token_rows.chunks(TEXT_ROWS_PER_PASS) {
            features.extend(self.embed_token_chunk(chunk)?);
        }
        Ok(features)
    }

    /// [`ClipModel::embed_token_rows`] of at most [`TEXT_ROWS_PER_PASS`] rows.
    fn embed_token_chunk(
        &self,
        token_rows: &[Vec<i64>],
    ) -> Result<Vec<Vec<f32>>, zoo_model_core::ModelError> {
        let context = self.context_length();
        let vocabulary = self.clip.config().vocab_size;
        let mut ids = vec![0i64; token_rows.len() * context];
        for (row, tokens) in token_rows.iter().enumerate() {
            if tokens.len() > context {
                return Err(zoo_model_core::ModelError::inference(format!(
                    "a prompt of {} tokens is longer than CLIP's context of {context}",
                    tokens.len()
                )));
            }
            if let Some(bad) = tokens.iter().find(|id| !(0..vocabulary).contains(*id)) {
                return Err(zoo_model_core::ModelError::inference(format!(
                    "token id `{bad}` is outside CLIP's vocabulary of {vocabulary}"
                )));
            }
            ids[row * context..row * context + tokens.len()].copy_from_slice(tokens);
        }
        let ids = Tensor::f_from_slice(&ids)
            .and_then(|tensor| tensor.f_view([token_rows.len() as i64, context as i64]))
            .map_err(inference)?;
        let features = tch::no_grad(|| self.clip.encode_text(&ids)).map_err(inference)?;
        rows(&features)
    }

    /// Zero-shot logits `[images][texts]` from unnormalised image and text
    /// embeddings, as `TorchCLIPModel._get_class_logits` computes them.
    pub fn logits(
        &self,
        images: &[Vec<f32>],
        texts: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, zoo_model_core::ModelError> {
        let matrix = |vectors: &[Vec<f32>]| -> Result<Tensor, zoo_model_core::ModelError> {
            let width = vectors.first().map_or(0, Vec::len) as i64;
            let flat: Vec<f32> = vectors.iter().flatten().copied().collect();
            Tensor::f_from_slice(&flat)
                .and_then(|tensor| tensor.f_view([vectors.len() as i64, width]))
                .map_err(inference)
        };
        let (images, texts) = (matrix(images)?, matrix(texts)?);
        let logits = tch::no_grad(|| self.clip.logits(&images, &texts)).map_err(inference)?;
        rows(&logits)
    }
}
