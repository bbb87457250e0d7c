//! DINOv2 (facebookresearch/dinov2's `DinoVisionTransformer`), as its
//! PyTorch Hub entrypoints build it: `dinov2_vits14`, `vitb14`, `vitl14`,
//! `vitg14` and their `_reg` variants (four register tokens).
//!
//! Parameter names are the hub checkpoints' (`cls_token`, `pos_embed`,
//! `register_tokens`, `mask_token`, `patch_embed.proj.*`,
//! `blocks.<i>.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.*,ls2.gamma}`,
//! `norm.*`), so a `*_pretrain.pth` file from `dl.fbaipublicfiles.com`
//! loads as it is. The network's output is what the hub model's `forward`
//! returns and FiftyOne's `embeddings_layer: head` reads: the normalised
//! class token (`head` is `nn.Identity`).
//!
//! Position embeddings are interpolated for other input sizes exactly as
//! `interpolate_pos_encoding` does: bicubic, with the historical `+0.1`
//! offset given as scale factors for the plain models, and antialiased to
//! the exact size for the `_reg` ones.

use tch::nn::{self, Init};
use tch::{Kind, TchError, Tensor};

use crate::net::Network;
use crate::net::layers::{Conv, Forward};
use crate::net::vit::{Block, BlockShape, LayerNorm};

/// The sizes of a `DinoVisionTransformer`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dinov2Config {
    /// Features per token (`embed_dim`).
    pub(crate) dim: i64,
    /// Blocks.
    pub(crate) depth: i64,
    /// Attention heads.
    pub(crate) heads: i64,
    /// Pixels per patch side.
    pub(crate) patch: i64,
    /// The training image side (`img_size`, 518 for the hub models): the
    /// position embeddings cover `(img_size / patch)^2` patches.
    pub(crate) image_size: i64,
    /// Register tokens.
    pub(crate) registers: i64,
    /// SwiGLU feed-forward networks (ViT-g) instead of GELU `Mlp`s.
    pub(crate) swiglu: bool,
    /// `interpolate_antialias`.
    pub(crate) antialias: bool,
    /// `interpolate_offset`.
    pub(crate) offset: f64,
}

impl Dinov2Config {
    /// The configuration the hub's entrypoint `name` builds.
    pub(crate) fn hub(name: &str) -> Option<Dinov2Config> {
        let (base, registers) = match name.strip_suffix("_reg") {
            Some(base) => (base, 4),
            None => (name, 0),
        };
        let (dim, depth, heads) = match base {
            "dinov2_vits14" => (384, 12, 6),
            "dinov2_vitb14" => (768, 12, 12),
            "dinov2_vitl14" => (1024, 24, 16),
            "dinov2_vitg14" => (1536, 40, 24),
            _ => return None,
        };
        Some(Dinov2Config {
            dim,
            depth,
            heads,
            patch: 14,
            image_size: 518,
            registers,
            swiglu: base == "dinov2_vitg14",
            antialias: registers > 0,
            offset: if registers > 0 { 0.0 } else { 0.1 },
        })
    }
}

/// A DINOv2 backbone: input `[B, 3, H, W]` (sides multiples of the patch),
/// output the normalised class token `[B, dim]`.
pub(crate) struct Dinov2 {
    config: Dinov2Config,
    patch_embed: Conv,
    cls_token: Tensor,
    pos_embed: Tensor,
    register_tokens: Option<Tensor>,
    blocks: Vec<Block>,
    norm: LayerNorm,
}

