//! The CSP blocks of YOLOv5u, YOLOv8, YOLOv10, YOLO11 and YOLO26 as
//! Ultralytics' `ultralytics.nn.modules.block` defines them: `Bottleneck`,
//! `C2f`, `C3k2` (whose inner blocks are bottlenecks, `C3k`s, or a
//! bottleneck followed by a `PSABlock`) and `C2fCIB` (whose inner blocks
//! are `CIB`s, with a `RepVGGDW` re-parameterised as Ultralytics' `fuse()`
//! does), `C3`, `C2PSA` with its `PSABlock`s and their `Attention`, `PSA`
//! and `SCDown`; YOLOv9's `RepNCSPELAN4` (`RepCSP`s of `RepBottleneck`s
//! whose `RepConv` is re-parameterised as its `fuse_convs` does) and
//! `ADown`. Each is read from the checkpoint's module tree (its class,
//! its children and their attributes), never from the yaml's arguments.

use serde_json::Value as Json;
use tch::{Kind, TchError, Tensor};

use super::{ArchitectureError, Builder, Conv, unsupported};

/// The most attention heads a block may have (YOLO11x's `C2PSA` has 5).
const MAX_HEADS: i64 = 1024;

/// A `Bottleneck`: two convs, and the input added when `add`.
#[derive(Debug)]
pub(super) struct Bottleneck {
    cv1: Conv,
    cv2: Conv,
    add: bool,
}

impl Bottleneck {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let y = self.cv2.forward(&self.cv1.forward(x)?)?;
        if self.add { x.f_add(&y) } else { Ok(y) }
    }

    fn convs_mut(&mut self) -> [&mut Conv; 2] {
        [&mut self.cv1, &mut self.cv2]
    }
}

/// `C3` (and `C3k`, its subclass): `cv3(cat(m(cv1(x)), cv2(x)))`.
#[derive(Debug)]
pub(super) struct C3 {
    cv1: Conv,
    cv2: Conv,
    pub(super) cv3: Conv,
    blocks: Vec<Bottleneck>,
}

impl C3 {
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let mut y = self.cv1.forward(x)?;
        for block in &self.blocks {
            y = block.forward(&y)?;
        }
        self.cv3
            .forward(&Tensor::f_cat(&[y, self.cv2.forward(x)?], 1)?)
    }

    pub(super) fn convs_mut(&mut self) -> Vec<&mut Conv> {
        let mut convs = vec![&mut self.cv1, &mut self.cv2, &mut self.cv3];
        for block in &mut self.blocks {
            convs.extend(block.convs_mut());
        }
        convs
    }
}

/// One inner block of a `C2f` or `C3k2`.
#[derive(Debug)]
pub(super) enum Inner {
    /// A `Bottleneck` (`C2f`, and `C3k2` without `c3k`).
    Bottleneck(Bottleneck),
    /// A `C3k` (`C3k2` with `c3k`).
    C3k(C3),
    /// `Sequential(Bottleneck, PSABlock)` (`C3k2` with `attn`).
    Attention(Bottleneck, Box<PsaBlock>),
    /// A `CIB` (`C2fCIB`): five convolutions, the input added when `add`.
    Cib {
        /// `cv1`'s convolutions in order.
        convs: Vec<Conv>,
        /// Whether the input is added.
        add: bool,
    },
}

impl Inner {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        match self {
            Inner::Bottleneck(block) => block.forward(x),
            Inner::C3k(block) => block.forward(x),
            Inner::Attention(block, psa) => psa.forward(&block.forward(x)?),
            Inner::Cib { convs, add } => {
                let mut y = x.shallow_clone();
                for conv in convs {
                    y = conv.forward(&y)?;
                }
                if *add { x.f_add(&y) } else { Ok(y) }
            }
        }
    }

    fn convs_mut(&mut self) -> Vec<&mut Conv> {
        match self {
            Inner::Bottleneck(block) => block.convs_mut().into(),
            Inner::C3k(block) => block.convs_mut(),
            Inner::Attention(block, psa) => {
                let mut convs: Vec<&mut Conv> = block.convs_mut().into();
                convs.extend(psa.convs_mut());
                convs
            }
            Inner::Cib { convs, .. } => convs.iter_mut().collect(),
        }
    }
}

