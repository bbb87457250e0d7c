//! The detectors' backbone: torchvision's ResNet-50 with
//! `FrozenBatchNorm2d` (`ops/misc.py`), its `layer1`..`layer4` outputs
//! through a feature pyramid (`ops/feature_pyramid_network.py`) with
//! `LastLevelMaxPool` (Faster, Mask and Keypoint R-CNN: five maps `0`..`3`
//! and `pool`).
//!
//! Variables carry torchvision's current names under `backbone.body` and
//! `backbone.fpn` (`inner_blocks.0.0.weight`); the hosted checkpoints'
//! older FPN names are renamed on load (`checkpoint.rs`).

use tch::nn;
use tch::{Kind, TchError, Tensor};

use crate::net::layers::{Conv, Forward};

/// `FrozenBatchNorm2d(channels, eps)`: fixed statistics, computed as
/// torchvision computes it on every forward (`scale = w * (rv +
/// eps).rsqrt()`, `bias = b - rm * scale`, `x * scale + bias`).
#[derive(Debug)]
pub(crate) struct FrozenBatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    eps: f64,
}

impl FrozenBatchNorm {
    pub(crate) fn new(path: nn::Path<'_>, channels: i64, eps: f64) -> FrozenBatchNorm {
        let init = |value: f64| nn::Init::Const(value);
        FrozenBatchNorm {
            weight: path.var("weight", &[channels], init(1.0)),
            bias: path.var("bias", &[channels], init(0.0)),
            running_mean: path.var("running_mean", &[channels], init(0.0)),
            running_var: path.var("running_var", &[channels], init(1.0)),
            eps,
        }
    }
}

impl FrozenBatchNorm {
    /// The per-channel `(scale, shift)` this layer applies, in `f64`
    /// (`scale = w / sqrt(rv + eps)`, `shift = b - rm * scale`), for
    /// folding it into the convolution before it.
    fn scale_shift(&self) -> Result<(Tensor, Tensor), TchError> {
        let double = |tensor: &Tensor| tensor.f_to_kind(Kind::Double);
        let scale = double(&self.weight)?.f_mul(
            &double(&self.running_var)?
                .f_add_scalar(self.eps)?
                .f_rsqrt()?,
        )?;
        let shift = double(&self.bias)?.f_sub(&double(&self.running_mean)?.f_mul(&scale)?)?;
        Ok((scale, shift))
    }
}

/// A convolution and the frozen batch norm after it, until
/// [`ConvBn::fold`] merges them into one convolution.
struct ConvBn {
    conv: Conv,
    bn: Option<FrozenBatchNorm>,
}

impl ConvBn {
    fn new(conv: Conv, bn: FrozenBatchNorm) -> ConvBn {
        ConvBn { conv, bn: Some(bn) }
    }

    /// The batch norm folded into the convolution (weights scaled per
    /// output channel in `f64`, channels-last; the shift as its bias).
    fn fold(&mut self) -> Result<(), TchError> {
        if let Some(bn) = self.bn.take() {
            let (scale, shift) = bn.scale_shift()?;
            self.conv = self.conv.folded(&scale, &shift)?;
        }
        Ok(())
    }
}

impl Forward for ConvBn {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let out = self.conv.forward(xs)?;
        match &self.bn {
            Some(bn) => bn.forward(&out),
            None => Ok(out),
        }
    }
}

impl Forward for FrozenBatchNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let shape = [1, -1, 1, 1];
        let w = self.weight.f_reshape(shape)?;
        let b = self.bias.f_reshape(shape)?;
        let rv = self.running_var.f_reshape(shape)?;
        let rm = self.running_mean.f_reshape(shape)?;
        let scale = w.f_mul(&rv.f_add_scalar(self.eps)?.f_rsqrt()?)?;
        let bias = b.f_sub(&rm.f_mul(&scale)?)?;
        xs.f_mul(&scale)?.f_add(&bias)
    }
}

/// A convolution under `path` (`weight`, and `bias` when asked).
pub(crate) fn conv(
    path: nn::Path<'_>,
    c_in: i64,
    c_out: i64,
    kernel: i64,
    stride: i64,
    padding: i64,
    bias: bool,
) -> Conv {
    let config = nn::ConvConfig {
        stride,
        padding,
        bias,
        ..Default::default()
    };
    let made = nn::conv2d(path, c_in, c_out, kernel, config);
    Conv::from_parts(made.ws, made.bs, stride, padding, 1)
}

