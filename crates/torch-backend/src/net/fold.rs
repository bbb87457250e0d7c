//! Inference graphs for the torchvision architectures zoo runs most: the
//! same arithmetic as [`crate::families`]'s training-shaped modules, rearranged
//! for speed once the weights are loaded.
//!
//! - Batch-norm folded into the convolution before it (`w * g / sqrt(v + e)`,
//!   bias `b - m * g / sqrt(v + e)`, computed in f64): one pass over each
//!   activation instead of two.
//! - Channels-last (NHWC strides) convolution weights and inputs: oneDNN's
//!   CPU kernels and cuDNN's half-precision kernels run on NHWC without
//!   reordering every layer.
//! - ReLU and residual additions in place, like torchvision's modules, so
//!   fewer large activations are allocated per forward.
//!
//! Parity with PyTorch stays within 1e-4 (tested against the fixtures and
//! against the unfolded graph); see BENCHMARKS.md for the measured gains.

use std::collections::HashMap;

use tch::{Kind, TchError, Tensor};

use crate::net::Network;
use crate::net::layers::{Conv, Forward};

const BN_EPS: f64 = 1e-5;

/// A copy of a 4-D tensor with channels-last (NHWC) strides, the same
/// values; other tensors are returned as they are.
pub(crate) fn channels_last(tensor: &Tensor) -> Tensor {
    let size = tensor.size();
    let [n, c, h, w] = size.as_slice() else {
        return tensor.shallow_clone();
    };
    let mut out = empty_channels_last([*n, *c, *h, *w], (tensor.kind(), tensor.device()));
    out.copy_(tensor);
    out
}

/// An uninitialised `[n, c, h, w]` tensor with channels-last (NHWC)
/// strides.
fn empty_channels_last([n, c, h, w]: [i64; 4], options: (Kind, tch::Device)) -> Tensor {
    Tensor::empty_strided([n, c, h, w], [h * w * c, 1, w * c, c], options)
}

/// The loaded weights by name.
pub(crate) struct Weights {
    pub(crate) by_name: HashMap<String, Tensor>,
    pub(crate) kind: Kind,
}

impl Weights {
    /// Tensor `name` in f64 for folding. Loading already checked that every
    /// name the architecture needs is present with the right shape.
    pub(crate) fn f64(&self, name: &str) -> Option<Tensor> {
        self.by_name.get(name).map(|t| t.to_kind(Kind::Double))
    }

    /// Inference-mode batch-norm `bn` as a per-channel `(scale, shift)`:
    /// `g / sqrt(v + e)` and `b - m * g / sqrt(v + e)`, in f64.
    fn batch_norm(&self, bn: &str) -> Option<(Tensor, Tensor)> {
        self.batch_norm_eps(bn, BN_EPS)
    }

    /// [`Weights::batch_norm`] with batch-norm `eps` `eps` (GoogLeNet's
    /// is 1e-3).
    pub(crate) fn batch_norm_eps(&self, bn: &str, eps: f64) -> Option<(Tensor, Tensor)> {
        let gamma = self.f64(&format!("{bn}.weight"))?;
        let beta = self.f64(&format!("{bn}.bias"))?;
        let mean = self.f64(&format!("{bn}.running_mean"))?;
        let var = self.f64(&format!("{bn}.running_var"))?;
        let scale = gamma / (var + eps).sqrt();
        let shift = beta - &mean * &scale;
        Some((scale, shift))
    }

    /// Converts a prepared f64 tensor to the run's kind and layout.
    pub(crate) fn finish(&self, tensor: &Tensor) -> Tensor {
        channels_last(&tensor.to_kind(self.kind))
    }
}

/// `conv` followed by batch-norm `bn` (module paths, with trailing dots left
/// out), folded into one convolution.
fn folded_conv(w: &Weights, conv: &str, bn: &str, stride: i64, groups: i64) -> Option<Conv> {
    let weight = w.f64(&format!("{conv}.weight"))?;
    let (scale, bias) = w.batch_norm(bn)?;
    let weight = weight * scale.view([-1, 1, 1, 1]);
    let kernel = weight.size()[2];
    Some(Conv::from_parts(
        w.finish(&weight),
        Some(bias.to_kind(w.kind)),
        stride,
        (kernel - 1) / 2,
        groups,
    ))
}

/// A convolution without bias and without a following batch-norm.
fn plain_conv(w: &Weights, conv: &str, stride: i64, padding: i64) -> Option<Conv> {
    let weight = w.f64(&format!("{conv}.weight"))?;
    Some(Conv::from_parts(
        w.finish(&weight),
        None,
        stride,
        padding,
        1,
    ))
}