/// YOLOv9's `RepNCSPELAN4`: `cv1` split in halves, `cv2` and `cv3` (each a
/// `RepCSP` then a `Conv`) in a chain from the last piece, all
/// concatenated into `cv4`.
#[derive(Debug)]
pub(crate) struct Elan {
    cv1: Conv,
    cv2: (C3, Conv),
    cv3: (C3, Conv),
    pub(super) cv4: Conv,
}

impl Elan {
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let mut pieces = self.cv1.forward(x)?.f_chunk(2, 1)?;
        for (csp, conv) in [&self.cv2, &self.cv3] {
            let last = pieces.last().expect("RepNCSPELAN4 has two halves");
            let y = conv.forward(&csp.forward(last)?)?;
            pieces.push(y);
        }
        self.cv4.forward(&Tensor::f_cat(&pieces, 1)?)
    }

    pub(super) fn convs_mut(&mut self) -> Vec<&mut Conv> {
        let mut convs = vec![&mut self.cv1, &mut self.cv4];
        let (csp2, conv2) = &mut self.cv2;
        convs.extend(csp2.convs_mut());
        convs.push(conv2);
        let (csp3, conv3) = &mut self.cv3;
        convs.extend(csp3.convs_mut());
        convs.push(conv3);
        convs
    }
}

/// `C2f` and `C3k2`: `cv1`, split in two halves, each inner block on the
/// last piece, all concatenated into `cv2`.
#[derive(Debug)]
pub(super) struct C2f {
    cv1: Conv,
    pub(super) cv2: Conv,
    blocks: Vec<Inner>,
}

impl C2f {
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let mut pieces = self.cv1.forward(x)?.f_chunk(2, 1)?;
        for block in &self.blocks {
            let last = pieces.last().expect("C2f has two halves");
            let y = block.forward(last)?;
            pieces.push(y);
        }
        self.cv2.forward(&Tensor::f_cat(&pieces, 1)?)
    }

    pub(super) fn convs_mut(&mut self) -> Vec<&mut Conv> {
        let mut convs = vec![&mut self.cv1, &mut self.cv2];
        for block in &mut self.blocks {
            convs.extend(block.convs_mut());
        }
        convs
    }
}

/// `Attention`: multi-head self-attention over the pixels, with a
/// depthwise positional conv on the values.
#[derive(Debug)]
pub(super) struct Attention {
    qkv: Conv,
    proj: Conv,
    pe: Conv,
    heads: i64,
    key_dim: i64,
    head_dim: i64,
    scale: f64,
}

impl Attention {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let size = x.size();
        let (batch, channels, height, width) = (size[0], size[1], size[2], size[3]);
        let pixels = height * width;
        let qkv = self.qkv.forward(x)?.f_view([
            batch,
            self.heads,
            self.key_dim * 2 + self.head_dim,
            pixels,
        ])?;
        let parts = qkv.f_split_with_sizes([self.key_dim, self.key_dim, self.head_dim], 2)?;
        let (q, k, v) = (&parts[0], &parts[1], &parts[2]);
        let attention = q
            .f_mul_scalar(self.scale)?
            .f_transpose(-2, -1)?
            .f_matmul(k)?
            .f_softmax(-1, Kind::Float)?;
        let values = v.f_reshape([batch, channels, height, width])?;
        let y = v
            .f_matmul(&attention.f_transpose(-2, -1)?)?
            .f_view([batch, channels, height, width])?
            .f_add(&self.pe.forward(&values)?)?;
        self.proj.forward(&y)
    }
}

/// `PSABlock`: attention then a two-conv feed-forward, each added to its
/// input when `add`.
#[derive(Debug)]
pub(super) struct PsaBlock {
    attention: Attention,
    ffn: [Conv; 2],
    add: bool,
}

impl PsaBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let y = self.attention.forward(x)?;
        let x = if self.add { x.f_add(&y)? } else { y };
        let y = self.ffn[1].forward(&self.ffn[0].forward(&x)?)?;
        if self.add { x.f_add(&y) } else { Ok(y) }
    }

    fn convs_mut(&mut self) -> Vec<&mut Conv> {
        let [first, second] = &mut self.ffn;
        vec![
            &mut self.attention.qkv,
            &mut self.attention.proj,
            &mut self.attention.pe,
            first,
            second,
        ]
    }
}

/// `C2PSA`: `cv1`, split in halves of `hidden` channels, the `PSABlock`s
/// on the second, concatenated back into `cv2`.
#[derive(Debug)]
pub(super) struct C2Psa {
    cv1: Conv,
    pub(super) cv2: Conv,
    hidden: i64,
    blocks: Vec<PsaBlock>,
}

