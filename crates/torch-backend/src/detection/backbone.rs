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
use tch::{TchError, Tensor};

use crate::layers::{Conv, Forward};

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
    conv1: Conv,
    bn1: FrozenBatchNorm,
    conv2: Conv,
    bn2: FrozenBatchNorm,
    conv3: Conv,
    bn3: FrozenBatchNorm,
    downsample: Option<(Conv, FrozenBatchNorm)>,
}

impl Bottleneck {
    fn new(path: &nn::Path<'_>, c_in: i64, width: i64, stride: i64, eps: f64) -> Bottleneck {
        let c_out = width * 4;
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            (
                conv(path / "downsample" / 0, c_in, c_out, 1, stride, 0, false),
                FrozenBatchNorm::new(path / "downsample" / 1, c_out, eps),
            )
        });
        Bottleneck {
            conv1: conv(path / "conv1", c_in, width, 1, 1, 0, false),
            bn1: FrozenBatchNorm::new(path / "bn1", width, eps),
            conv2: conv(path / "conv2", width, width, 3, stride, 1, false),
            bn2: FrozenBatchNorm::new(path / "bn2", width, eps),
            conv3: conv(path / "conv3", width, c_out, 1, 1, 0, false),
            bn3: FrozenBatchNorm::new(path / "bn3", c_out, eps),
            downsample,
        }
    }
}

impl Forward for Bottleneck {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let out = self.bn1.forward(&self.conv1.forward(xs)?)?.f_relu()?;
        let out = self.bn2.forward(&self.conv2.forward(&out)?)?.f_relu()?;
        let out = self.bn3.forward(&self.conv3.forward(&out)?)?;
        let identity = match &self.downsample {
            Some((conv, bn)) => bn.forward(&conv.forward(xs)?)?,
            None => xs.shallow_clone(),
        };
        out.f_add(&identity)?.f_relu()
    }
}

/// ResNet-50's body up to `layer4`, giving the outputs of `layer1`..`layer4`.
pub(crate) struct ResNet50Body {
    conv1: Conv,
    bn1: FrozenBatchNorm,
    layers: Vec<Vec<Bottleneck>>,
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
            conv1: conv(path / "conv1", 3, 64, 7, 2, 3, false),
            bn1: FrozenBatchNorm::new(path / "bn1", 64, eps),
            layers,
        }
    }

    /// The outputs of `layer1`..`layer4` (256, 512, 1024, 2048 channels).
    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Vec<Tensor>, TchError> {
        let mut x = self
            .bn1
            .forward(&self.conv1.forward(xs)?)?
            .f_relu()?
            .f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
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