/// An inference-mode batch-norm that could not be folded (it follows a
/// concatenation), as a per-channel affine map.
#[derive(Debug)]
struct Affine {
    scale: Tensor,
    shift: Tensor,
}

impl Affine {
    fn new(w: &Weights, bn: &str) -> Option<Affine> {
        let (scale, shift) = w.batch_norm(bn)?;
        Some(Affine {
            scale: scale.to_kind(w.kind).view([1, -1, 1, 1]),
            shift: shift.to_kind(w.kind).view([1, -1, 1, 1]),
        })
    }

    /// `relu(x * scale + shift)` into a new tensor.
    fn relu(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let mut ys = xs.f_mul(&self.scale)?;
        let _ = ys.f_add_(&self.shift)?;
        let _ = ys.f_relu_()?;
        Ok(ys)
    }
}

/// A final linear layer.
#[derive(Debug)]
struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn new(w: &Weights, name: &str) -> Option<Linear> {
        Some(Linear {
            weight: w.by_name.get(&format!("{name}.weight"))?.to_kind(w.kind),
            bias: w.by_name.get(&format!("{name}.bias"))?.to_kind(w.kind),
        })
    }
}

impl Forward for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        xs.f_linear(&self.weight, Some(&self.bias))
    }
}

fn global_pool(xs: &Tensor) -> Result<Tensor, TchError> {
    xs.f_adaptive_avg_pool2d([1, 1])?.f_flatten(1, -1)
}

#[derive(Debug)]
enum Block {
    Basic {
        conv1: Conv,
        conv2: Conv,
        downsample: Option<Conv>,
    },
    Bottleneck {
        conv1: Conv,
        conv2: Conv,
        conv3: Conv,
        downsample: Option<Conv>,
    },
}

impl Block {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let (mut ys, downsample) = match self {
            Block::Basic {
                conv1,
                conv2,
                downsample,
            } => {
                let mut hidden = conv1.forward(xs)?;
                let _ = hidden.f_relu_()?;
                (conv2.forward(&hidden)?, downsample)
            }
            Block::Bottleneck {
                conv1,
                conv2,
                conv3,
                downsample,
            } => {
                let mut hidden = conv1.forward(xs)?;
                let _ = hidden.f_relu_()?;
                let mut hidden = conv2.forward(&hidden)?;
                let _ = hidden.f_relu_()?;
                (conv3.forward(&hidden)?, downsample)
            }
        };
        let _ = match downsample {
            Some(conv) => ys.f_add_(&conv.forward(xs)?)?,
            None => ys.f_add_(xs)?,
        };
        let _ = ys.f_relu_()?;
        Ok(ys)
    }
}

/// torchvision's ResNet without its `fc` layer.
#[derive(Debug)]
struct ResNetFeatures {
    stem: Conv,
    blocks: Vec<Block>,
}

impl Forward for ResNetFeatures {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let mut ys = self.stem.forward(xs)?;
        let _ = ys.f_relu_()?;
        let mut ys = ys.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
        for block in &self.blocks {
            ys = block.forward(&ys)?;
        }
        global_pool(&ys)
    }
}

fn resnet(w: &Weights, bottleneck: bool, layers: [usize; 4]) -> Option<Network> {
    let mut blocks = Vec::new();
    let mut c_in = 64;
    for (index, &count) in layers.iter().enumerate() {
        let planes = 64 << index;
        let c_out = if bottleneck { planes * 4 } else { planes };
        for block in 0..count {
            let stride = if index > 0 && block == 0 { 2 } else { 1 };
            let p = format!("layer{}.{block}", index + 1);
            let downsample = if block == 0 && (stride != 1 || c_in != c_out) {
                Some(folded_conv(
                    w,
                    &format!("{p}.downsample.0"),
                    &format!("{p}.downsample.1"),
                    stride,
                    1,
                )?)
            } else {
                None
            };
            let conv = |n: u32, stride: i64| {
                folded_conv(w, &format!("{p}.conv{n}"), &format!("{p}.bn{n}"), stride, 1)
            };
            blocks.push(if bottleneck {
                Block::Bottleneck {
                    conv1: conv(1, 1)?,
                    conv2: conv(2, stride)?,
                    conv3: conv(3, 1)?,
                    downsample,
                }
            } else {
                Block::Basic {
                    conv1: conv(1, stride)?,
                    conv2: conv(2, 1)?,
                    downsample,
                }
            });
            c_in = c_out;
        }
    }
    Some(Network::new(
        ResNetFeatures {
            stem: folded_conv(w, "conv1", "bn1", 2, 1)?,
            blocks,
        },
        Linear::new(w, "fc")?,
        "<fc",
        1,
    ))
}

