//! torchvision's ShuffleNetV2 (x0.5, x1.0): global pooling as
//! torchvision's `x.mean([2, 3])`.

use tch::{TchError, Tensor};

use crate::families::BuildOptions;
use crate::net::Network;
use crate::net::layers::Forward;
use crate::net::maker::{ConvShape, Maker, Stage, relu_, run_chain, spatial_mean};

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

/// ShuffleNetV2 `name` (x0.5, x1.0) with `classes` outputs from `m`.
pub(crate) fn build(
    name: &str,
    m: &dyn Maker,
    classes: i64,
    _options: BuildOptions,
) -> Option<Network> {
    let channels = match name {
        "shufflenet_v2_x0_5" => [24, 48, 96, 192, 1024],
        "shufflenet_v2_x1_0" => [24, 116, 232, 464, 1024],
        _ => return None,
    };
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
    ))
}
