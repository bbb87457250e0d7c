//! torchvision's VGG (`vgg11` to `vgg19`, with and without batch-norm),
//! with its `AdaptiveAvgPool2d((7, 7))`, so any input of at least 32x32
//! runs and gives torchvision's numbers (tch's VGG flattens without
//! pooling and accepts 224x224 only).
//!
//! Parameter names are torchvision's: `features.<i>` counts every layer of
//! the feature stack (convolutions, batch-norms, ReLUs, max-pools), the
//! classifier's linear layers are `classifier.0`, `.3` and `.6`.

use tch::nn;

use crate::net::Network;
use crate::net::layers::{BatchNorm, Conv, Sequence, adaptive_pool_flat, linear, max_pool, relu};

/// The smallest input side: five 2x2 max-pools need 32 pixels.
pub(crate) const MIN_INPUT: i64 = 32;

/// torchvision's `cfgs`: output channels per convolution, `0` for a
/// max-pool.
const A: &[i64] = &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0];
const B: &[i64] = &[
    64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0,
];
const D: &[i64] = &[
    64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
];
const E: &[i64] = &[
    64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0,
];

/// VGG `name` (`vgg11`, `vgg13_bn`, ...), or `None` for another name.
/// The features end at `classifier.6`'s input, FiftyOne's
/// `embeddings_layer` for these models.
pub(crate) fn build(name: &str, root: &nn::Path<'_>, classes: i64) -> Option<Network> {
    let (config, batch_norm) = match name {
        "vgg11" => (A, false),
        "vgg11_bn" => (A, true),
        "vgg13" => (B, false),
        "vgg13_bn" => (B, true),
        "vgg16" => (D, false),
        "vgg16_bn" => (D, true),
        "vgg19" => (E, false),
        "vgg19_bn" => (E, true),
        _ => return None,
    };
    let path = root / "features";
    let mut features = Sequence::default();
    let mut index = 0;
    let mut c_in = 3;
    for &c_out in config {
        if c_out == 0 {
            features = features.then_fn(max_pool(2, 2, false));
            index += 1;
            continue;
        }
        features = features.then(Conv::new(&path / index, c_in, c_out, 3, 1, 1));
        index += 1;
        if batch_norm {
            features = features.then(BatchNorm::new(&path / index, c_out));
            index += 1;
        }
        features = features.then_fn(relu);
        index += 1;
        c_in = c_out;
    }
    let classifier = root / "classifier";
    let features = features
        .then_fn(adaptive_pool_flat(7, 7))
        .then(linear(&classifier / 0, 512 * 7 * 7, 4096))
        .then_fn(relu)
        .then(linear(&classifier / 3, 4096, 4096))
        .then_fn(relu);
    let head = linear(&classifier / 6, 4096, classes);
    Some(Network::new(features, head))
}

#[cfg(test)]
mod tests {
    use tch::nn::{self, ModuleT, VarStore};
    use tch::{Device, Kind, Tensor};

    use super::build;
    use crate::net::testing::{assert_close, copy_variables, logits, randomise};

    type Reference = fn(&nn::Path<'_>, i64) -> nn::SequentialT;

    const VARIANTS: [(&str, Reference); 8] = [
        ("vgg11", tch::vision::vgg::vgg11),
        ("vgg11_bn", tch::vision::vgg::vgg11_bn),
        ("vgg13", tch::vision::vgg::vgg13),
        ("vgg13_bn", tch::vision::vgg::vgg13_bn),
        ("vgg16", tch::vision::vgg::vgg16),
        ("vgg16_bn", tch::vision::vgg::vgg16_bn),
        ("vgg19", tch::vision::vgg::vgg19),
        ("vgg19_bn", tch::vision::vgg::vgg19_bn),
    ];

    /// The oracle is `tch::vision::vgg` (a separate implementation, which
    /// reads torchvision's checkpoint keys), at 224x224, the one size it
    /// runs at: same weight names and shapes for all eight, same logits
    /// for both kinds (with and without batch-norm).
    #[test]
    fn vgg_equals_tch_vision_on_224_inputs() {
        for (name, reference) in VARIANTS {
            let ours_store = VarStore::new(Device::Cpu);
            let ours = build(name, &ours_store.root(), 10).unwrap();
            let their_store = VarStore::new(Device::Cpu);
            let theirs = reference(&their_store.root(), 10);
            copy_variables(&ours_store, &their_store);
            if name != "vgg11" && name != "vgg11_bn" {
                continue;
            }
            randomise(&ours_store);
            copy_variables(&ours_store, &their_store);
            let input = Tensor::randn([1, 3, 224, 224], (Kind::Float, Device::Cpu));
            let want = tch::no_grad(|| theirs.forward_t(&input, false));
            assert_close(&logits(&ours, &input), &want, name);
        }
    }

    /// tch's VGG fails on anything but 224x224; torchvision's (and zoo's)
    /// pools adaptively to 7x7, so any input of at least 32x32 runs.
    #[test]
    fn vgg_runs_on_non_224_inputs() {
        for (name, reference) in VARIANTS {
            let store = VarStore::new(Device::Cpu);
            let network = build(name, &store.root(), 10).unwrap();
            let sizes: &[(i64, i64)] = if name.starts_with("vgg11") {
                &[(150, 100), (200, 300), (32, 45)]
            } else {
                &[(48, 64)]
            };
            for &(height, width) in sizes {
                let input = Tensor::randn([1, 3, height, width], (Kind::Float, Device::Cpu));
                let features = tch::no_grad(|| network.features(&input)).unwrap();
                assert_eq!(features.size(), vec![1, 4096], "{name}");
                let output = logits(&network, &input);
                assert_eq!(output.size(), vec![1, 10], "{name} at {height}x{width}");
                assert!(
                    output.isfinite().all().int64_value(&[]) == 1,
                    "{name}: {output}"
                );
            }
            // The old path: tch's VGG cannot run these sizes at all.
            if name == "vgg11" {
                let their_store = VarStore::new(Device::Cpu);
                let theirs = reference(&their_store.root(), 10);
                let input = Tensor::zeros([1, 3, 150, 100], (Kind::Float, Device::Cpu));
                let guarded = crate::net::testing::Guarded(Box::new(theirs));
                assert!(crate::net::layers::Forward::forward(&guarded, &input).is_err());
            }
        }
    }
}
