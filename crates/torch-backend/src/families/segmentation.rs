//! torchvision's semantic segmenters `deeplabv3_*` and `fcn_*`: a ResNet
//! backbone (`resnet.rs`) whose last two stages trade their stride for
//! dilation (2, then 4), with the ASPP or FCN head, upsampled bilinearly
//! (`align_corners=False`) to the input size; the output is `[N, classes,
//! H, W]` scores. Their `aux_classifier` is not built: torchvision computes
//! it but FiftyOne reads only `out` (its tensors are dropped on loading).

use tch::{TchError, Tensor};

use crate::families::BuildOptions;
use crate::families::resnet::{Layout, ResNetBody, resnet_body};
use crate::net::Network;
use crate::net::layers::Forward;
use crate::net::maker::{ConvShape, Maker, Stage, relu_, run_chain};

/// torchvision's default `num_classes` for its segmentation builders (and
/// the hosted COCO-with-VOC-labels weights' 21 categories).
pub(crate) const SEGMENTER_CLASSES: i64 = 21;

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

/// Segmenter `name` (`deeplabv3_*`, `fcn_*`) with `classes` outputs from
/// `m`.
pub(crate) fn build(
    name: &str,
    m: &dyn Maker,
    classes: i64,
    _options: BuildOptions,
) -> Option<Network> {
    let (layers, head) = match name {
        "deeplabv3_resnet50" => ([3, 4, 6, 3], Head::DeepLab),
        "deeplabv3_resnet101" => ([3, 4, 23, 3], Head::DeepLab),
        "fcn_resnet50" => ([3, 4, 6, 3], Head::Fcn),
        "fcn_resnet101" => ([3, 4, 23, 3], Head::Fcn),
        _ => return None,
    };
    let layout = Layout {
        basic: false,
        layers,
        groups: 1,
        width_per_group: 64,
    };
    let backbone = resnet_body(m, "backbone.", layout, [false, true, true])?;
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
    Some(Network::whole(Segmenter {
        backbone,
        head: SegmentationHead(chain),
    }))
}
