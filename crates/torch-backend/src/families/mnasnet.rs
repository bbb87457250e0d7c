//! torchvision's MNASNet (0.5, 1.0): global pooling as torchvision's
//! `x.mean([2, 3])`; the version-1 stem of older checkpoints
//! ([`version_one_stem`]).

use tch::{TchError, Tensor};

use crate::families::BuildOptions;
use crate::net::Network;
use crate::net::layers::Forward;
use crate::net::maker::{ConvShape, Maker, Stage, run_chain, spatial_mean};

/// These options adjusted to checkpoint `tensors`, as torchvision's loader
/// adjusts the model: MNASNet's `_load_from_state_dict` gives a version-1
/// checkpoint (saved before torchvision 0.5; the hosted
/// `mnasnet0.5_top1_67.823-3ffadce67e.pth`) the fixed 32/16-channel stem
/// of that version whatever the width multiplier. The version lives in the
/// pickle's metadata, which zoo does not read; the stem's shape tells the
/// two apart (`layers.0.weight` has 32 output channels in version 1, `16`
/// in version 2 at width 0.5).
pub(crate) fn version_one_stem(
    options: BuildOptions,
    tensors: &[(String, Tensor)],
) -> BuildOptions {
    let v1 = tensors
        .iter()
        .any(|(name, tensor)| name == "layers.0.weight" && tensor.size().first() == Some(&32));
    BuildOptions {
        mnasnet_v1_stem: v1,
        ..options
    }
}

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
/// MNASNet `name` (`mnasnet0_5`, `mnasnet1_0`) with `classes` outputs
/// from `m`.
pub(crate) fn build(
    name: &str,
    m: &dyn Maker,
    classes: i64,
    options: BuildOptions,
) -> Option<Network> {
    let alpha = match name {
        "mnasnet0_5" => 0.5,
        "mnasnet1_0" => 1.0,
        _ => return None,
    };
    mnasnet(m, alpha, classes, options.mnasnet_v1_stem)
}

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
    ))
}

#[cfg(test)]
mod tests {
    use tch::nn::VarStore;
    use tch::{Device, Kind, Tensor};

    use super::{build, round_to_multiple_of_8};
    use crate::families::BuildOptions;
    use crate::net::maker::Reference;
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
            crate::families::build_folded("mnasnet0_5", store.variables(), Kind::Float, v1)
                .unwrap();
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
