//! torchvision architectures written once against a [`Maker`], which gives
//! each convolution either as built (a variable-store graph whose variables
//! carry torchvision's names, the reference that loading checks names and
//! shapes against) or folded from the loaded weights (batch-norm folded into
//! the convolution before it, channels-last weights; see `folded.rs`).
//!
//! - ResNeXt (`resnext50_32x4d`, `resnext101_32x8d`) and Wide ResNet
//!   (`wide_resnet50_2`, `wide_resnet101_2`): torchvision's bottleneck
//!   ResNet with grouped / wider 3x3 convolutions.
//! - GoogLeNet: batch-norm `eps` 1e-3, ceil-mode pooling, the 3x3 "5x5"
//!   branch torchvision keeps for its checkpoints, `transform_input` as
//!   torchvision's builder sets it; the auxiliary classifiers are dropped
//!   (`checkpoint.rs`).
//! - MNASNet (0.5, 1.0; the version-1 stem of older checkpoints, see
//!   `checkpoint.rs`) and ShuffleNetV2 (x0.5, x1.0): global pooling as
//!   torchvision's `x.mean([2, 3])`.
//! - Semantic segmentation: `deeplabv3_*` and `fcn_*` on a ResNet backbone
//!   whose last two stages trade their stride for dilation (2, then 4),
//!   with the ASPP or FCN head, upsampled bilinearly (`align_corners=False`)
//!   to the input size. Their `aux_classifier` is not built: torchvision
//!   computes it but FiftyOne reads only `out`.

use tch::nn;
use tch::{TchError, Tensor};

use crate::checkpoint::renames::BuildOptions;
use crate::net::Network;
use crate::net::fold::Weights;
use crate::net::layers::{Conv, Forward};

/// One stage of a network.
type Stage = Box<dyn Forward>;

impl Forward for Stage {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        (**self).forward(xs)
    }
}

/// The classifiers written against a [`Maker`]: here, and Inception v3 in
/// `inception.rs`.
pub(crate) const CLASSIFIERS: [&str; 10] = [
    "googlenet",
    "inception_v3",
    "mnasnet0_5",
    "mnasnet1_0",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "wide_resnet50_2",
    "wide_resnet101_2",
];

/// The semantic segmenters written here: their output is `[N, classes, H,
/// W]` scores at the input's size.
pub(crate) const SEGMENTERS: [&str; 4] = [
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "fcn_resnet50",
    "fcn_resnet101",
];

/// torchvision's default `num_classes` for its segmentation builders (and
/// the hosted COCO-with-VOC-labels weights' 21 categories).
pub(crate) const SEGMENTER_CLASSES: i64 = 21;

/// A convolution's shape and hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvShape {
    c_in: i64,
    c_out: i64,
    /// Rows, then columns.
    kernel: [i64; 2],
    stride: i64,
    /// Rows, then columns.
    padding: [i64; 2],
    dilation: i64,
    groups: i64,
}

impl ConvShape {
    /// A `kernel` x `kernel` convolution, stride 1, "same" padding.
    pub(crate) fn new(c_in: i64, c_out: i64, kernel: i64) -> ConvShape {
        ConvShape::rectangular(c_in, c_out, [kernel, kernel])
    }

    /// A `rows` x `columns` convolution, stride 1, "same" padding
    /// (torchvision's `kernel_size=(7, 1), padding=(3, 0)`).
    pub(crate) fn rectangular(c_in: i64, c_out: i64, [rows, columns]: [i64; 2]) -> ConvShape {
        ConvShape {
            c_in,
            c_out,
            kernel: [rows, columns],
            stride: 1,
            padding: [(rows - 1) / 2, (columns - 1) / 2],
            dilation: 1,
            groups: 1,
        }
    }

    pub(crate) fn stride(self, stride: i64) -> ConvShape {
        ConvShape { stride, ..self }
    }

