//! torchvision's DenseNets (121, 161, 169, 201), written once against a
//! [`Maker`]. tch's DenseNet pools with a fixed 7x7 window where
//! torchvision pools adaptively, which gives different numbers for any
//! input that is not 224x224 (FiftyOne keeps images at native size), so
//! zoo writes its own. Folded, each layer's `norm2` goes into `conv1`;
//! `norm1`, the transitions' `norm` and `norm5` follow a concatenation and
//! stay per-channel affine maps. The hosted checkpoints' legacy names are
//! renamed on loading (`checkpoint/renames.rs`).

use tch::{TchError, Tensor};

use crate::families::BuildOptions;
use crate::net::Network;
use crate::net::layers::Forward;
use crate::net::maker::{ConvShape, Maker, Stage, global_pool, relu_};

/// One dense layer: `norm1` (then ReLU), `conv1` with `norm2` (then ReLU),
/// `conv2`; its output is concatenated to its input.
struct DenseLayer {
    norm1: Stage,
    conv1: Stage,
    conv2: Stage,
}

enum DenseStage {
    Layer(DenseLayer),
    Transition { norm: Stage, conv: Stage },
}

struct Features {
    stem: Stage,
    stages: Vec<DenseStage>,
    norm5: Stage,
}

impl Forward for Features {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let ys = relu_(self.stem.forward(xs)?)?;
        let mut ys = ys.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
        for stage in &self.stages {
            ys = match stage {
                DenseStage::Layer(layer) => {
                    let hidden = relu_(layer.norm1.forward(&ys)?)?;
                    let hidden = relu_(layer.conv1.forward(&hidden)?)?;
                    let new = layer.conv2.forward(&hidden)?;
                    Tensor::f_cat(&[&ys, &new], 1)?
                }
                DenseStage::Transition { norm, conv } => conv
                    .forward(&relu_(norm.forward(&ys)?)?)?
                    .f_avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>)?,
            };
        }
        global_pool(&relu_(self.norm5.forward(&ys)?)?)
    }
}

/// DenseNet `name` with `classes` outputs from `m`.
pub(crate) fn build(
    name: &str,
    m: &dyn Maker,
    classes: i64,
    _options: BuildOptions,
) -> Option<Network> {
    // Stem width, growth rate, layers per block.
    let (c_in, growth, blocks): (i64, i64, &[i64]) = match name {
        "densenet121" => (64, 32, &[6, 12, 24, 16]),
        "densenet161" => (96, 48, &[6, 12, 36, 24]),
        "densenet169" => (64, 32, &[6, 12, 32, 32]),
        "densenet201" => (64, 32, &[6, 12, 48, 32]),
        _ => return None,
    };
    let bn_size = 4;
    let mut stages = Vec::new();
    let mut channels = c_in;
    for (block, &layers) in blocks.iter().enumerate() {
        let bp = format!("features.denseblock{}", block + 1);
        for layer in 0..layers {
            let lp = format!("{bp}.denselayer{}", layer + 1);
            let inner = bn_size * growth;
            stages.push(DenseStage::Layer(DenseLayer {
                norm1: m.batch_norm(&format!("{lp}.norm1"), channels, 1e-5)?,
                conv1: m.conv_bn(
                    &format!("{lp}.conv1"),
                    &format!("{lp}.norm2"),
                    ConvShape::new(channels, inner, 1),
                    1e-5,
                )?,
                conv2: m.conv(
                    &format!("{lp}.conv2"),
                    ConvShape::new(inner, growth, 3),
                    false,
                )?,
            }));
            channels += growth;
        }
        if block + 1 != blocks.len() {
            let tp = format!("features.transition{}", block + 1);
            stages.push(DenseStage::Transition {
                norm: m.batch_norm(&format!("{tp}.norm"), channels, 1e-5)?,
                conv: m.conv(
                    &format!("{tp}.conv"),
                    ConvShape::new(channels, channels / 2, 1),
                    false,
                )?,
            });
            channels /= 2;
        }
    }
    let features = Features {
        stem: m.conv_bn(
            "features.conv0",
            "features.norm0",
            ConvShape::new(3, c_in, 7).stride(2),
            1e-5,
        )?,
        stages,
        norm5: m.batch_norm("features.norm5", channels, 1e-5)?,
    };
    Some(Network::new(
        features,
        m.linear("classifier", channels, classes)?,
    ))
}