/// One MobileNetV2 inverted residual: convolutions with their ReLU6 flags.
#[derive(Debug)]
struct InvertedResidual {
    convs: Vec<(Conv, bool)>,
    residual: bool,
}

#[derive(Debug)]
struct MobileNetV2Features {
    layers: Vec<InvertedResidual>,
}

impl Forward for MobileNetV2Features {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let mut ys = xs.shallow_clone();
        for layer in &self.layers {
            let mut hidden = ys.shallow_clone();
            for (conv, relu6) in &layer.convs {
                hidden = conv.forward(&hidden)?;
                if *relu6 {
                    let _ = hidden.f_clamp_(0.0, 6.0)?;
                }
            }
            if layer.residual {
                let _ = hidden.f_add_(&ys)?;
            }
            ys = hidden;
        }
        global_pool(&ys)
    }
}

fn mobilenet_v2(w: &Weights) -> Option<Network> {
    let bn_conv = |p: &str, stride: i64, groups: i64, relu6: bool| {
        Some((
            folded_conv(w, &format!("{p}.0"), &format!("{p}.1"), stride, groups)?,
            relu6,
        ))
    };
    let mut layers = vec![InvertedResidual {
        convs: vec![bn_conv("features.0", 2, 1, true)?],
        residual: false,
    }];
    let mut c_in = 32;
    let mut index = 1;
    for (expand, c_out, repeats, stride) in crate::families::MOBILENET_V2_SETTINGS {
        for repeat in 0..repeats {
            let stride = if repeat == 0 { stride } else { 1 };
            let p = format!("features.{index}.conv");
            let hidden = expand * c_in;
            let mut convs = Vec::new();
            let mut at = 0;
            if expand != 1 {
                convs.push(bn_conv(&format!("{p}.0"), 1, 1, true)?);
                at = 1;
            }
            convs.push(bn_conv(&format!("{p}.{at}"), stride, hidden, true)?);
            convs.push((
                folded_conv(
                    w,
                    &format!("{p}.{}", at + 1),
                    &format!("{p}.{}", at + 2),
                    1,
                    1,
                )?,
                false,
            ));
            layers.push(InvertedResidual {
                convs,
                residual: stride == 1 && c_in == c_out,
            });
            c_in = c_out;
            index += 1;
        }
    }
    layers.push(InvertedResidual {
        convs: vec![bn_conv(&format!("features.{index}"), 1, 1, true)?],
        residual: false,
    });
    Some(Network::new(
        MobileNetV2Features { layers },
        Linear::new(w, "classifier.1")?,
        "<classifier.1",
        1,
    ))
}

/// One DenseNet layer: `norm1` cannot be folded (it follows the
/// concatenation), `norm2` is folded into `conv1`.
#[derive(Debug)]
struct DenseLayer {
    norm1: Affine,
    conv1: Conv,
    conv2: Conv,
}

#[derive(Debug)]
enum DenseStage {
    Layer(DenseLayer),
    Transition { norm: Affine, conv: Conv },
}

#[derive(Debug)]
struct DenseNetFeatures {
    stem: Conv,
    stages: Vec<DenseStage>,
    norm5: Affine,
}

impl Forward for DenseNetFeatures {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let mut ys = self.stem.forward(xs)?;
        let _ = ys.f_relu_()?;
        let mut ys = ys.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
        for stage in &self.stages {
            ys = match stage {
                DenseStage::Layer(layer) => {
                    let mut hidden = layer.conv1.forward(&layer.norm1.relu(&ys)?)?;
                    let _ = hidden.f_relu_()?;
                    let new = layer.conv2.forward(&hidden)?;
                    Tensor::f_cat(&[&ys, &new], 1)?
                }
                DenseStage::Transition { norm, conv } => conv
                    .forward(&norm.relu(&ys)?)?
                    .f_avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>)?,
            };
        }
        global_pool(&self.norm5.relu(&ys)?)
    }
}