    /// No padding (torchvision's `BasicConv2d` default in Inception v3).
    pub(crate) fn unpadded(self) -> ConvShape {
        ConvShape {
            padding: [0, 0],
            ..self
        }
    }

    /// Dilation `dilation`, with the padding that keeps the size
    /// (torchvision's `padding=dilation` for 3x3 kernels).
    fn dilation(self, dilation: i64) -> ConvShape {
        let [rows, columns] = self.kernel;
        ConvShape {
            dilation,
            padding: [dilation * (rows - 1) / 2, dilation * (columns - 1) / 2],
            ..self
        }
    }

    fn groups(self, groups: i64) -> ConvShape {
        ConvShape { groups, ..self }
    }

    fn depthwise(self) -> ConvShape {
        ConvShape {
            groups: self.c_in,
            ..self
        }
    }
}

/// Where a network's parameterised layers come from.
pub(crate) trait Maker {
    /// Convolution `conv` (no bias) then inference batch-norm `bn` with
    /// `eps`: two stages as built, one folded.
    fn conv_bn(&self, conv: &str, bn: &str, shape: ConvShape, eps: f64) -> Option<Stage>;
    /// Convolution `conv`, with a bias when `bias`.
    fn conv(&self, conv: &str, shape: ConvShape, bias: bool) -> Option<Stage>;
    /// `nn.Linear(c_in, c_out)` named `name`.
    fn linear(&self, name: &str, c_in: i64, c_out: i64) -> Option<Stage>;
}

/// The built graph: variables created under `root` with torchvision's
/// names.
pub(crate) struct Reference<'a, 'b>(pub(crate) &'a nn::Path<'b>);

impl<'b> Reference<'_, 'b> {
    fn path(&self, name: &str) -> nn::Path<'b> {
        let mut parts = name.split('.');
        let mut path = self.0 / parts.next().unwrap_or_default();
        for part in parts {
            path = &path / part;
        }
        path
    }
}

/// An inference-mode batch-norm with its own `eps`.
struct BatchNormEps {
    bn: nn::BatchNorm,
    eps: f64,
}

impl Forward for BatchNormEps {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        Tensor::f_batch_norm(
            xs,
            self.bn.ws.as_ref(),
            self.bn.bs.as_ref(),
            Some(&self.bn.running_mean),
            Some(&self.bn.running_var),
            false,
            0.1,
            self.eps,
            true,
        )
    }
}

/// A linear layer from its tensors.
struct Dense {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Forward for Dense {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        xs.f_linear(&self.weight, self.bias.as_ref())
    }
}

fn reference_conv(path: nn::Path<'_>, shape: ConvShape, bias: bool) -> Conv {
    // The configuration's stride, padding and dilation only matter to
    // tch's own forward, which is not used: the variables' names, shapes
    // and initialisation depend on the kernel, groups and bias.
    let config = nn::ConvConfigND::<[i64; 2]> {
        groups: shape.groups,
        bias,
        ..Default::default()
    };
    let conv = nn::conv(path, shape.c_in, shape.c_out, shape.kernel, config);
    Conv::from_parts(conv.ws, conv.bs, shape.stride, 0, shape.groups)
        .padded(shape.padding)
        .dilated(shape.dilation)
}

impl Maker for Reference<'_, '_> {
    fn conv_bn(&self, conv: &str, bn: &str, shape: ConvShape, eps: f64) -> Option<Stage> {
        let conv = reference_conv(self.path(conv), shape, false);
        let config = nn::BatchNormConfig {
            eps,
            ..Default::default()
        };
        let bn = nn::batch_norm2d(self.path(bn), shape.c_out, config);
        Some(Box::new(
            crate::net::layers::Sequence::default()
                .then(conv)
                .then(BatchNormEps { bn, eps }),
        ))
    }

    fn conv(&self, conv: &str, shape: ConvShape, bias: bool) -> Option<Stage> {
        Some(Box::new(reference_conv(self.path(conv), shape, bias)))
    }

