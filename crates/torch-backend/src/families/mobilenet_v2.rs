//! torchvision's `mobilenet_v2`, written once against a [`Maker`]:
//! inverted residuals (1x1 expansion, 3x3 depthwise, 1x1 projection, each
//! with its batch-norm; ReLU6 after the first two, in place), global
//! average pooling, then `classifier.1` (`classifier.0` is dropout).

use tch::{TchError, Tensor};

use crate::families::BuildOptions;
use crate::net::Network;
use crate::net::layers::Forward;
use crate::net::maker::{ConvShape, Maker, Stage, global_pool};

/// MobileNetV2's inverted residual settings: (expansion, output channels,
/// repeats, first stride).
const SETTINGS: [(i64, i64, i64, i64); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// One inverted residual: convolutions with their ReLU6 flags.
struct InvertedResidual {
    convs: Vec<(Stage, bool)>,
    residual: bool,
}

struct Features {
    layers: Vec<InvertedResidual>,
}

impl Forward for Features {
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

/// MobileNetV2 with `classes` outputs from `m`.
pub(crate) fn build(
    _name: &str,
    m: &dyn Maker,
    classes: i64,
    _options: BuildOptions,
) -> Option<Network> {
    // `{p}.0` convolution, `{p}.1` batch-norm.
    let bn_conv = |p: &str, shape: ConvShape, relu6: bool| {
        Some((
            m.conv_bn(&format!("{p}.0"), &format!("{p}.1"), shape, 1e-5)?,
            relu6,
        ))
    };
    let mut c_in = 32;
    let mut layers = vec![InvertedResidual {
        convs: vec![bn_conv(
            "features.0",
            ConvShape::new(3, c_in, 3).stride(2),
            true,
        )?],
        residual: false,
    }];
    let mut index = 1;
    for (expand, c_out, repeats, stride) in SETTINGS {
        for repeat in 0..repeats {
            let stride = if repeat == 0 { stride } else { 1 };
            let p = format!("features.{index}.conv");
            let hidden = expand * c_in;
            let mut convs = Vec::new();
            let mut at = 0;
            if expand != 1 {
                convs.push(bn_conv(
                    &format!("{p}.0"),
                    ConvShape::new(c_in, hidden, 1),
                    true,
                )?);
                at = 1;
            }
            convs.push(bn_conv(
                &format!("{p}.{at}"),
                ConvShape::new(hidden, hidden, 3).stride(stride).depthwise(),
                true,
            )?);
            convs.push((
                m.conv_bn(
                    &format!("{p}.{}", at + 1),
                    &format!("{p}.{}", at + 2),
                    ConvShape::new(hidden, c_out, 1),
                    1e-5,
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
        convs: vec![bn_conv(
            &format!("features.{index}"),
            ConvShape::new(c_in, 1280, 1),
            true,
        )?],
        residual: false,
    });
    Some(Network::new(
        Features { layers },
        m.linear("classifier.1", 1280, classes)?,
    ))
}
