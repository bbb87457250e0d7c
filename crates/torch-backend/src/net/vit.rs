//! Vision-transformer building blocks shared by the transformer families
//! (DINOv2 in `dinov2.rs`): layer norm, multi-head self-attention through
//! libtorch's fused `scaled_dot_product_attention`, the feed-forward
//! networks and pre-norm blocks with optional LayerScale.
//!
//! Parameter names are given by the caller's `nn::Path`, so each family
//! keeps its checkpoints' own key layout. Every forward is fallible
//! ([`Forward`]).

use tch::nn::{self, Init};
use tch::{TchError, Tensor};

use crate::net::layers::{Forward, linear};

/// `nn.LayerNorm(dim, eps)`: `weight` and `bias` under its path.
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    dim: i64,
    eps: f64,
}

impl LayerNorm {
    /// A layer norm over the last `dim` features.
    pub(crate) fn new(path: nn::Path<'_>, dim: i64, eps: f64) -> LayerNorm {
        LayerNorm {
            weight: path.var("weight", &[dim], Init::Const(1.0)),
            bias: path.var("bias", &[dim], Init::Const(0.0)),
            dim,
            eps,
        }
    }
}

impl Forward for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        xs.f_layer_norm(
            [self.dim],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )
    }
}

/// Multi-head self-attention with a fused `qkv` projection (timm's and
/// DINOv2's `Attention`): `qkv` then `proj` under its path.
pub(crate) struct Attention {
    qkv: nn::Linear,
    proj: nn::Linear,
    heads: i64,
}

impl Attention {
    /// Attention over `dim` features in `heads` heads.
    pub(crate) fn new(path: nn::Path<'_>, dim: i64, heads: i64) -> Attention {
        Attention {
            qkv: linear(&path / "qkv", dim, 3 * dim),
            proj: linear(&path / "proj", dim, dim),
            heads,
        }
    }
}

impl Forward for Attention {
    /// `qkv(x).reshape(B, N, 3, heads, C // heads)`, each of q, k, v as
    /// `[B, heads, N, C // heads]`, libtorch's `scaled_dot_product_attention`
    /// (scale `1 / sqrt(C // heads)`), back to `[B, N, C]`, then `proj`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let size = xs.size();
        let [batch, tokens, channels] = size[..] else {
            return Err(TchError::Shape(format!(
                "attention takes [batch, tokens, channels], got {size:?}"
            )));
        };
        if self.heads <= 0 || channels % self.heads != 0 {
            return Err(TchError::Shape(format!(
                "{channels} channels do not split into {} heads",
                self.heads
            )));
        }
        let qkv = self
            .qkv
            .forward(xs)?
            .f_reshape([batch, tokens, 3, self.heads, channels / self.heads])?
            .f_permute([2, 0, 3, 1, 4])?;
        let (q, k, v) = (qkv.f_get(0)?, qkv.f_get(1)?, qkv.f_get(2)?);
        let attended = Tensor::f_scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<&Tensor>,
            0.0,
            false,
            None::<f64>,
            false,
        )?;
        let merged = attended
            .f_transpose(1, 2)?
            .f_contiguous()?
            .f_view([batch, tokens, channels])?;
        self.proj.forward(&merged)
    }
}

/// The feed-forward network of a block.
pub(crate) enum FeedForward {
    /// `fc1`, exact GELU, `fc2` (timm's `Mlp`).
    Mlp { fc1: nn::Linear, fc2: nn::Linear },
    /// `w12` (both halves at once), `silu(x1) * x2`, `w3` (DINOv2's
    /// `SwiGLUFFN`, which `SwiGLUFFNFused` becomes without xFormers).
    SwiGlu { w12: nn::Linear, w3: nn::Linear },
}

impl FeedForward {
    /// `Mlp(dim, hidden)` under `path`.
    pub(crate) fn mlp(path: nn::Path<'_>, dim: i64, hidden: i64) -> FeedForward {
        FeedForward::Mlp {
            fc1: linear(&path / "fc1", dim, hidden),
            fc2: linear(&path / "fc2", hidden, dim),
        }
    }