    fn linear(&self, name: &str, c_in: i64, c_out: i64) -> Option<Stage> {
        let linear = nn::linear(self.path(name), c_in, c_out, Default::default());
        Some(Box::new(Dense {
            weight: linear.ws,
            bias: linear.bs,
        }))
    }
}

/// The folded graph, from the loaded weights (which loading checked
/// against the reference: every name is there with its shape).
pub(crate) struct Folding<'a>(pub(crate) &'a Weights);

impl Maker for Folding<'_> {
    fn conv_bn(&self, conv: &str, bn: &str, shape: ConvShape, eps: f64) -> Option<Stage> {
        let w = self.0;
        let weight = w.f64(&format!("{conv}.weight"))?;
        let (scale, shift) = w.batch_norm_eps(bn, eps)?;
        let weight = weight * scale.view([-1, 1, 1, 1]);
        Some(Box::new(
            Conv::from_parts(
                w.finish(&weight),
                Some(shift.to_kind(w.kind)),
                shape.stride,
                0,
                shape.groups,
            )
            .padded(shape.padding)
            .dilated(shape.dilation),
        ))
    }

    fn conv(&self, conv: &str, shape: ConvShape, bias: bool) -> Option<Stage> {
        let w = self.0;
        let weight = w.f64(&format!("{conv}.weight"))?;
        let bias = if bias {
            Some(w.f64(&format!("{conv}.bias"))?.to_kind(w.kind))
        } else {
            None
        };
        Some(Box::new(
            Conv::from_parts(w.finish(&weight), bias, shape.stride, 0, shape.groups)
                .padded(shape.padding)
                .dilated(shape.dilation),
        ))
    }

    fn linear(&self, name: &str, _c_in: i64, _c_out: i64) -> Option<Stage> {
        let w = self.0;
        let tensor = |part: &str| {
            w.by_name
                .get(&format!("{name}.{part}"))
                .map(|tensor| tensor.to_kind(w.kind))
        };
        Some(Box::new(Dense {
            weight: tensor("weight")?,
            bias: Some(tensor("bias")?),
        }))
    }
}

/// Builds architecture `name` (one of [`CLASSIFIERS`] or [`SEGMENTERS`])
/// from `maker`, with `classes` outputs (read from the weights when
/// folding).
pub(crate) fn build(
    name: &str,
    maker: &dyn Maker,
    classes: i64,
    options: BuildOptions,
) -> Option<Network> {
    match name {
        "resnext50_32x4d" => resnet_classifier(maker, [3, 4, 6, 3], 32, 4, classes),
        "resnext101_32x8d" => resnet_classifier(maker, [3, 4, 23, 3], 32, 8, classes),
        "wide_resnet50_2" => resnet_classifier(maker, [3, 4, 6, 3], 1, 128, classes),
        "wide_resnet101_2" => resnet_classifier(maker, [3, 4, 23, 3], 1, 128, classes),
        "googlenet" => googlenet(maker, classes, options.transform_input),
        "inception_v3" => {
            crate::families::inception::build(maker, classes, options.transform_input)
        }
        "mnasnet0_5" => mnasnet(maker, 0.5, classes, options.mnasnet_v1_stem),
        "mnasnet1_0" => mnasnet(maker, 1.0, classes, options.mnasnet_v1_stem),
        "shufflenet_v2_x0_5" => shufflenet(maker, [24, 48, 96, 192, 1024], classes),
        "shufflenet_v2_x1_0" => shufflenet(maker, [24, 116, 232, 464, 1024], classes),
        "deeplabv3_resnet50" => segmenter(maker, [3, 4, 6, 3], Head::DeepLab, classes),
        "deeplabv3_resnet101" => segmenter(maker, [3, 4, 23, 3], Head::DeepLab, classes),
        "fcn_resnet50" => segmenter(maker, [3, 4, 6, 3], Head::Fcn, classes),
        "fcn_resnet101" => segmenter(maker, [3, 4, 23, 3], Head::Fcn, classes),
        _ => None,
    }
}

