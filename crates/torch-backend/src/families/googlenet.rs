//! torchvision's GoogLeNet: batch-norm `eps` 1e-3, ceil-mode pooling, the
//! 3x3 "5x5" branch torchvision keeps for its checkpoints,
//! `transform_input` as torchvision's builder sets it (`options.rs`); the
//! auxiliary classifiers are dropped (their tensors are left out on
//! loading).

use tch::{TchError, Tensor};

use crate::families::BuildOptions;
use crate::families::options::inception_transform_input;
use crate::net::Network;
use crate::net::layers::Forward;
use crate::net::maker::{ConvShape, Maker, Stage, global_pool, relu_};

/// GoogLeNet's `BasicConv2d` (batch-norm `eps` 1e-3), ReLU applied by the
/// caller.
fn basic_conv(m: &dyn Maker, p: &str, shape: ConvShape) -> Option<Stage> {
    m.conv_bn(&format!("{p}.conv"), &format!("{p}.bn"), shape, 1e-3)
}

struct Inception {
    branch1: Stage,
    branch2: [Stage; 2],
    branch3: [Stage; 2],
    branch4: Stage,
}

impl Inception {
    #[allow(clippy::too_many_arguments)]
    fn new(
        m: &dyn Maker,
        p: &str,
        c_in: i64,
        ch1x1: i64,
        ch3x3red: i64,
        ch3x3: i64,
        ch5x5red: i64,
        ch5x5: i64,
        pool_proj: i64,
    ) -> Option<Inception> {
        Some(Inception {
            branch1: basic_conv(m, &format!("{p}.branch1"), ConvShape::new(c_in, ch1x1, 1))?,
            branch2: [
                basic_conv(
                    m,
                    &format!("{p}.branch2.0"),
                    ConvShape::new(c_in, ch3x3red, 1),
                )?,
                basic_conv(
                    m,
                    &format!("{p}.branch2.1"),
                    ConvShape::new(ch3x3red, ch3x3, 3),
                )?,
            ],
            // torchvision's "5x5" branch is a 3x3 convolution (kept for
            // its checkpoints).
            branch3: [
                basic_conv(
                    m,
                    &format!("{p}.branch3.0"),
                    ConvShape::new(c_in, ch5x5red, 1),
                )?,
                basic_conv(
                    m,
                    &format!("{p}.branch3.1"),
                    ConvShape::new(ch5x5red, ch5x5, 3),
                )?,
            ],
            branch4: basic_conv(
                m,
                &format!("{p}.branch4.1"),
                ConvShape::new(c_in, pool_proj, 1),
            )?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let two = |[first, second]: &[Stage; 2]| -> Result<Tensor, TchError> {
            let hidden = relu_(first.forward(xs)?)?;
            relu_(second.forward(&hidden)?)
        };
        let pooled = xs.f_max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], true)?;
        Tensor::f_cat(
            &[
                relu_(self.branch1.forward(xs)?)?,
                two(&self.branch2)?,
                two(&self.branch3)?,
                relu_(self.branch4.forward(&pooled)?)?,
            ],
            1,
        )
    }
}

enum GoogLeNetStage {
    /// `nn.MaxPool2d(kernel, stride, ceil_mode=True)`.
    Pool(i64),
    Inception(Inception),
}

struct GoogLeNetFeatures {
    transform_input: bool,
    stem: [Stage; 3],
    stages: Vec<GoogLeNetStage>,
}

impl Forward for GoogLeNetFeatures {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let mut ys = if self.transform_input {
            inception_transform_input(xs)?
        } else {
            xs.shallow_clone()
        };
        let [conv1, conv2, conv3] = &self.stem;
        ys = relu_(conv1.forward(&ys)?)?;
        ys = ys.f_max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], true)?;
        ys = relu_(conv2.forward(&ys)?)?;
        ys = relu_(conv3.forward(&ys)?)?;
        for stage in &self.stages {
            ys = match stage {
                GoogLeNetStage::Pool(kernel) => {
                    ys.f_max_pool2d([*kernel, *kernel], [2, 2], [0, 0], [1, 1], true)?
                }
                GoogLeNetStage::Inception(block) => block.forward(&ys)?,
            };
        }
        global_pool(&ys)
    }
}

/// GoogLeNet with `classes` outputs from `m`.
pub(crate) fn build(
    _name: &str,
    m: &dyn Maker,
    classes: i64,
    options: BuildOptions,
) -> Option<Network> {
    let transform_input = options.transform_input;
    use GoogLeNetStage::{Inception as Block, Pool};
    let block = |p: &str, c: [i64; 7]| {
        Inception::new(m, p, c[0], c[1], c[2], c[3], c[4], c[5], c[6]).map(Block)
    };
    let stages = vec![
        Pool(3),
        block("inception3a", [192, 64, 96, 128, 16, 32, 32])?,
        block("inception3b", [256, 128, 128, 192, 32, 96, 64])?,
        Pool(3),
        block("inception4a", [480, 192, 96, 208, 16, 48, 64])?,
        block("inception4b", [512, 160, 112, 224, 24, 64, 64])?,
        block("inception4c", [512, 128, 128, 256, 24, 64, 64])?,
        block("inception4d", [512, 112, 144, 288, 32, 64, 64])?,
        block("inception4e", [528, 256, 160, 320, 32, 128, 128])?,
        Pool(2),
        block("inception5a", [832, 256, 160, 320, 32, 128, 128])?,
        block("inception5b", [832, 384, 192, 384, 48, 128, 128])?,
    ];
    let features = GoogLeNetFeatures {
        transform_input,
        stem: [
            basic_conv(m, "conv1", ConvShape::new(3, 64, 7).stride(2))?,
            basic_conv(m, "conv2", ConvShape::new(64, 64, 1))?,
            basic_conv(m, "conv3", ConvShape::new(64, 192, 3))?,
        ],
        stages,
    };
    Some(Network::new(features, m.linear("fc", 1024, classes)?))
}