fn densenet(w: &Weights, blocks: &[i64]) -> Option<Network> {
    let mut stages = Vec::new();
    for (block, &layers) in blocks.iter().enumerate() {
        let bp = format!("features.denseblock{}", block + 1);
        for layer in 0..layers {
            let lp = format!("{bp}.denselayer{}", layer + 1);
            stages.push(DenseStage::Layer(DenseLayer {
                norm1: Affine::new(w, &format!("{lp}.norm1"))?,
                conv1: folded_conv(w, &format!("{lp}.conv1"), &format!("{lp}.norm2"), 1, 1)?,
                conv2: plain_conv(w, &format!("{lp}.conv2"), 1, 1)?,
            }));
        }
        if block + 1 != blocks.len() {
            let tp = format!("features.transition{}", block + 1);
            stages.push(DenseStage::Transition {
                norm: Affine::new(w, &format!("{tp}.norm"))?,
                conv: plain_conv(w, &format!("{tp}.conv"), 1, 0)?,
            });
        }
    }
    Some(Network::new(
        DenseNetFeatures {
            stem: folded_conv(w, "features.conv0", "features.norm0", 2, 1)?,
            stages,
            norm5: Affine::new(w, "features.norm5")?,
        },
        Linear::new(w, "classifier")?,
        "<classifier",
        29,
    ))
}

/// The folded, channels-last graph of architecture `name` from its loaded
/// weights (f32), computing in `kind`; `None` for architectures that run
/// through `tch::vision` as they are.
#[cfg(test)]
pub(crate) fn build(name: &str, by_name: HashMap<String, Tensor>, kind: Kind) -> Option<Network> {
    build_with(
        name,
        by_name,
        kind,
        crate::checkpoint::renames::BuildOptions::default(),
    )
}

/// [`build`] with torchvision's build `options` (GoogLeNet's
/// `transform_input`).
pub(crate) fn build_with(
    name: &str,
    by_name: HashMap<String, Tensor>,
    kind: Kind,
    options: crate::checkpoint::renames::BuildOptions,
) -> Option<Network> {
    if !crate::families::runs_folded(name) {
        return None;
    }
    let w = Weights { by_name, kind };
    tch::no_grad(|| match name {
        "resnet18" => resnet(&w, false, [2, 2, 2, 2]),
        "resnet34" => resnet(&w, false, [3, 4, 6, 3]),
        "resnet50" => resnet(&w, true, [3, 4, 6, 3]),
        "resnet101" => resnet(&w, true, [3, 4, 23, 3]),
        "resnet152" => resnet(&w, true, [3, 8, 36, 3]),
        "mobilenet_v2" => mobilenet_v2(&w),
        "densenet121" => densenet(&w, &[6, 12, 24, 16]),
        "densenet161" => densenet(&w, &[6, 12, 36, 24]),
        "densenet169" => densenet(&w, &[6, 12, 32, 32]),
        "densenet201" => densenet(&w, &[6, 12, 48, 32]),
        _ => crate::net::maker::build(name, &crate::net::maker::Folding(&w), 0, options),
    })
}

#[cfg(test)]
mod tests {
    use tch::nn::VarStore;
    use tch::{Device, Kind, Tensor};

    use super::{build, channels_last};
    use crate::families as arch;
    use crate::net::testing::randomise;

    #[test]
    fn folded_graphs_compute_what_the_plain_graphs_compute() {
        let names = arch::SPLIT
            .into_iter()
            .chain(crate::net::maker::CLASSIFIERS)
            .chain(crate::net::maker::SEGMENTERS);
        for name in names {
            let store = VarStore::new(Device::Cpu);
            let plain = arch::build(name, &store.root(), 10).unwrap();
            randomise(&store);
            let folded = build(name, store.variables(), Kind::Float).unwrap();
            // Ragged, non-square input, like FiftyOne's native-size images
            // (Inception v3 needs 75 rows).
            let height = plain.min_input.max(72);
            let input = Tensor::randn([2, 3, height, 100], (Kind::Float, Device::Cpu));
            let (want, got) = tch::no_grad(|| {
                let want = plain.head(&plain.features(&input).unwrap()).unwrap();
                let got = folded
                    .head(&folded.features(&channels_last(&input)).unwrap())
                    .unwrap();
                (want, got)
            });
            assert_eq!(want.size(), got.size(), "{name}");
            let scale = want.abs().max().double_value(&[]).max(1.0);
            let difference = (&want - &got).abs().max().double_value(&[]);
            assert!(
                difference <= 1e-4 * scale,
                "{name}: max |diff| {difference} at scale {scale}"
            );
        }
    }

    #[test]
    fn channels_last_keeps_values_and_changes_strides() {
        let input = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        let output = channels_last(&input);
        assert_eq!(output.stride(), vec![60, 1, 15, 3]);
        assert!(output.equal(&input));
        let flat = Tensor::randn([4, 5], (Kind::Float, Device::Cpu));
        assert_eq!(channels_last(&flat).stride(), vec![5, 1]);
    }
}