fn relu_(mut xs: Tensor) -> Result<Tensor, TchError> {
    let _ = xs.f_relu_()?;
    Ok(xs)
}

/// torchvision's `x.mean([2, 3])`.
fn spatial_mean(xs: &Tensor) -> Result<Tensor, TchError> {
    xs.f_mean_dim([2i64, 3].as_slice(), false, None::<tch::Kind>)
}

fn global_pool(xs: &Tensor) -> Result<Tensor, TchError> {
    xs.f_adaptive_avg_pool2d([1, 1])?.f_flatten(1, -1)
}

/// `(stage, ReLU after it)` pairs run in order.
fn run_chain(chain: &[(Stage, bool)], xs: &Tensor) -> Result<Tensor, TchError> {
    let mut ys = xs.shallow_clone();
    for (stage, relu) in chain {
        ys = stage.forward(&ys)?;
        if *relu {
            ys = relu_(ys)?;
        }
    }
    Ok(ys)
}

// ---------------------------------------------------------------- ResNet

/// One bottleneck block (conv1 1x1, conv2 3x3 grouped/dilated, conv3 1x1).
struct Bottleneck {
    conv1: Stage,
    conv2: Stage,
    conv3: Stage,
    downsample: Option<Stage>,
}

impl Bottleneck {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let hidden = relu_(self.conv1.forward(xs)?)?;
        let hidden = relu_(self.conv2.forward(&hidden)?)?;
        let mut ys = self.conv3.forward(&hidden)?;
        let _ = match &self.downsample {
            Some(conv) => ys.f_add_(&conv.forward(xs)?)?,
            None => ys.f_add_(xs)?,
        };
        relu_(ys)
    }
}

/// A bottleneck ResNet up to `layer4`, pooled or not.
struct ResNetBody {
    stem: Stage,
    blocks: Vec<Bottleneck>,
    pool: bool,
}

impl Forward for ResNetBody {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let ys = relu_(self.stem.forward(xs)?)?;
        let mut ys = ys.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
        for block in &self.blocks {
            ys = block.forward(&ys)?;
        }
        if self.pool { global_pool(&ys) } else { Ok(ys) }
    }
}

/// torchvision's `ResNet` with `Bottleneck` blocks, parameters under
/// `prefix`; `dilate` is `replace_stride_with_dilation`.
fn resnet_body(
    m: &dyn Maker,
    prefix: &str,
    layers: [usize; 4],
    groups: i64,
    width_per_group: i64,
    dilate: [bool; 3],
) -> Option<ResNetBody> {
    let mut blocks = Vec::new();
    let mut inplanes = 64;
    let mut dilation = 1;
    for (index, &count) in layers.iter().enumerate() {
        let planes = 64 << index;
        let mut stride = if index == 0 { 1 } else { 2 };
        let previous = dilation;
        if index > 0 && dilate[index - 1] {
            dilation *= stride;
            stride = 1;
        }
        let width = planes * width_per_group / 64 * groups;
        for block in 0..count {
            let p = format!("{prefix}layer{}.{block}", index + 1);
            let (stride, block_dilation) = if block == 0 {
                (stride, previous)
            } else {
                (1, dilation)
            };
            let downsample = if block == 0 && (stride != 1 || inplanes != planes * 4) {
                Some(m.conv_bn(
                    &format!("{p}.downsample.0"),
                    &format!("{p}.downsample.1"),
                    ConvShape::new(inplanes, planes * 4, 1).stride(stride),
                    1e-5,
                )?)
            } else {
                None
            };
            let conv = |n: u32, shape: ConvShape| {
                m.conv_bn(&format!("{p}.conv{n}"), &format!("{p}.bn{n}"), shape, 1e-5)
            };
            blocks.push(Bottleneck {
                conv1: conv(1, ConvShape::new(inplanes, width, 1))?,
                conv2: conv(
                    2,
                    ConvShape::new(width, width, 3)
                        .stride(stride)
                        .dilation(block_dilation)
                        .groups(groups),
                )?,
                conv3: conv(3, ConvShape::new(width, planes * 4, 1))?,
                downsample,
            });
            inplanes = planes * 4;
        }
    }
    Some(ResNetBody {
        stem: m.conv_bn(
            &format!("{prefix}conv1"),
            &format!("{prefix}bn1"),
            ConvShape::new(3, 64, 7).stride(2),
            1e-5,
        )?,
        blocks,
        pool: dilate == [false; 3],
    })
}

