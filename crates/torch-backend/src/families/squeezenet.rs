//! torchvision's SqueezeNet 1.0 and 1.1. The classifier is torchvision's:
//! dropout (nothing at inference), `classifier.1` (a 1x1 convolution to the
//! classes), ReLU, `AdaptiveAvgPool2d((1, 1))`, flatten.
//!
//! Parameter names are torchvision's: `features.<i>` for the first
//! convolution and the Fire modules (`squeeze`, `expand1x1`, `expand3x3`),
//! `classifier.1`.

use tch::nn;
use tch::{TchError, Tensor};

use crate::net::Network;
use crate::net::layers::{Conv, Forward, Sequence, adaptive_pool_flat, max_pool, relu};

/// A Fire module: squeeze to few channels, then expand with 1x1 and 3x3
/// convolutions side by side.
struct Fire {
    squeeze: Conv,
    expand1x1: Conv,
    expand3x3: Conv,
}

impl Fire {
    fn new(path: nn::Path<'_>, c_in: i64, squeeze: i64, expand: i64) -> Fire {
        Fire {
            squeeze: Conv::new(&path / "squeeze", c_in, squeeze, 1, 1, 0),
            expand1x1: Conv::new(&path / "expand1x1", squeeze, expand, 1, 1, 0),
            expand3x3: Conv::new(&path / "expand3x3", squeeze, expand, 3, 1, 1),
        }
    }
}

impl Forward for Fire {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let xs = self.squeeze.forward(xs)?.f_relu()?;
        let left = self.expand1x1.forward(&xs)?.f_relu()?;
        let right = self.expand3x3.forward(&xs)?.f_relu()?;
        Tensor::f_cat(&[left, right], 1)
    }
}

/// SqueezeNet `name` (`squeezenet1_0` or `squeezenet1_1`), or `None`. It
/// has no embeddings: its last layer is a convolution whose output is
/// pooled into the logits.
pub(crate) fn build(name: &str, root: &nn::Path<'_>, classes: i64) -> Option<Network> {
    let path = root / "features";
    let pool = || max_pool(3, 2, true);
    let fire = |index: i64, c_in: i64, squeeze: i64, expand: i64| {
        Fire::new(&path / index, c_in, squeeze, expand)
    };
    // Minimum input sides (torchvision's `min_size`, 21 and 17) are the
    // family table's.
    let features = match name {
        "squeezenet1_0" => Sequence::default()
            .then(Conv::new(&path / 0, 3, 96, 7, 2, 0))
            .then_fn(relu)
            .then_fn(pool())
            .then(fire(3, 96, 16, 64))
            .then(fire(4, 128, 16, 64))
            .then(fire(5, 128, 32, 128))
            .then_fn(pool())
            .then(fire(7, 256, 32, 128))
            .then(fire(8, 256, 48, 192))
            .then(fire(9, 384, 48, 192))
            .then(fire(10, 384, 64, 256))
            .then_fn(pool())
            .then(fire(12, 512, 64, 256)),
        "squeezenet1_1" => Sequence::default()
            .then(Conv::new(&path / 0, 3, 64, 3, 2, 0))
            .then_fn(relu)
            .then_fn(pool())
            .then(fire(3, 64, 16, 64))
            .then(fire(4, 128, 16, 64))
            .then_fn(pool())
            .then(fire(6, 128, 32, 128))
            .then(fire(7, 256, 32, 128))
            .then_fn(pool())
            .then(fire(9, 256, 48, 192))
            .then(fire(10, 384, 48, 192))
            .then(fire(11, 384, 64, 256))
            .then(fire(12, 512, 64, 256)),
        _ => return None,
    };
    let network = features
        .then(Conv::new(root / "classifier" / 1, 512, classes, 1, 1, 0))
        .then_fn(relu)
        .then_fn(adaptive_pool_flat(1, 1));
    Some(Network::whole(network))
}

#[cfg(test)]
mod tests {
    use tch::nn::{ModuleT, VarStore};
    use tch::{Device, Kind, Tensor};

    use super::build;
    use crate::net::testing::{assert_close, copy_variables, logits, randomise};

    /// The oracle is `tch::vision::squeezenet` (a separate implementation
    /// with torchvision's keys, ceil-mode pooling and adaptive pooling):
    /// same weights, same logits at 224x224 and at other sizes.
    #[test]
    fn squeezenet_equals_tch_vision_at_every_size() {
        for name in ["squeezenet1_0", "squeezenet1_1"] {
            let ours_store = VarStore::new(Device::Cpu);
            let ours = build(name, &ours_store.root(), 10).unwrap();
            randomise(&ours_store);
            let their_store = VarStore::new(Device::Cpu);
            let theirs: Box<dyn ModuleT> = if name == "squeezenet1_0" {
                Box::new(tch::vision::squeezenet::v1_0(&their_store.root(), 10))
            } else {
                Box::new(tch::vision::squeezenet::v1_1(&their_store.root(), 10))
            };
            copy_variables(&ours_store, &their_store);
            for (height, width) in [(224, 224), (150, 100), (200, 300), (21, 21)] {
                let input = Tensor::randn([2, 3, height, width], (Kind::Float, Device::Cpu));
                let want = tch::no_grad(|| theirs.forward_t(&input, false));
                let what = format!("{name} at {height}x{width}");
                assert_close(&logits(&ours, &input), &want, &what);
            }
        }
    }
}
