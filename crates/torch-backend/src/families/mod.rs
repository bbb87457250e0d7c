//! torchvision architectures, split into a feature extractor and a head so
//! that `embeddings_layer` can read the head's input.
//!
//! ResNets reuse `tch::vision`'s feature stacks. MobileNetV2 and DenseNet are
//! written here: tch's DenseNet pools with a fixed 7x7 window where
//! torchvision pools adaptively, which gives different numbers for any input
//! that is not 224x224 (FiftyOne keeps images at native size). These ten
//! run folded once loaded (`folded.rs`); the graphs here are the reference
//! the folded ones are tested against.
//! VGG, AlexNet and SqueezeNet are written in their own modules for the same
//! reason (tch's VGG has no adaptive pooling at all), and run as built.
//! Inception v3 is written in `inception.rs` (with its `<fc` embeddings)
//! and runs folded, like the classifiers of `nets.rs`.
//!
//! Every forward is fallible ([`Forward`]): a libtorch error fails the
//! batch, not the process.

use tch::Tensor;
use tch::nn::{self, ModuleT};

pub(crate) mod alexnet;
pub(crate) mod detection;
pub(crate) mod dinov2;
pub(crate) mod hub;
pub(crate) mod inception;
pub(crate) mod squeezenet;
pub(crate) mod vgg;

use crate::checkpoint::renames::BuildOptions;
use crate::net::Network;
use crate::net::layers::Guarded;

fn guarded(module: impl ModuleT + 'static) -> Guarded {
    Guarded(Box::new(module))
}

/// The architectures zoo builds as features and a head (so they have
/// embeddings) and runs folded once loaded (see `folded.rs`).
pub(crate) const SPLIT: [&str; 10] = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "mobilenet_v2",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
];

/// The architectures that run as built here, not folded: VGG and AlexNet
/// (with `<classifier.6` embeddings) and SqueezeNet (without).
pub(crate) const UNFOLDED: [&str; 11] = [
    "alexnet",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "squeezenet1_0",
    "squeezenet1_1",
];

/// Every torchvision architecture zoo builds, by entrypoint name: the
/// classifiers, then the semantic segmenters (`nets.rs`), whose output is
/// `[N, classes, H, W]` scores (detectors are `detection/`; the PyTorch Hub
/// ones, `hub.rs`, are named by their entrypoint args).
pub(crate) fn architectures() -> impl Iterator<Item = &'static str> {
    SPLIT
        .into_iter()
        .chain(crate::net::maker::CLASSIFIERS)
        .chain(UNFOLDED)
        .chain(crate::net::maker::SEGMENTERS)
}

/// Whether zoo runs architecture `name` folded once loaded (`folded.rs`).
pub(crate) fn runs_folded(name: &str) -> bool {
    SPLIT.contains(&name)
        || crate::net::maker::CLASSIFIERS.contains(&name)
        || crate::net::maker::SEGMENTERS.contains(&name)
}

/// Whether [`build_with`] builds `name`: a torchvision architecture, or a
/// DINOv2 hub entrypoint (kept out of [`architectures`], whose networks
/// all end in a classifier head).
pub(crate) fn builds(name: &str) -> bool {
    architectures().any(|known| known == name) || crate::families::dinov2::MODELS.contains(&name)
}

/// Builds architecture `name` (the last part of an `entrypoint_fcn`) as
/// torchvision's builder does without named weights.
pub(crate) fn build(name: &str, root: &nn::Path, classes: i64) -> Option<Network> {
    build_with(name, root, classes, BuildOptions::default())
}