fn resnet_classifier(
    m: &dyn Maker,
    layers: [usize; 4],
    groups: i64,
    width_per_group: i64,
    classes: i64,
) -> Option<Network> {
    let body = resnet_body(m, "", layers, groups, width_per_group, [false; 3])?;
    Some(Network::new(body, m.linear("fc", 2048, classes)?, "<fc", 1))
}

// ---------------------------------------------------------- Segmentation

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    DeepLab,
    Fcn,
}

/// torchvision's `ASPP` (atrous rates 12, 24, 36; 256 channels).
struct Aspp {
    branches: Vec<Stage>,
    pooling: Stage,
    project: Stage,
}

impl Forward for Aspp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let size = xs.size();
        let mut outputs = Vec::with_capacity(self.branches.len() + 1);
        for branch in &self.branches {
            outputs.push(relu_(branch.forward(xs)?)?);
        }
        let pooled = relu_(self.pooling.forward(&xs.f_adaptive_avg_pool2d([1, 1])?)?)?;
        outputs.push(pooled.f_upsample_bilinear2d(
            [size[2], size[3]],
            false,
            None::<f64>,
            None::<f64>,
        )?);
        relu_(self.project.forward(&Tensor::f_cat(&outputs, 1)?)?)
    }
}

/// The segmentation head: `(stage, ReLU after it)` pairs.
struct SegmentationHead(Vec<(Stage, bool)>);

/// Backbone, head, then bilinear upsampling to the input's size.
struct Segmenter {
    backbone: ResNetBody,
    head: SegmentationHead,
}

impl Forward for Segmenter {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let size = xs.size();
        let features = self.backbone.forward(xs)?;
        let scores = run_chain(&self.head.0, &features)?;
        scores.f_upsample_bilinear2d([size[2], size[3]], false, None::<f64>, None::<f64>)
    }
}

fn segmenter(m: &dyn Maker, layers: [usize; 4], head: Head, classes: i64) -> Option<Network> {
    let backbone = resnet_body(m, "backbone.", layers, 1, 64, [false, true, true])?;
    let bn = |conv: &str, bn: &str, shape: ConvShape| m.conv_bn(conv, bn, shape, 1e-5);
    let chain = match head {
        Head::DeepLab => {
            let a = "classifier.0";
            let mut branches = vec![bn(
                &format!("{a}.convs.0.0"),
                &format!("{a}.convs.0.1"),
                ConvShape::new(2048, 256, 1),
            )?];
            for (index, rate) in [12, 24, 36].into_iter().enumerate() {
                branches.push(bn(
                    &format!("{a}.convs.{}.0", index + 1),
                    &format!("{a}.convs.{}.1", index + 1),
                    ConvShape::new(2048, 256, 3).dilation(rate),
                )?);
            }
            let aspp = Aspp {
                branches,
                pooling: bn(
                    &format!("{a}.convs.4.1"),
                    &format!("{a}.convs.4.2"),
                    ConvShape::new(2048, 256, 1),
                )?,
                project: bn(
                    &format!("{a}.project.0"),
                    &format!("{a}.project.1"),
                    ConvShape::new(5 * 256, 256, 1),
                )?,
            };
            vec![
                (Box::new(aspp) as Stage, false),
                (
                    bn("classifier.1", "classifier.2", ConvShape::new(256, 256, 3))?,
                    true,
                ),
                (
                    m.conv("classifier.4", ConvShape::new(256, classes, 1), true)?,
                    false,
                ),
            ]
        }
        Head::Fcn => vec![
            (
                bn("classifier.0", "classifier.1", ConvShape::new(2048, 512, 3))?,
                true,
            ),
            (
                m.conv("classifier.4", ConvShape::new(512, classes, 1), true)?,
                false,
            ),
        ],
    };
    Some(Network::whole(
        Segmenter {
            backbone,
            head: SegmentationHead(chain),
        },
        1,
    ))
}