impl Dinov2 {
    /// The network under `root`, with the hub checkpoints' names.
    pub(crate) fn new(root: &nn::Path<'_>, config: Dinov2Config) -> Dinov2 {
        let dim = config.dim;
        let grid = config.image_size / config.patch;
        let patch_embed = Conv::new(
            root / "patch_embed" / "proj",
            3,
            dim,
            config.patch,
            config.patch,
            0,
        );
        let cls_token = root.var("cls_token", &[1, 1, dim], Init::Const(0.0));
        let pos_embed = root.var("pos_embed", &[1, grid * grid + 1, dim], Init::Const(0.0));
        let register_tokens = (config.registers > 0).then(|| {
            root.var(
                "register_tokens",
                &[1, config.registers, dim],
                Init::Const(0.0),
            )
        });
        // Read from the checkpoint, used only in training (masked tokens).
        let _mask_token = root.var("mask_token", &[1, dim], Init::Const(0.0));
        let shape = BlockShape {
            dim,
            heads: config.heads,
            hidden: dim * 4,
            eps: 1e-6,
            layer_scale: true,
            swiglu: config.swiglu,
        };
        let blocks = (0..config.depth)
            .map(|index| Block::new(root / "blocks" / index, shape))
            .collect();
        Dinov2 {
            config,
            patch_embed,
            cls_token,
            pos_embed,
            register_tokens,
            blocks,
            norm: LayerNorm::new(root / "norm", dim, 1e-6),
        }
    }

    /// `interpolate_pos_encoding` for an input of `height` x `width`
    /// pixels, in `kind`.
    fn position_embedding(&self, height: i64, width: i64, kind: Kind) -> Result<Tensor, TchError> {
        let config = &self.config;
        let total = self.pos_embed.size()[1] - 1;
        let (rows, columns) = (height / config.patch, width / config.patch);
        if rows * columns == total && height == width {
            return Ok(self.pos_embed.shallow_clone());
        }
        let grid = (total as f64).sqrt() as i64;
        let pos_embed = self.pos_embed.f_to_kind(Kind::Float)?;
        let class = pos_embed.f_narrow(1, 0, 1)?;
        let patches = pos_embed
            .f_narrow(1, 1, total)?
            .f_reshape([1, grid, grid, config.dim])?
            .f_permute([0, 3, 1, 2])?;
        let interpolated = if config.offset != 0.0 {
            // `scale_factor=(sx, sy)`: PyTorch sizes the output as
            // `floor(grid * scale)` and maps coordinates with the scales.
            let scale_rows = (rows as f64 + config.offset) / grid as f64;
            let scale_columns = (columns as f64 + config.offset) / grid as f64;
            let size = [
                (grid as f64 * scale_rows) as i64,
                (grid as f64 * scale_columns) as i64,
            ];
            if config.antialias {
                patches.f_internal_upsample_bicubic2d_aa(size, false, scale_rows, scale_columns)?
            } else {
                patches.f_upsample_bicubic2d(size, false, scale_rows, scale_columns)?
            }
        } else if config.antialias {
            patches.f_internal_upsample_bicubic2d_aa(
                [rows, columns],
                false,
                None::<f64>,
                None::<f64>,
            )?
        } else {
            patches.f_upsample_bicubic2d([rows, columns], false, None::<f64>, None::<f64>)?
        };
        let got = interpolated.size();
        if got[2..] != [rows, columns] {
            return Err(TchError::Shape(format!(
                "position embeddings interpolated to {:?}, not {rows}x{columns}",
                &got[2..]
            )));
        }
        let patches = interpolated
            .f_permute([0, 2, 3, 1])?
            .f_reshape([1, -1, config.dim])?;
        Tensor::f_cat(&[class, patches], 1)?.f_to_kind(kind)
    }
}

