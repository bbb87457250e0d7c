//! torchvision's AlexNet, with its `AdaptiveAvgPool2d((6, 6))`: any input
//! of at least 63x63 runs.
//!
//! Parameter names are torchvision's: `features.0`, `.3`, `.6`, `.8`, `.10`
//! and `classifier.1`, `.4`, `.6`.

use tch::nn;

use crate::net::Network;
use crate::net::layers::{Conv, Sequence, adaptive_pool_flat, linear, max_pool, relu};

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
    Network::new(features, head)
}

#[cfg(test)]
mod tests {
    use tch::nn::{ModuleT, VarStore};
    use tch::{Device, Kind, Tensor};

    use super::build;
    use crate::net::testing::{copy_variables, logits, randomise};

    /// Same weight names and shapes as `tch::vision::alexnet` (which reads
    /// torchvision's checkpoints), and any input of at least 63x63 runs,
    /// with 4096-wide `<classifier.6` features. The numbers are checked
    /// against torchvision itself in `tests/it` (oracle.json): tch's
    /// AlexNet is no oracle, its `features.3` has stride 2 and padding 1
    /// where torchvision's has stride 1 and padding 2.
    #[test]
    fn alexnet_reads_torchvision_keys_and_runs_at_every_size() {
        let ours_store = VarStore::new(Device::Cpu);
        let ours = build(&ours_store.root(), 10);
        randomise(&ours_store);
        let their_store = VarStore::new(Device::Cpu);
        let theirs = tch::vision::alexnet::alexnet(&their_store.root(), 10);
        copy_variables(&ours_store, &their_store);
        for (height, width) in [(224, 224), (150, 100), (200, 300), (63, 63)] {
            let input = Tensor::randn([1, 3, height, width], (Kind::Float, Device::Cpu));
            assert_eq!(logits(&ours, &input).size(), vec![1, 10]);
            let features = tch::no_grad(|| ours.features(&input)).unwrap();
            assert_eq!(features.size(), vec![1, 4096]);
        }
        // tch's differs from torchvision's (and so from zoo's).
        let input = Tensor::randn([1, 3, 224, 224], (Kind::Float, Device::Cpu));
        let theirs = tch::no_grad(|| theirs.forward_t(&input, false));
        let difference = (logits(&ours, &input) - theirs)
            .abs()
            .max()
            .double_value(&[]);
        assert!(difference > 1e-3, "{difference}");
    }
}