// -------------------------------------------------------------- GoogLeNet

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
            crate::checkpoint::renames::inception_transform_input(xs)?
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

fn googlenet(m: &dyn Maker, classes: i64, transform_input: bool) -> Option<Network> {
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
    // torchvision's `min_size` for GoogLeNet is 15x15.
    Some(Network::new(
        features,
        m.linear("fc", 1024, classes)?,
        "<fc",
        15,
    ))
}

// ---------------------------------------------------------------- MNASNet

/// A chain of convolutions with their ReLU flags, plus the input when
/// `residual`.
struct Residual {
    chain: Vec<(Stage, bool)>,
    residual: bool,
}

impl Residual {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let mut ys = run_chain(&self.chain, xs)?;
        if self.residual {
            let _ = ys.f_add_(xs)?;
        }
        Ok(ys)
    }
}

struct MnasNetFeatures(Vec<Residual>);

impl Forward for MnasNetFeatures {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let mut ys = xs.shallow_clone();
        for layer in &self.0 {
            ys = layer.forward(&ys)?;
        }
        spatial_mean(&ys)
    }
}

/// torchvision's `_round_to_multiple_of(value, 8)` (round-up bias 0.9).
fn round_to_multiple_of_8(value: f64) -> i64 {
    let rounded = (8i64).max((value + 4.0) as i64 / 8 * 8);
    if rounded as f64 >= 0.9 * value {
        rounded
    } else {
        rounded + 8
    }
}

/// torchvision's MNASNet; `v1_stem`: the fixed 32/16-channel stem of
/// checkpoints saved before torchvision's version 2 (its
/// `_load_from_state_dict` patches the model the same way for them).
fn mnasnet(m: &dyn Maker, alpha: f64, classes: i64, v1_stem: bool) -> Option<Network> {
    let mut depths: Vec<i64> = [32.0, 16.0, 24.0, 40.0, 80.0, 96.0, 192.0, 320.0]
        .iter()
        .map(|depth| round_to_multiple_of_8(depth * alpha))
        .collect();
    if v1_stem {
        depths[0] = 32;
        depths[1] = 16;
    }
    let cb = |p: &str, conv: usize, shape: ConvShape| {
        m.conv_bn(
            &format!("{p}.{conv}"),
            &format!("{p}.{}", conv + 1),
            shape,
            1e-5,
        )
    };
    let mut layers = vec![Residual {
        chain: vec![
            (
                cb("layers", 0, ConvShape::new(3, depths[0], 3).stride(2))?,
                true,
            ),
            (
                cb(
                    "layers",
                    3,
                    ConvShape::new(depths[0], depths[0], 3).depthwise(),
                )?,
                true,
            ),
            (
                cb("layers", 6, ConvShape::new(depths[0], depths[1], 1))?,
                false,
            ),
        ],
        residual: false,
    }];
    // (kernel, stride, expansion, repeats) of layers.8 to layers.13.
    let stacks = [
        (3, 2, 3, 3),
        (5, 2, 3, 3),
        (5, 2, 6, 3),
        (3, 1, 6, 2),
        (5, 2, 6, 4),
        (3, 1, 6, 1),
    ];
    for (index, (kernel, stride, expansion, repeats)) in stacks.into_iter().enumerate() {
        let (c_in, c_out) = (depths[index + 1], depths[index + 2]);
        for repeat in 0..repeats {
            let p = format!("layers.{}.{repeat}.layers", index + 8);
            let (c_in, stride) = if repeat == 0 {
                (c_in, stride)
            } else {
                (c_out, 1)
            };
            let mid = c_in * expansion;
            layers.push(Residual {
                chain: vec![
                    (cb(&p, 0, ConvShape::new(c_in, mid, 1))?, true),
                    (
                        cb(
                            &p,
                            3,
                            ConvShape::new(mid, mid, kernel).stride(stride).depthwise(),
                        )?,
                        true,
                    ),
                    (cb(&p, 6, ConvShape::new(mid, c_out, 1))?, false),
                ],
                residual: c_in == c_out && stride == 1,
            });
        }
    }
    layers.push(Residual {
        chain: vec![(cb("layers", 14, ConvShape::new(depths[7], 1280, 1))?, true)],
        residual: false,
    });
    Some(Network::new(
        MnasNetFeatures(layers),
        m.linear("classifier.1", 1280, classes)?,
        "<classifier.1",
        1,
    ))
}