/// Builds architecture `name` with torchvision's build `options` (Inception
/// v3's and GoogLeNet's `transform_input`).
pub(crate) fn build_with(
    name: &str,
    root: &nn::Path,
    classes: i64,
    options: BuildOptions,
) -> Option<Network> {
    use tch::vision;
    // A ResNet's feature stack, then `fc` from its `width` outputs. ResNets
    // and MobileNetV2 take any input of at least 1x1.
    if let Some(network) =
        crate::net::maker::build(name, &crate::net::maker::Reference(root), classes, options)
    {
        return Some(network);
    }
    let resnet = |features: Guarded, width: i64| {
        let fc = crate::net::layers::linear(root / "fc", width, classes);
        Network::new(features, fc, "<fc", 1)
    };
    Some(match name {
        "resnet18" => resnet(guarded(vision::resnet::resnet18_no_final_layer(root)), 512),
        "resnet34" => resnet(guarded(vision::resnet::resnet34_no_final_layer(root)), 512),
        "resnet50" => resnet(guarded(vision::resnet::resnet50_no_final_layer(root)), 2048),
        "resnet101" => resnet(
            guarded(vision::resnet::resnet101_no_final_layer(root)),
            2048,
        ),
        "resnet152" => resnet(
            guarded(vision::resnet::resnet150_no_final_layer(root)),
            2048,
        ),
        "mobilenet_v2" => mobilenet_v2(root, classes),
        "densenet121" => densenet(root, 64, 32, &[6, 12, 24, 16], classes),
        "densenet161" => densenet(root, 96, 48, &[6, 12, 36, 24], classes),
        "densenet169" => densenet(root, 64, 32, &[6, 12, 32, 32], classes),
        "densenet201" => densenet(root, 64, 32, &[6, 12, 48, 32], classes),
        "alexnet" => crate::families::alexnet::build(root, classes),
        "squeezenet1_0" | "squeezenet1_1" => {
            crate::families::squeezenet::build(name, root, classes)?
        }
        _ if name.starts_with("dinov2_") => crate::families::dinov2::build(name, root)?,
        _ => crate::families::vgg::build(name, root, classes)?,
    })
}

fn conv_bn_relu6(
    p: nn::Path,
    c_in: i64,
    c_out: i64,
    kernel: i64,
    stride: i64,
    groups: i64,
) -> nn::SequentialT {
    let config = nn::ConvConfig {
        stride,
        padding: (kernel - 1) / 2,
        groups,
        bias: false,
        ..Default::default()
    };
    nn::seq_t()
        .add(nn::conv2d(&p / 0, c_in, c_out, kernel, config))
        .add(nn::batch_norm2d(&p / 1, c_out, Default::default()))
        .add_fn(|xs| xs.clamp(0.0, 6.0))
}

fn inverted_residual(
    p: nn::Path,
    c_in: i64,
    c_out: i64,
    stride: i64,
    expand: i64,
) -> nn::FuncT<'static> {
    let hidden = expand * c_in;
    let mut conv = nn::seq_t();
    let mut index = 0;
    if expand != 1 {
        conv = conv.add(conv_bn_relu6(&p / index, c_in, hidden, 1, 1, 1));
        index += 1;
    }
    conv = conv
        .add(conv_bn_relu6(&p / index, hidden, hidden, 3, stride, hidden))
        .add(nn::conv2d(
            &p / (index + 1),
            hidden,
            c_out,
            1,
            nn::ConvConfig {
                bias: false,
                ..Default::default()
            },
        ))
        .add(nn::batch_norm2d(
            &p / (index + 2),
            c_out,
            Default::default(),
        ));
    nn::func_t(move |xs, train| {
        let ys = xs.apply_t(&conv, train);
        if stride == 1 && c_in == c_out {
            xs + ys
        } else {
            ys
        }
    })
}