impl Forward for Dinov2 {
    /// `prepare_tokens_with_masks`, the blocks, `norm`, the class token.
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let size = xs.size();
        let [batch, _, height, width] = size[..] else {
            return Err(TchError::Shape(format!(
                "DINOv2 takes [batch, 3, height, width], got {size:?}"
            )));
        };
        let patch = self.config.patch;
        if height % patch != 0 || width % patch != 0 {
            return Err(TchError::Shape(format!(
                "DINOv2 takes sides that are multiples of {patch} pixels, got {width}x{height}; \
                 set `image_patch_size` in the model config"
            )));
        }
        let patches = self
            .patch_embed
            .forward(xs)?
            .f_flatten(2, -1)?
            .f_transpose(1, 2)?;
        let class = self.cls_token.f_expand([batch, -1, -1], false)?;
        let tokens = Tensor::f_cat(&[class, patches], 1)?;
        let tokens = tokens.f_add(&self.position_embedding(height, width, tokens.kind())?)?;
        let mut tokens = match &self.register_tokens {
            Some(registers) => Tensor::f_cat(
                &[
                    tokens.f_narrow(1, 0, 1)?,
                    registers.f_expand([batch, -1, -1], false)?,
                    tokens.f_narrow(1, 1, tokens.size()[1] - 1)?,
                ],
                1,
            )?,
            None => tokens,
        };
        for block in &self.blocks {
            tokens = block.forward(&tokens)?;
        }
        // Only the class token is returned: normalising it alone gives the
        // same numbers (layer norm is per token).
        self.norm.forward(&tokens.f_select(1, 0)?)
    }
}

/// DINOv2 `config` under `root` as a [`Network`] whose features are the
/// hub model's output (`embeddings_layer: head`, `nn.Identity`).
pub(crate) fn network(root: &nn::Path<'_>, config: Dinov2Config) -> Network {
    Network::new(
        Dinov2::new(root, config),
        crate::net::layers::Sequence::default(),
    )
}

/// The hub entrypoint `name` (`dinov2_vits14`, ...; a `hubconf` path's last
/// part) as a [`Network`], or `None` for another name.
pub(crate) fn build(name: &str, root: &nn::Path<'_>) -> Option<Network> {
    Dinov2Config::hub(name).map(|config| network(root, config))
}

#[cfg(test)]
mod tests {
    use tch::nn::VarStore;
    use tch::{Device, Tensor};

    use super::{Dinov2, Dinov2Config};
    use crate::net::layers::Forward;

    /// `xtask/fixtures/torch_oracle.py`'s `formula_weights`.
    fn formula(name: &str, shape: &[i64]) -> Tensor {
        let n: i64 = shape.iter().product();
        let base: u64 = name.bytes().map(u64::from).sum::<u64>() % 1000;
        let values: Vec<f32> = (0..n as u64)
            .map(|k| {
                let s = (((k + base) as f64) * 0.618).sin();
                let value = if shape.len() == 1 && name.ends_with("weight") {
                    1.0 + 0.1 * s
                } else if shape.len() == 1 {
                    0.1 * s
                } else {
                    s * (1.0 / ((n / shape[0]) as f64).sqrt())
                };
                value as f32
            })
            .collect();
        Tensor::from_slice(&values).view(shape)
    }