// ------------------------------------------------------------- ShuffleNet

struct ShuffleUnit {
    /// Present in the stride-2 units; the stride-1 units pass the first
    /// half of the channels through.
    branch1: Option<Vec<(Stage, bool)>>,
    branch2: Vec<(Stage, bool)>,
}

impl ShuffleUnit {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let joined = match &self.branch1 {
            Some(branch1) => {
                Tensor::f_cat(&[run_chain(branch1, xs)?, run_chain(&self.branch2, xs)?], 1)?
            }
            None => {
                let halves = xs.f_chunk(2, 1)?;
                let [first, second] = halves.as_slice() else {
                    return Err(TchError::Shape(
                        "a shuffle unit's input has fewer than 2 channels".into(),
                    ));
                };
                Tensor::f_cat(
                    &[first.shallow_clone(), run_chain(&self.branch2, second)?],
                    1,
                )?
            }
        };
        channel_shuffle(&joined)
    }
}

/// torchvision's `channel_shuffle(x, 2)`, done on the `NHWC` view so that a
/// channels-last tensor stays channels-last (the values are the same).
fn channel_shuffle(xs: &Tensor) -> Result<Tensor, TchError> {
    let size = xs.size();
    let [n, c, h, w] = size.as_slice() else {
        return Err(TchError::Shape(format!(
            "channel shuffle of a {size:?} tensor"
        )));
    };
    xs.f_permute([0, 2, 3, 1])?
        .f_reshape([*n, *h, *w, 2, c / 2])?
        .f_transpose(3, 4)?
        .f_contiguous()?
        .f_view([*n, *h, *w, *c])?
        .f_permute([0, 3, 1, 2])
}

struct ShuffleNetFeatures {
    conv1: Stage,
    units: Vec<ShuffleUnit>,
    conv5: Stage,
}

impl Forward for ShuffleNetFeatures {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let ys = relu_(self.conv1.forward(xs)?)?;
        let mut ys = ys.f_max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)?;
        for unit in &self.units {
            ys = unit.forward(&ys)?;
        }
        spatial_mean(&relu_(self.conv5.forward(&ys)?)?)
    }
}

