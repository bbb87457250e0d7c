//! torchvision's ResNets (`resnet18` to `resnet152`, `BasicBlock` and
//! `Bottleneck`), ResNeXt (`resnext50_32x4d`, `resnext101_32x8d`: grouped
//! 3x3 convolutions) and Wide ResNet (`wide_resnet50_2`,
//! `wide_resnet101_2`: wider 3x3 convolutions), written once against a
//! [`Maker`]: built for loading, run folded. The body is also the
//! segmenters' backbone (`segmentation.rs`).

use tch::{TchError, Tensor};

use crate::families::BuildOptions;
use crate::net::Network;
use crate::net::layers::Forward;
use crate::net::maker::{ConvShape, Maker, Stage, global_pool, relu_};

/// One residual block: `BasicBlock` (two 3x3 convolutions, the first
/// strided) or `Bottleneck` (1x1, 3x3 strided, grouped or dilated, 1x1),
/// each convolution with its batch-norm, the sum and ReLUs in place.
struct Block {
    convs: Vec<Stage>,
    downsample: Option<Stage>,
}

impl Block {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let Some((last, first)) = self.convs.split_last() else {
            return Ok(xs.shallow_clone());
        };
        let mut hidden = xs.shallow_clone();
        for conv in first {
            hidden = relu_(conv.forward(&hidden)?)?;
        }
        let mut ys = last.forward(&hidden)?;
        let _ = match &self.downsample {
            Some(conv) => ys.f_add_(&conv.forward(xs)?)?,
            None => ys.f_add_(xs)?,
        };
        relu_(ys)
    }
}

/// A ResNet up to `layer4`, pooled or not.
pub(crate) struct ResNetBody {
    stem: Stage,
    blocks: Vec<Block>,
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

/// How a ResNet's stages are made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// `BasicBlock`s (ResNet-18 and -34) rather than `Bottleneck`s.
    pub(crate) basic: bool,
    /// Blocks per stage.
    pub(crate) layers: [usize; 4],
    /// The 3x3 convolutions' groups (ResNeXt's cardinality).
    pub(crate) groups: i64,
    /// `width_per_group` (64; Wide ResNet's 128).
    pub(crate) width_per_group: i64,
}

impl Layout {
    const fn bottleneck(layers: [usize; 4]) -> Layout {
        Layout {
            basic: false,
            layers,
            groups: 1,
            width_per_group: 64,
        }
    }
}

/// torchvision's `ResNet`, parameters under `prefix`; `dilate` is
/// `replace_stride_with_dilation` (bottleneck layouts only, as in
/// torchvision).
pub(crate) fn resnet_body(
    m: &dyn Maker,
    prefix: &str,
    layout: Layout,
    dilate: [bool; 3],
) -> Option<ResNetBody> {
    let Layout {
        basic,
        layers,
        groups,
        width_per_group,
    } = layout;
    let expansion = if basic { 1 } else { 4 };
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
            let c_out = planes * expansion;
            let downsample = if block == 0 && (stride != 1 || inplanes != c_out) {
                Some(m.conv_bn(
                    &format!("{p}.downsample.0"),
                    &format!("{p}.downsample.1"),
                    ConvShape::new(inplanes, c_out, 1).stride(stride),
                    1e-5,
                )?)
            } else {
                None
            };
            let conv = |n: u32, shape: ConvShape| {
                m.conv_bn(&format!("{p}.conv{n}"), &format!("{p}.bn{n}"), shape, 1e-5)
            };
            let convs = if basic {
                vec![
                    conv(1, ConvShape::new(inplanes, planes, 3).stride(stride))?,
                    conv(2, ConvShape::new(planes, planes, 3))?,
                ]
            } else {
                vec![
                    conv(1, ConvShape::new(inplanes, width, 1))?,
                    conv(
                        2,
                        ConvShape::new(width, width, 3)
                            .stride(stride)
                            .dilation(block_dilation)
                            .groups(groups),
                    )?,
                    conv(3, ConvShape::new(width, c_out, 1))?,
                ]
            };
            blocks.push(Block { convs, downsample });
            inplanes = c_out;
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

/// ResNet `name` (ResNet, ResNeXt, Wide ResNet) with `classes` outputs
/// from `m`.
pub(crate) fn build(
    name: &str,
    m: &dyn Maker,
    classes: i64,
    _options: BuildOptions,
) -> Option<Network> {
    let layout = match name {
        "resnet18" => Layout {
            basic: true,
            ..Layout::bottleneck([2, 2, 2, 2])
        },
        "resnet34" => Layout {
            basic: true,
            ..Layout::bottleneck([3, 4, 6, 3])
        },
        "resnet50" => Layout::bottleneck([3, 4, 6, 3]),
        "resnet101" => Layout::bottleneck([3, 4, 23, 3]),
        "resnet152" => Layout::bottleneck([3, 8, 36, 3]),
        "resnext50_32x4d" => Layout {
            groups: 32,
            width_per_group: 4,
            ..Layout::bottleneck([3, 4, 6, 3])
        },
        "resnext101_32x8d" => Layout {
            groups: 32,
            width_per_group: 8,
            ..Layout::bottleneck([3, 4, 23, 3])
        },
        "wide_resnet50_2" => Layout {
            width_per_group: 128,
            ..Layout::bottleneck([3, 4, 6, 3])
        },
        "wide_resnet101_2" => Layout {
            width_per_group: 128,
            ..Layout::bottleneck([3, 4, 23, 3])
        },
        _ => return None,
    };
    let width = if layout.basic { 512 } else { 2048 };
    let body = resnet_body(m, "", layout, [false; 3])?;
    Some(Network::new(body, m.linear("fc", width, classes)?))
}
