//! torchvision's VGG (`vgg11` to `vgg19`, with and without batch-norm),
//! with its `AdaptiveAvgPool2d((7, 7))`, so any input of at least 32x32
//! runs and gives torchvision's numbers (tch's VGG flattens without
//! pooling and accepts 224x224 only).
//!
//! Parameter names are torchvision's: `features.<i>` counts every layer of
//! the feature stack (convolutions, batch-norms, ReLUs, max-pools), the
//! classifier's linear layers are `classifier.0`, `.3` and `.6`.

use tch::nn;

use crate::arch::Network;
use crate::layers::{BatchNorm, Conv, Sequence, adaptive_pool_flat, linear, max_pool, relu};

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
    Some(Network::new(features, head, "<classifier.6", MIN_INPUT))
}
