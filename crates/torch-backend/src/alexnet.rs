//! torchvision's AlexNet, with its `AdaptiveAvgPool2d((6, 6))`: any input
//! of at least 63x63 runs.
//!
//! Parameter names are torchvision's: `features.0`, `.3`, `.6`, `.8`, `.10`
//! and `classifier.1`, `.4`, `.6`.

use tch::nn;

use crate::arch::Network;
use crate::layers::{Conv, Sequence, adaptive_pool_flat, linear, max_pool, relu};

/// The smallest input side: the three 3x3 max-pools after the stride-4
/// convolution need 63 pixels.
pub(crate) const MIN_INPUT: i64 = 63;

/// AlexNet; the features end at `classifier.6`'s input, FiftyOne's
/// `embeddings_layer` for it.
pub(crate) fn build(root: &nn::Path<'_>, classes: i64) -> Network {
    let path = root / "features";
    let classifier = root / "classifier";
    let features = Sequence::default()
        .then(Conv::new(&path / 0, 3, 64, 11, 4, 2))
        .then_fn(relu)
        .then_fn(max_pool(3, 2, false))
        .then(Conv::new(&path / 3, 64, 192, 5, 1, 2))
        .then_fn(relu)
        .then_fn(max_pool(3, 2, false))
        .then(Conv::new(&path / 6, 192, 384, 3, 1, 1))
        .then_fn(relu)
        .then(Conv::new(&path / 8, 384, 256, 3, 1, 1))
        .then_fn(relu)
        .then(Conv::new(&path / 10, 256, 256, 3, 1, 1))
        .then_fn(relu)
        .then_fn(max_pool(3, 2, false))
        .then_fn(adaptive_pool_flat(6, 6))
        .then(linear(&classifier / 1, 256 * 6 * 6, 4096))
        .then_fn(relu)
        .then(linear(&classifier / 4, 4096, 4096))
        .then_fn(relu);
    let head = linear(&classifier / 6, 4096, classes);
    Network::new(features, head, "<classifier.6", MIN_INPUT)
}