/// torchvision's `Bottleneck` (stride on the 3x3 convolution).
struct Bottleneck {
    conv1: ConvBn,
    conv2: ConvBn,
    conv3: ConvBn,
    downsample: Option<ConvBn>,
}

impl Bottleneck {
    fn new(path: &nn::Path<'_>, c_in: i64, width: i64, stride: i64, eps: f64) -> Bottleneck {
        let c_out = width * 4;
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            ConvBn::new(
                conv(path / "downsample" / 0, c_in, c_out, 1, stride, 0, false),
                FrozenBatchNorm::new(path / "downsample" / 1, c_out, eps),
            )
        });
        Bottleneck {
            conv1: ConvBn::new(
                conv(path / "conv1", c_in, width, 1, 1, 0, false),
                FrozenBatchNorm::new(path / "bn1", width, eps),
            ),
            conv2: ConvBn::new(
                conv(path / "conv2", width, width, 3, stride, 1, false),
                FrozenBatchNorm::new(path / "bn2", width, eps),
            ),
            conv3: ConvBn::new(
                conv(path / "conv3", width, c_out, 1, 1, 0, false),
                FrozenBatchNorm::new(path / "bn3", c_out, eps),
            ),
            downsample,
        }
    }

    fn fold(&mut self) -> Result<(), TchError> {
        self.conv1.fold()?;
        self.conv2.fold()?;
        self.conv3.fold()?;
        if let Some(downsample) = &mut self.downsample {
            downsample.fold()?;
        }
        Ok(())
    }
}

impl Forward for Bottleneck {
    /// ReLUs and the residual addition in place, as torchvision's
    /// `inplace=True` modules run them (the same values).
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let mut out = self.conv1.forward(xs)?;
        let _ = out.f_relu_()?;
        let mut out = self.conv2.forward(&out)?;
        let _ = out.f_relu_()?;
        let mut out = self.conv3.forward(&out)?;
        let _ = match &self.downsample {
            Some(downsample) => out.f_add_(&downsample.forward(xs)?)?,
            None => out.f_add_(xs)?,
        };
        let _ = out.f_relu_()?;
        Ok(out)
    }
}

/// ResNet-50's body up to `layer4`, giving the outputs of `layer1`..`layer4`.
pub(crate) struct ResNet50Body {
    conv1: ConvBn,
    layers: Vec<Vec<Bottleneck>>,
    /// Whether the batch norms are folded: the input is then made
    /// channels-last, the layout the folded weights have.
    folded: bool,
}

impl ResNet50Body {
    /// The body under `path`, its frozen batch norms with `eps` (torchvision
    /// sets 0 for the COCO_V1 weights, `overwrite_eps`; 1e-5 otherwise).
    pub(crate) fn new(path: &nn::Path<'_>, eps: f64) -> ResNet50Body {
        let mut c_in = 64;
        let mut layers = Vec::new();
        for (index, (blocks, width, stride)) in [(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)]
            .into_iter()
            .enumerate()
        {
            let layer_path = path / format!("layer{}", index + 1);
            let mut layer = Vec::new();
            for block in 0..blocks {
                let stride = if block == 0 { stride } else { 1 };
                layer.push(Bottleneck::new(
                    &(&layer_path / block),
                    c_in,
                    width,
                    stride,
                    eps,
                ));
                c_in = width * 4;
            }
            layers.push(layer);
        }
        ResNet50Body {
            conv1: ConvBn::new(
                conv(path / "conv1", 3, 64, 7, 2, 3, false),
                FrozenBatchNorm::new(path / "bn1", 64, eps),
            ),
            layers,
            folded: false,
        }
    }

    /// Folds every frozen batch norm into the convolution before it, once
    /// the weights are loaded: one pass over each activation instead of
    /// three (torchvision's `x * scale + bias` recomputes `scale` and
    /// `bias` and writes two activations per layer), and channels-last
    /// weights, which oneDNN's CPU convolutions run without reordering.
    pub(crate) fn fold(&mut self) -> Result<(), TchError> {
        self.conv1.fold()?;
        for layer in &mut self.layers {
            for block in layer {
                block.fold()?;
            }
        }
        self.folded = true;
        Ok(())
    }