    /// `SwiGLUFFNFused(dim, hidden)` under `path`: its hidden width is
    /// `(int(hidden * 2 / 3) + 7) // 8 * 8`.
    pub(crate) fn swiglu_fused(path: nn::Path<'_>, dim: i64, hidden: i64) -> FeedForward {
        let hidden = (hidden * 2 / 3 + 7) / 8 * 8;
        FeedForward::SwiGlu {
            w12: linear(&path / "w12", dim, 2 * hidden),
            w3: linear(&path / "w3", hidden, dim),
        }
    }
}

impl Forward for FeedForward {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        match self {
            FeedForward::Mlp { fc1, fc2 } => fc2.forward(&fc1.forward(xs)?.f_gelu("none")?),
            FeedForward::SwiGlu { w12, w3 } => {
                let both = w12.forward(xs)?;
                let halves = both.f_chunk(2, -1)?;
                let [x1, x2] = &halves[..] else {
                    return Err(TchError::Shape(format!(
                        "`w12` gave {:?}, which does not split in two halves",
                        both.size()
                    )));
                };
                w3.forward(&x1.f_silu()?.f_mul(x2)?)
            }
        }
    }
}

/// A pre-norm transformer block: `x + ls1(attn(norm1(x)))`, then
/// `x + ls2(mlp(norm2(x)))`; `ls1`/`ls2` are LayerScale's `gamma` when the
/// block has them.
pub(crate) struct Block {
    norm1: LayerNorm,
    attention: Attention,
    scale1: Option<Tensor>,
    norm2: LayerNorm,
    feed_forward: FeedForward,
    scale2: Option<Tensor>,
}

/// How a [`Block`] is built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockShape {
    /// Features per token.
    pub(crate) dim: i64,
    /// Attention heads.
    pub(crate) heads: i64,
    /// The feed-forward network's hidden width before any adjustment
    /// (`int(dim * mlp_ratio)`).
    pub(crate) hidden: i64,
    /// The layer norms' epsilon.
    pub(crate) eps: f64,
    /// Whether the block has LayerScale (`ls1.gamma`, `ls2.gamma`).
    pub(crate) layer_scale: bool,
    /// Whether the feed-forward network is SwiGLU (else `Mlp` with GELU).
    pub(crate) swiglu: bool,
}

impl Block {
    /// A block with DINOv2's parameter names under `path`.
    pub(crate) fn new(path: nn::Path<'_>, shape: BlockShape) -> Block {
        let gamma = |name: &str| {
            shape
                .layer_scale
                .then(|| (&path / name).var("gamma", &[shape.dim], Init::Const(1.0)))
        };
        let feed_forward = if shape.swiglu {
            FeedForward::swiglu_fused(&path / "mlp", shape.dim, shape.hidden)
        } else {
            FeedForward::mlp(&path / "mlp", shape.dim, shape.hidden)
        };
        Block {
            norm1: LayerNorm::new(&path / "norm1", shape.dim, shape.eps),
            attention: Attention::new(&path / "attn", shape.dim, shape.heads),
            scale1: gamma("ls1"),
            norm2: LayerNorm::new(&path / "norm2", shape.dim, shape.eps),
            feed_forward,
            scale2: gamma("ls2"),
        }
    }
}

impl Forward for Block {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let scaled = |ys: Tensor, scale: &Option<Tensor>| match scale {
            Some(gamma) => ys.f_mul(gamma),
            None => Ok(ys),
        };
        let attended = self.attention.forward(&self.norm1.forward(xs)?)?;
        let xs = xs.f_add(&scaled(attended, &self.scale1)?)?;
        let fed = self.feed_forward.forward(&self.norm2.forward(&xs)?)?;
        xs.f_add(&scaled(fed, &self.scale2)?)
    }
}