/// MobileNetV2's inverted residual settings: (expansion, output channels,
/// repeats, first stride).
pub(crate) const MOBILENET_V2_SETTINGS: [(i64, i64, i64, i64); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// torchvision's `mobilenet_v2`: features, global average pool, then
/// `classifier.1` (`classifier.0` is dropout).
fn mobilenet_v2(root: &nn::Path, classes: i64) -> Network {
    let features_path = root / "features";
    let mut c_in = 32;
    let mut features = nn::seq_t().add(conv_bn_relu6(&features_path / 0, 3, c_in, 3, 2, 1));
    let mut layer = 1;
    for (expand, c_out, repeats, stride) in MOBILENET_V2_SETTINGS {
        for repeat in 0..repeats {
            let stride = if repeat == 0 { stride } else { 1 };
            features = features.add(inverted_residual(
                &features_path / layer / "conv",
                c_in,
                c_out,
                stride,
                expand,
            ));
            c_in = c_out;
            layer += 1;
        }
    }
    features = features
        .add(conv_bn_relu6(&features_path / layer, c_in, 1280, 1, 1, 1))
        .add_fn(|xs| xs.adaptive_avg_pool2d([1, 1]).flatten(1, -1));
    let head = nn::linear(root / "classifier" / 1, 1280, classes, Default::default());
    Network::new(guarded(features), head, "<classifier.1", 1)
}

fn densenet(root: &nn::Path, c_in: i64, growth: i64, blocks: &[i64], classes: i64) -> Network {
    let conv = |p: nn::Path, c_in: i64, c_out: i64, kernel: i64, padding: i64, stride: i64| {
        nn::conv2d(
            p,
            c_in,
            c_out,
            kernel,
            nn::ConvConfig {
                stride,
                padding,
                bias: false,
                ..Default::default()
            },
        )
    };
    let bn_size = 4;
    let fp = root / "features";
    let mut features = nn::seq_t()
        .add(conv(&fp / "conv0", 3, c_in, 7, 3, 2))
        .add(nn::batch_norm2d(&fp / "norm0", c_in, Default::default()))
        .add_fn(|xs| xs.relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false));
    let mut channels = c_in;
    for (block, &layers) in blocks.iter().enumerate() {
        let bp = &fp / format!("denseblock{}", block + 1);
        for layer in 0..layers {
            let lp = &bp / format!("denselayer{}", layer + 1);
            let inner = bn_size * growth;
            let dense = nn::seq_t()
                .add(nn::batch_norm2d(
                    &lp / "norm1",
                    channels,
                    Default::default(),
                ))
                .add_fn(|xs| xs.relu())
                .add(conv(&lp / "conv1", channels, inner, 1, 0, 1))
                .add(nn::batch_norm2d(&lp / "norm2", inner, Default::default()))
                .add_fn(|xs| xs.relu())
                .add(conv(&lp / "conv2", inner, growth, 3, 1, 1));
            features = features.add_fn_t(move |xs, train| {
                Tensor::cat(&[xs.shallow_clone(), xs.apply_t(&dense, train)], 1)
            });
            channels += growth;
        }
        if block + 1 != blocks.len() {
            let tp = &fp / format!("transition{}", block + 1);
            features = features
                .add(nn::batch_norm2d(&tp / "norm", channels, Default::default()))
                .add_fn(|xs| xs.relu())
                .add(conv(&tp / "conv", channels, channels / 2, 1, 0, 1))
                .add_fn(|xs| xs.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>));
            channels /= 2;
        }
    }
    features = features
        .add(nn::batch_norm2d(
            &fp / "norm5",
            channels,
            Default::default(),
        ))
        .add_fn(|xs| xs.relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1));
    let head = nn::linear(root / "classifier", channels, classes, Default::default());
    // torchvision's `min_size` for DenseNets is 29x29.
    Network::new(guarded(features), head, "<classifier", 29)
}

#[cfg(test)]
mod tests {
    use tch::nn::VarStore;
    use tch::{Device, Kind, Tensor};

    use super::{architectures, build};
    use crate::net::Network;

    /// Every architecture as built here, and folded where it runs folded.
    fn every_network(check: impl Fn(&str, &Network)) {
        for name in architectures() {
            let store = VarStore::new(Device::Cpu);
            let network = build(name, &store.root(), 10).unwrap();
            check(name, &network);
            if let Some(folded) = crate::net::fold::build(name, store.variables(), Kind::Float) {
                assert_eq!(folded.min_input, network.min_input, "{name}");
                check(&format!("{name} (folded)"), &folded);
            }
        }
    }

    fn run(network: &Network, shape: [i64; 4]) -> Result<Tensor, tch::TchError> {
        let input = Tensor::zeros(shape, (Kind::Float, Device::Cpu));
        tch::no_grad(|| {
            network
                .features(&input)
                .and_then(|features| network.head(&features))
        })
    }

    /// `min_input` is exactly the smallest side libtorch accepts: the
    /// model checks it before the forward, so it must be neither too strict
    /// nor too lax; a smaller input fails the forward with an error.
    #[test]
    fn inputs_below_the_minimum_are_an_error_not_a_panic() {
        every_network(|name, network| {
            let min = network.min_input;
            let output = run(network, [1, 3, min, min + 3]);
            assert!(output.is_ok(), "{name} at {min}: {:?}", output.err());
            let expected = if crate::net::maker::SEGMENTERS
                .iter()
                .any(|s| name.starts_with(s))
            {
                vec![1, 10, min, min + 3]
            } else {
                vec![1, 10]
            };
            assert_eq!(output.unwrap().size(), expected, "{name}");
            if min > 1 {
                for shape in [[1, 3, min - 1, min + 3], [1, 3, min + 3, min - 1]] {
                    assert!(run(network, shape).is_err(), "{name} at {shape:?}");
                }
            }
        });
    }

    /// A 4-channel batch makes libtorch raise in the first convolution:
    /// every network returns it as an error (the guarded `tch::vision`
    /// ones included), and the thread goes on.
    #[test]
    fn libtorch_error_in_forward_is_an_error_not_a_panic() {
        every_network(|name, network| {
            let size = network.min_input.max(40);
            let err = run(network, [2, 4, size, size]).unwrap_err().to_string();
            assert!(err.contains("channels"), "{name}: {err}");
        });
    }
}