    /// The outputs of `layer1`..`layer4` (256, 512, 1024, 2048 channels).
    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Vec<Tensor>, TchError> {
        let input = if self.folded {
            crate::net::fold::channels_last(xs)
        } else {
            xs.shallow_clone()
        };
        let mut x = self.conv1.forward(&input)?;
        let _ = x.f_relu_()?;
        let mut x = x.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
        let mut outputs = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            for block in layer {
                x = block.forward(&x)?;
            }
            outputs.push(x.shallow_clone());
        }
        Ok(outputs)
    }
}

/// What the pyramid adds above its last level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExtraBlock {
    /// `LastLevelMaxPool`: `max_pool2d(P5, 1, 2)` as `pool`.
    MaxPool,
    /// `LastLevelP6P7(256, 256)` (RetinaNet): `p6 = conv(P5)`, `p7 =
    /// conv(relu(p6))`, 3x3 stride-2 convolutions.
    P6P7,
}

/// `FeaturePyramidNetwork(in_channels_list, 256, extra_blocks)`.
pub(crate) struct Fpn {
    inner: Vec<Conv>,
    layer: Vec<Conv>,
    extra: ExtraBlock,
    /// `extra_blocks.p6` and `p7` for [`ExtraBlock::P6P7`].
    p6p7: Option<(Conv, Conv)>,
}

impl Fpn {
    pub(crate) fn new(path: &nn::Path<'_>, in_channels: &[i64], extra: ExtraBlock) -> Fpn {
        let inner = in_channels
            .iter()
            .enumerate()
            .map(|(index, c_in)| conv(path / "inner_blocks" / index / 0, *c_in, 256, 1, 1, 0, true))
            .collect();
        let layer = (0..in_channels.len())
            .map(|index| conv(path / "layer_blocks" / index / 0, 256, 256, 3, 1, 1, true))
            .collect();
        let p6p7 = (extra == ExtraBlock::P6P7).then(|| {
            let blocks = path / "extra_blocks";
            (
                conv(&blocks / "p6", 256, 256, 3, 2, 1, true),
                conv(&blocks / "p7", 256, 256, 3, 2, 1, true),
            )
        });
        Fpn {
            inner,
            layer,
            extra,
            p6p7,
        }
    }

    /// Channels-last weights, for the folded body's channels-last maps.
    pub(crate) fn fold(&mut self) {
        for conv in self.inner.iter_mut().chain(self.layer.iter_mut()) {
            *conv = conv.channels_last();
        }
        if let Some((p6, p7)) = &mut self.p6p7 {
            *p6 = p6.channels_last();
            *p7 = p7.channels_last();
        }
    }

    /// The pyramid's maps, finest first (`0`, `1`, ..., then `pool`).
    pub(crate) fn forward(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, TchError> {
        let last = inputs.len() - 1;
        let mut last_inner = self.inner[last].forward(&inputs[last])?;
        let mut results = vec![self.layer[last].forward(&last_inner)?];
        for index in (0..last).rev() {
            let lateral = self.inner[index].forward(&inputs[index])?;
            let size = lateral.size();
            let top_down =
                last_inner.f_upsample_nearest2d([size[2], size[3]], None::<f64>, None::<f64>)?;
            last_inner = lateral.f_add(&top_down)?;
            results.insert(0, self.layer[index].forward(&last_inner)?);
        }
        match self.extra {
            ExtraBlock::MaxPool => {
                let pooled = results[results.len() - 1].f_max_pool2d(
                    [1, 1],
                    [2, 2],
                    [0, 0],
                    [1, 1],
                    false,
                )?;
                results.push(pooled);
            }
            ExtraBlock::P6P7 => {
                if let Some((p6, p7)) = &self.p6p7 {
                    let six = p6.forward(&results[results.len() - 1])?;
                    let seven = p7.forward(&six.f_relu()?)?;
                    results.push(six);
                    results.push(seven);
                }
            }
        }
        Ok(results)
    }
}