fn shufflenet(m: &dyn Maker, channels: [i64; 5], classes: i64) -> Option<Network> {
    let cb = |p: &str, conv: usize, shape: ConvShape| {
        m.conv_bn(
            &format!("{p}.{conv}"),
            &format!("{p}.{}", conv + 1),
            shape,
            1e-5,
        )
    };
    let mut units = Vec::new();
    let mut c_in = channels[0];
    for (stage, repeats) in [4, 8, 4].into_iter().enumerate() {
        let c_out = channels[stage + 1];
        let half = c_out / 2;
        for unit in 0..repeats {
            let p = format!("stage{}.{unit}", stage + 2);
            let stride = if unit == 0 { 2 } else { 1 };
            let b1 = format!("{p}.branch1");
            let b2 = format!("{p}.branch2");
            let branch1 = if stride > 1 {
                Some(vec![
                    (
                        cb(&b1, 0, ConvShape::new(c_in, c_in, 3).stride(2).depthwise())?,
                        false,
                    ),
                    (cb(&b1, 2, ConvShape::new(c_in, half, 1))?, true),
                ])
            } else {
                None
            };
            let first_in = if stride > 1 { c_in } else { half };
            units.push(ShuffleUnit {
                branch1,
                branch2: vec![
                    (cb(&b2, 0, ConvShape::new(first_in, half, 1))?, true),
                    (
                        cb(
                            &b2,
                            3,
                            ConvShape::new(half, half, 3).stride(stride).depthwise(),
                        )?,
                        false,
                    ),
                    (cb(&b2, 5, ConvShape::new(half, half, 1))?, true),
                ],
            });
            c_in = c_out;
        }
    }
    let features = ShuffleNetFeatures {
        conv1: cb("conv1", 0, ConvShape::new(3, channels[0], 3).stride(2))?,
        units,
        conv5: cb("conv5", 0, ConvShape::new(c_in, channels[4], 1))?,
    };
    Some(Network::new(
        features,
        m.linear("fc", channels[4], classes)?,
        "<fc",
        1,
    ))
}

#[cfg(test)]
mod tests {
    use tch::nn::VarStore;
    use tch::{Device, Kind, Tensor};

    use super::{Reference, build, round_to_multiple_of_8};
    use crate::checkpoint::renames::BuildOptions;
    use crate::net::testing::{assert_close, logits, randomise};

    /// MNASNet 0.5's hosted checkpoint is a version-1 one: its stem is
    /// 32/16 channels (torchvision's loader patches the model to it). The
    /// stem's shape selects it, and the folded graph of that layout
    /// computes what the built one does.
    #[test]
    fn mnasnet_version_one_stem_is_read_from_the_checkpoint_and_runs() {
        let store = VarStore::new(Device::Cpu);
        let v1 = BuildOptions::default().for_checkpoint(
            "mnasnet0_5",
            &[(
                "layers.0.weight".into(),
                Tensor::zeros([32, 3, 3, 3], tch::kind::FLOAT_CPU),
            )],
        );
        assert!(v1.mnasnet_v1_stem);
        let v2 = BuildOptions::default().for_checkpoint(
            "mnasnet0_5",
            &[(
                "layers.0.weight".into(),
                Tensor::zeros([16, 3, 3, 3], tch::kind::FLOAT_CPU),
            )],
        );
        assert!(!v2.mnasnet_v1_stem);
        let built = build("mnasnet0_5", &Reference(&store.root()), 10, v1).unwrap();
        let shapes = store.variables();
        assert_eq!(shapes["layers.0.weight"].size(), [32, 3, 3, 3]);
        assert_eq!(shapes["layers.6.weight"].size(), [16, 32, 1, 1]);
        assert_eq!(shapes["layers.8.0.layers.0.weight"].size(), [48, 16, 1, 1]);
        randomise(&store);
        let folded =
            crate::net::fold::build_with("mnasnet0_5", store.variables(), Kind::Float, v1).unwrap();
        let input = Tensor::randn([2, 3, 40, 56], (Kind::Float, Device::Cpu));
        let want = logits(&built, &input);
        let got = logits(&folded, &crate::net::fold::channels_last(&input));
        assert_close(&got, &want, "mnasnet0_5 version 1");
    }

    /// torchvision's `_get_depths` for MNASNet 0.5 and 1.0.
    #[test]
    fn mnasnet_depths_round_like_torchvision() {
        let depths = |alpha: f64| -> Vec<i64> {
            [32.0, 16.0, 24.0, 40.0, 80.0, 96.0, 192.0, 320.0]
                .iter()
                .map(|depth| round_to_multiple_of_8(depth * alpha))
                .collect()
        };
        assert_eq!(depths(1.0), vec![32, 16, 24, 40, 80, 96, 192, 320]);
        assert_eq!(depths(0.5), vec![16, 8, 16, 24, 40, 48, 96, 160]);
    }
}