    /// The oracle is the hub's own `DinoVisionTransformer` (dim 64, depth 2,
    /// 4 heads, `ffn_layer="swiglufused"` as ViT-g's, trained at 56x56) on
    /// the 224x224 fixture as FiftyOne preprocesses it
    /// (`cargo xtask dinov2-oracle`): same state dict layout and the same
    /// class token within 1e-4, with the position embeddings interpolated
    /// from 4x4 to 16x16.
    #[test]
    fn swiglu_dinov2_matches_the_hub_module() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let oracle: serde_json::Value =
            serde_json::from_slice(&fs_err::read(fixtures.join("dinov2_oracle.json")).unwrap())
                .unwrap();
        let tiny = &oracle["swiglu_tiny"];
        let config = Dinov2Config {
            dim: 64,
            depth: 2,
            heads: 4,
            patch: 14,
            image_size: 56,
            registers: 0,
            swiglu: true,
            antialias: false,
            offset: 0.1,
        };
        let store = VarStore::new(Device::Cpu);
        let network = Dinov2::new(&store.root(), config);
        let mut variables = store.variables();
        let layout = tiny["layout"].as_array().unwrap();
        assert_eq!(layout.len(), variables.len());
        tch::no_grad(|| {
            for pair in layout {
                let name = pair[0].as_str().unwrap();
                let shape: Vec<i64> = pair[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|side| side.as_i64().unwrap())
                    .collect();
                let variable = variables.get_mut(name).unwrap();
                assert_eq!(variable.size(), shape, "{name}");
                variable.copy_(&formula(name, &shape));
            }
        });
        let decoded = image::open(fixtures.join("dinov2/square.png"))
            .unwrap()
            .to_rgb8();
        let pixels: Vec<f32> = decoded
            .as_raw()
            .iter()
            .map(|value| f32::from(*value) / 255.0)
            .collect();
        let input = Tensor::from_slice(&pixels)
            .view([224, 224, 3])
            .permute([2, 0, 1])
            .unsqueeze(0)
            .contiguous();
        let output = tch::no_grad(|| network.forward(&input)).unwrap();
        let ours = Vec::<f32>::try_from(output.flatten(0, -1)).unwrap();
        let theirs: Vec<f32> = tiny["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|value| value.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(ours.len(), theirs.len());
        let difference = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(difference <= 1e-4, "max |diff| {difference}");
    }

    /// Every hub entrypoint's state dict (names and shapes, as the hub
    /// model's `state_dict()` gives them and its `*_pretrain.pth` holds
    /// them for `load_state_dict(strict=True)`; oracle: `cargo xtask
    /// dinov2-oracle`), ViT-g's SwiGLU and the registers included. Blocks
    /// are all alike, so the networks are built with two of them (ViT-g
    /// whole is 4.4 GB) and the hub's block count is checked apart.
    #[test]
    fn dinov2_layouts_are_the_hub_state_dicts_for_all_eight() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let oracle: serde_json::Value =
            serde_json::from_slice(&fs_err::read(fixtures.join("dinov2_oracle.json")).unwrap())
                .unwrap();
        let layouts = oracle["layouts"].as_object().unwrap();
        let models = crate::families::find("dinov2_vits14").unwrap().names;
        assert_eq!(layouts.len(), models.len());
        for &name in models {
            let full = Dinov2Config::hub(name).unwrap();
            let mut want = Vec::new();
            let mut blocks = 0;
            for pair in layouts[name].as_array().unwrap() {
                let key = pair[0].as_str().unwrap().to_owned();
                let shape: Vec<i64> = pair[1]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|side| side.as_i64().unwrap())
                    .collect();
                if let Some(rest) = key.strip_prefix("blocks.") {
                    let index: i64 = rest.split('.').next().unwrap().parse().unwrap();
                    blocks = blocks.max(index + 1);
                    if index >= 2 {
                        continue;
                    }
                }
                want.push((key, shape));
            }
            assert_eq!(blocks, full.depth, "{name}");
            let store = VarStore::new(Device::Cpu);
            let _network = Dinov2::new(&store.root(), Dinov2Config { depth: 2, ..full });
            let mut got: Vec<(String, Vec<i64>)> = store
                .variables()
                .into_iter()
                .map(|(key, tensor)| (key, tensor.size()))
                .collect();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{name}");
        }
    }

    /// An input whose sides are not multiples of the patch is an error
    /// naming the fix, not a panic (the hub asserts).
    #[test]
    fn a_side_off_the_patch_grid_is_an_error() {
        let store = VarStore::new(Device::Cpu);
        let config = Dinov2Config {
            depth: 1,
            ..Dinov2Config::hub("dinov2_vits14").unwrap()
        };
        let network = Dinov2::new(&store.root(), config);
        let input = Tensor::zeros([1, 3, 28, 30], (tch::Kind::Float, Device::Cpu));
        let err = tch::no_grad(|| network.forward(&input)).unwrap_err();
        assert!(err.to_string().contains("image_patch_size"), "{err}");
    }
}