impl C2Psa {
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let halves = self
            .cv1
            .forward(x)?
            .f_split_with_sizes([self.hidden, self.hidden], 1)?;
        let mut b = halves[1].shallow_clone();
        for block in &self.blocks {
            b = block.forward(&b)?;
        }
        self.cv2.forward(&Tensor::f_cat(&[&halves[0], &b], 1)?)
    }

    pub(super) fn convs_mut(&mut self) -> Vec<&mut Conv> {
        let mut convs = vec![&mut self.cv1, &mut self.cv2];
        for block in &mut self.blocks {
            convs.extend(block.convs_mut());
        }
        convs
    }
}

impl Builder<'_> {
    /// A bool attribute of the module at `path`.
    fn flag(&self, path: &str, name: &str) -> Result<bool, ArchitectureError> {
        self.module(path)?
            .attributes
            .get(name)
            .and_then(Json::as_bool)
            .ok_or_else(|| unsupported(format!("`{path}.{name}` is not a bool")))
    }

    /// A whole-number attribute of the module at `path`, in `1..=most`.
    fn whole(&self, path: &str, name: &str, most: i64) -> Result<i64, ArchitectureError> {
        self.module(path)?
            .attributes
            .get(name)
            .and_then(Json::as_i64)
            .filter(|n| (1..=most).contains(n))
            .ok_or_else(|| {
                unsupported(format!(
                    "`{path}.{name}` is not a whole number from 1 to {most}"
                ))
            })
    }

    /// The number of children of the container at `path`, which must be
    /// `expected` (the yaml's depth-scaled repeats).
    pub(super) fn count(
        &self,
        path: &str,
        expected: Option<i64>,
    ) -> Result<usize, ArchitectureError> {
        let count = self.module(path)?.children.len();
        if let Some(expected) = expected
            && count as i64 != expected
        {
            return Err(unsupported(format!(
                "`{path}` has {count} blocks; the yaml's depth gives {expected}"
            )));
        }
        Ok(count)
    }

    /// A `Bottleneck`, or YOLOv9's `RepBottleneck` (whose `cv1` is a
    /// `RepConv`).
    fn bottleneck(&mut self, path: &str) -> Result<Bottleneck, ArchitectureError> {
        let kind = self.module(path)?.kind().to_owned();
        if !matches!(kind.as_str(), "Bottleneck" | "RepBottleneck") {
            return Err(unsupported(format!(
                "`{path}` is a `{kind}`, not a `Bottleneck`"
            )));
        }
        let cv1 = format!("{path}.cv1");
        let cv1 = if kind == "RepBottleneck" {
            self.rep_conv(&cv1)?
        } else {
            self.conv(&cv1)?
        };
        Ok(Bottleneck {
            add: self.flag(path, "add")?,
            cv1,
            cv2: self.conv(&format!("{path}.cv2"))?,
        })
    }

    /// One `RepConv` branch (a `Conv` without activation) as
    /// `RepConv._fuse_bn_tensor` folds it: `kernel * gamma / std` and
    /// `beta - mean * gamma / std`, `std = sqrt(var + eps)`.
    fn rep_branch(&mut self, path: &str) -> Result<Conv, ArchitectureError> {
        self.expect(path, "Conv")?;
        let mut conv = self.conv2d(&format!("{path}.conv"))?;
        let bn = self.expect(&format!("{path}.bn"), "BatchNorm2d")?;
        let eps = bn
            .attributes
            .get("eps")
            .and_then(Json::as_f64)
            .filter(|eps| eps.is_finite() && *eps >= 0.0)
            .ok_or_else(|| unsupported(format!("`{path}.bn.eps` is not a number")))?;
        let out = conv.out_channels();
        let mut take = |name: &str| -> Result<Tensor, ArchitectureError> {
            let tensor = self.tensor(&format!("{path}.bn.{name}"))?;
            if tensor.size() != [out] {
                return Err(unsupported(format!(
                    "`{path}.bn.{name}` has the wrong shape"
                )));
            }
            Ok(tensor)
        };
        let (mean, var, gamma, beta) = (
            take("running_mean")?,
            take("running_var")?,
            take("weight")?,
            take("bias")?,
        );
        let _ = self.optional_tensor(&format!("{path}.bn.num_batches_tracked"));
        let std = var.f_add_scalar(eps)?.f_sqrt()?;
        let scale = gamma.f_div(&std)?;
        conv.weight = conv.weight.f_mul(&scale.f_reshape([-1, 1, 1, 1])?)?;
        conv.bias = beta.f_sub(&mean.f_mul(&gamma)?.f_div(&std)?)?;
        Ok(conv)
    }

    /// A `RepConv` at `path` as its `fuse_convs` re-parameterises it: the
    /// 3x3 and 1x1 branches folded, the 1x1 kernel padded to 3x3 and
    /// added, biases added; then its activation.
    fn rep_conv(&mut self, path: &str) -> Result<Conv, ArchitectureError> {
        self.expect(path, "RepConv")?;
        if self.module(&format!("{path}.bn")).is_ok() {
            return Err(unsupported(format!(
                "`{path}` has an identity batch norm branch, which zoo does not fold"
            )));
        }
        let silu = match self.module(&format!("{path}.act"))?.kind() {
            "SiLU" => true,
            "Identity" => false,
            other => {
                return Err(unsupported(format!(
                    "`{path}.act` is a `{other}`; zoo runs SiLU and Identity"
                )));
            }
        };
        let mut large = self.rep_branch(&format!("{path}.conv1"))?;
        let small = self.rep_branch(&format!("{path}.conv2"))?;
        let (large_size, small_size) = (large.weight.size(), small.weight.size());
        if large_size[..2] != small_size[..2]
            || large_size[2..] != [3, 3]
            || small_size[2..] != [1, 1]
            || large.padding != [1, 1]
            || small.padding != [0, 0]
            || large.stride != small.stride
            || large.groups != small.groups
        {
            return Err(unsupported(format!(
                "`{path}` is not a 3x3 and 1x1 pair of one stride and groups"
            )));
        }
        large.weight = large
            .weight
            .f_add(&small.weight.f_constant_pad_nd([1, 1, 1, 1])?)?;
        large.bias = large.bias.f_add(&small.bias)?;
        large.silu = silu;
        Ok(large)
    }

    /// YOLOv9's `RepNCSPELAN4` at `path`.
    pub(super) fn elan(&mut self, path: &str) -> Result<Elan, ArchitectureError> {
        self.expect(path, "RepNCSPELAN4")?;
        let mut pair = |index: usize| -> Result<(C3, Conv), ArchitectureError> {
            let sequence = format!("{path}.cv{index}");
            if self.count(&sequence, Some(2)).is_err() {
                return Err(unsupported(format!(
                    "`{sequence}` is not a RepCSP and a Conv"
                )));
            }
            Ok((
                self.c3(&format!("{sequence}.0"), "RepCSP", None)?,
                self.conv(&format!("{sequence}.1"))?,
            ))
        };
        let (cv2, cv3) = (pair(2)?, pair(3)?);
        let cv1 = self.conv(&format!("{path}.cv1"))?;
        if cv1.out_channels() % 2 != 0 {
            return Err(unsupported(format!("`{path}.cv1` has an odd width")));
        }
        Ok(Elan {
            cv1,
            cv2,
            cv3,
            cv4: self.conv(&format!("{path}.cv4"))?,
        })
    }

    /// YOLOv9's `ADown` at `path`: its two convolutions.
    pub(super) fn a_down(&mut self, path: &str) -> Result<[Conv; 2], ArchitectureError> {
        self.expect(path, "ADown")?;
        Ok([
            self.conv(&format!("{path}.cv1"))?,
            self.conv(&format!("{path}.cv2"))?,
        ])
    }

    /// A `C3` (or `C3k`, `kind`) at `path`; `repeats` when the yaml gives
    /// its depth.
    pub(super) fn c3(
        &mut self,
        path: &str,
        kind: &str,
        repeats: Option<i64>,
    ) -> Result<C3, ArchitectureError> {
        self.expect(path, kind)?;
        let count = self.count(&format!("{path}.m"), repeats)?;
        let mut blocks = Vec::with_capacity(count);
        for index in 0..count {
            blocks.push(self.bottleneck(&format!("{path}.m.{index}"))?);
        }
        Ok(C3 {
            cv1: self.conv(&format!("{path}.cv1"))?,
            cv2: self.conv(&format!("{path}.cv2"))?,
            cv3: self.conv(&format!("{path}.cv3"))?,
            blocks,
        })
    }

    /// A `C2f` or `C3k2` (`kind`) at `path` with `repeats` inner blocks.
    pub(super) fn c2f(
        &mut self,
        path: &str,
        kind: &str,
        repeats: i64,
    ) -> Result<C2f, ArchitectureError> {
        self.expect(path, kind)?;
        let count = self.count(&format!("{path}.m"), Some(repeats))?;
        let cv1 = self.conv(&format!("{path}.cv1"))?;
        let cv2 = self.conv(&format!("{path}.cv2"))?;
        if cv1.out_channels() % 2 != 0 {
            return Err(unsupported(format!("`{path}.cv1` has an odd width")));
        }
        let mut blocks = Vec::with_capacity(count);
        for index in 0..count {
            let block = format!("{path}.m.{index}");
            let inner = match (kind, self.module(&block)?.kind()) {
                (_, "Bottleneck") => Inner::Bottleneck(self.bottleneck(&block)?),
                ("C3k2", "C3k") => Inner::C3k(self.c3(&block, "C3k", None)?),
                ("C2fCIB", "CIB") => self.cib(&block)?,
                ("C3k2", "Sequential") => {
                    if self.module(&block)?.children.len() != 2 {
                        return Err(unsupported(format!(
                            "`{block}` is not a Bottleneck and a PSABlock"
                        )));
                    }
                    Inner::Attention(
                        self.bottleneck(&format!("{block}.0"))?,
                        Box::new(self.psa_block(&format!("{block}.1"))?),
                    )
                }
                (_, other) => {
                    return Err(unsupported(format!(
                        "`{block}` is a `{other}`; a `{kind}` holds {}",
                        match kind {
                            "C3k2" => "Bottleneck, C3k or Bottleneck + PSABlock blocks",
                            "C2fCIB" => "Bottleneck or CIB blocks",
                            _ => "Bottleneck blocks",
                        }
                    )));
                }
            };
            blocks.push(inner);
        }
        Ok(C2f { cv1, cv2, blocks })
    }

    fn attention(&mut self, path: &str) -> Result<Attention, ArchitectureError> {
        let module = self.expect(path, "Attention")?;
        let scale = module
            .attributes
            .get("scale")
            .and_then(Json::as_f64)
            .filter(|scale| scale.is_finite() && *scale > 0.0)
            .ok_or_else(|| unsupported(format!("`{path}.scale` is not a positive number")))?;
        let heads = self.whole(path, "num_heads", MAX_HEADS)?;
        let key_dim = self.whole(path, "key_dim", 65_536)?;
        let head_dim = self.whole(path, "head_dim", 65_536)?;
        let attention = Attention {
            qkv: self.conv(&format!("{path}.qkv"))?,
            proj: self.conv(&format!("{path}.proj"))?,
            pe: self.conv(&format!("{path}.pe"))?,
            heads,
            key_dim,
            head_dim,
            scale,
        };
        let channels = heads * head_dim;
        let [qkv, proj, pe] = [&attention.qkv, &attention.proj, &attention.pe].map(|conv| {
            let size = conv.weight.size();
            (size[0], size[1] * conv.groups)
        });
        if qkv != (heads * (2 * key_dim + head_dim), channels)
            || proj != (channels, channels)
            || pe != (channels, channels)
        {
            return Err(unsupported(format!(
                "`{path}`'s convolutions do not fit {heads} heads of {head_dim} channels with keys of {key_dim}"
            )));
        }
        Ok(attention)
    }

    fn psa_block(&mut self, path: &str) -> Result<PsaBlock, ArchitectureError> {
        self.expect(path, "PSABlock")?;
        let add = self.flag(path, "add")?;
        if self.count(&format!("{path}.ffn"), Some(2)).is_err() {
            return Err(unsupported(format!("`{path}.ffn` is not two convolutions")));
        }
        Ok(PsaBlock {
            attention: self.attention(&format!("{path}.attn"))?,
            ffn: [
                self.conv(&format!("{path}.ffn.0"))?,
                self.conv(&format!("{path}.ffn.1"))?,
            ],
            add,
        })
    }

    /// A `CIB` at `path`: `cv1` is `Sequential(Conv, Conv, Conv or
    /// RepVGGDW, Conv, Conv)`.
    fn cib(&mut self, path: &str) -> Result<Inner, ArchitectureError> {
        self.expect(path, "CIB")?;
        let add = self.flag(path, "add")?;
        let sequence = format!("{path}.cv1");
        let count = self.count(&sequence, Some(5))?;
        let mut convs = Vec::with_capacity(count);
        for index in 0..count {
            let child = format!("{sequence}.{index}");
            convs.push(match self.module(&child)?.kind() {
                "RepVGGDW" => self.rep_vgg_dw(&child)?,
                _ => self.conv(&child)?,
            });
        }
        Ok(Inner::Cib { convs, add })
    }

    /// A `RepVGGDW` at `path` as its `fuse()` re-parameterises it: its two
    /// depthwise convolutions fused with their batch norms, the 3x3 kernel
    /// padded to 7x7 and added to the 7x7 one, biases added, then SiLU.
    fn rep_vgg_dw(&mut self, path: &str) -> Result<Conv, ArchitectureError> {
        self.expect(path, "RepVGGDW")?;
        if self.module(&format!("{path}.act"))?.kind() != "SiLU" {
            return Err(unsupported(format!("`{path}.act` is not a SiLU")));
        }
        let mut large = self.conv(&format!("{path}.conv"))?;
        let small = self.conv(&format!("{path}.conv1"))?;
        let (large_size, small_size) = (large.weight.size(), small.weight.size());
        let plain = |conv: &Conv, size: &[i64], padding: i64| {
            !conv.silu
                && conv.stride == [1, 1]
                && conv.dilation == [1, 1]
                && conv.padding == [padding, padding]
                && conv.groups == size[0]
                && size[1] == 1
        };
        if large_size[..2] != small_size[..2]
            || large_size[2..] != [7, 7]
            || small_size[2..] != [3, 3]
            || !plain(&large, &large_size, 3)
            || !plain(&small, &small_size, 1)
        {
            return Err(unsupported(format!(
                "`{path}` is not a depthwise 7x7 and 3x3 pair without activations"
            )));
        }
        large.weight = large
            .weight
            .f_add(&small.weight.f_constant_pad_nd([2, 2, 2, 2])?)?;
        large.bias = large.bias.f_add(&small.bias)?;
        large.silu = true;
        Ok(large)
    }

    /// `SCDown` at `path`: a pointwise then a depthwise convolution.
    pub(super) fn sc_down(&mut self, path: &str) -> Result<Vec<Conv>, ArchitectureError> {
        self.expect(path, "SCDown")?;
        Ok(vec![
            self.conv(&format!("{path}.cv1"))?,
            self.conv(&format!("{path}.cv2"))?,
        ])
    }

    /// `PSA` at `path`: a `C2PSA` with one attention block of its own
    /// `attn` and `ffn`, both added.
    pub(super) fn psa(&mut self, path: &str) -> Result<C2Psa, ArchitectureError> {
        self.expect(path, "PSA")?;
        let hidden = self.whole(path, "c", 65_536)?;
        let cv1 = self.conv(&format!("{path}.cv1"))?;
        if cv1.out_channels() != 2 * hidden {
            return Err(unsupported(format!(
                "`{path}.cv1` gives {} channels, not twice `c` = {hidden}",
                cv1.out_channels()
            )));
        }
        if self.count(&format!("{path}.ffn"), Some(2)).is_err() {
            return Err(unsupported(format!("`{path}.ffn` is not two convolutions")));
        }
        let block = PsaBlock {
            attention: self.attention(&format!("{path}.attn"))?,
            ffn: [
                self.conv(&format!("{path}.ffn.0"))?,
                self.conv(&format!("{path}.ffn.1"))?,
            ],
            add: true,
        };
        Ok(C2Psa {
            cv1,
            cv2: self.conv(&format!("{path}.cv2"))?,
            hidden,
            blocks: vec![block],
        })
    }

    /// A `C2PSA` at `path` with `repeats` `PSABlock`s.
    pub(super) fn c2psa(&mut self, path: &str, repeats: i64) -> Result<C2Psa, ArchitectureError> {
        self.expect(path, "C2PSA")?;
        let hidden = self.whole(path, "c", 65_536)?;
        let count = self.count(&format!("{path}.m"), Some(repeats))?;
        let cv1 = self.conv(&format!("{path}.cv1"))?;
        if cv1.out_channels() != 2 * hidden {
            return Err(unsupported(format!(
                "`{path}.cv1` gives {} channels, not twice `c` = {hidden}",
                cv1.out_channels()
            )));
        }
        let mut blocks = Vec::with_capacity(count);
        for index in 0..count {
            blocks.push(self.psa_block(&format!("{path}.m.{index}"))?);
        }
        Ok(C2Psa {
            cv1,
            cv2: self.conv(&format!("{path}.cv2"))?,
            hidden,
            blocks,
        })
    }
}
