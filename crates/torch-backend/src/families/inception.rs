//! torchvision's Inception v3 (`Inception3`), written against a
//! [`Maker`] so it runs folded (batch-norm into the convolutions,
//! channels-last) once loaded, and split as torchvision computes it:
//! features (the `Mixed_7c` output, `AdaptiveAvgPool2d((1, 1))`, flatten:
//! the 2048-d input of `fc`, FiftyOne's `embeddings_layer: "<fc"`), then
//! the head (`dropout`, nothing at inference, and `fc`).
//!
//! - `BasicConv2d`: convolution without bias, batch-norm with `eps` 1e-3,
//!   ReLU. Its padding is 0 unless torchvision gives one.
//! - `transform_input`: re-normalises the input from ImageNet's statistics
//!   to `[-1, 1]` per channel, as torchvision's builder sets it with named
//!   weights (`families/options.rs`, `checkpoint/renames.rs`).
//! - The auxiliary classifier (`AuxLogits.*` in the hosted file) runs only
//!   in training; its tensors are dropped before loading (`families/options.rs`, `checkpoint/renames.rs`).
//!
//! Parameter names are torchvision's (`Conv2d_1a_3x3.conv.weight`,
//! `Mixed_6b.branch7x7_2.bn.running_var`, `fc.weight`, ...).

use tch::{TchError, Tensor};

use crate::net::Network;
use crate::net::layers::Forward;
use crate::net::maker::{ConvShape, Maker};

type Stage = Box<dyn Forward>;

/// torchvision's `min_size` for Inception v3: the stride-2 reductions of
/// `Mixed_6a` and `Mixed_7a` need 75 pixels.
pub(crate) const MIN_INPUT: i64 = 75;

/// torchvision's `BasicConv2d` without its ReLU (the caller applies it).
fn basic(m: &dyn Maker, p: &str, shape: ConvShape) -> Option<Stage> {
    m.conv_bn(&format!("{p}.conv"), &format!("{p}.bn"), shape, 1e-3)
}

fn relu_(mut xs: Tensor) -> Result<Tensor, TchError> {
    let _ = xs.f_relu_()?;
    Ok(xs)
}

/// `BasicConv2d` layers run one after the other, each with its ReLU.
struct Chain(Vec<Stage>);

impl Chain {
    fn new(m: &dyn Maker, p: &str, layers: &[(&str, ConvShape)]) -> Option<Chain> {
        layers
            .iter()
            .map(|(name, shape)| basic(m, &format!("{p}.{name}"), *shape))
            .collect::<Option<Vec<_>>>()
            .map(Chain)
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let mut ys = xs.shallow_clone();
        for stage in &self.0 {
            ys = relu_(stage.forward(&ys)?)?;
        }
        Ok(ys)
    }
}

/// `F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)` (padding counted,
/// as torch's default `count_include_pad=True`).
fn avg_pool_3x3(xs: &Tensor) -> Result<Tensor, TchError> {
    xs.f_avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None::<i64>)
}

/// `F.max_pool2d(x, kernel_size=3, stride=2)`.
fn max_pool_3x3_s2(xs: &Tensor) -> Result<Tensor, TchError> {
    xs.f_max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false)
}

/// One of the `Mixed_*` blocks: branches whose outputs are concatenated.
enum Block {
    /// `InceptionA`, `InceptionC`: convolution chains on the input, and a
    /// 1x1 convolution on its 3x3 average pool.
    Pooled { chains: Vec<Chain>, pool: Chain },
    /// `InceptionB`, `InceptionD`: stride-2 chains and a 3x3 max pool.
    Reduction { chains: Vec<Chain> },
    /// `InceptionE`: its 3x3 branches end in a 1x3 and a 3x1 convolution
    /// side by side.
    Expanded {
        branch1x1: Chain,
        branch3x3: (Chain, [Chain; 2]),
        branch3x3dbl: (Chain, [Chain; 2]),
        pool: Chain,
    },
}

impl Block {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let mut outputs = Vec::with_capacity(6);
        match self {
            Block::Pooled { chains, pool } => {
                for chain in chains {
                    outputs.push(chain.forward(xs)?);
                }
                outputs.push(pool.forward(&avg_pool_3x3(xs)?)?);
            }
            Block::Reduction { chains } => {
                for chain in chains {
                    outputs.push(chain.forward(xs)?);
                }
                outputs.push(max_pool_3x3_s2(xs)?);
            }
            Block::Expanded {
                branch1x1,
                branch3x3,
                branch3x3dbl,
                pool,
            } => {
                outputs.push(branch1x1.forward(xs)?);
                for (first, [a, b]) in [branch3x3, branch3x3dbl] {
                    let hidden = first.forward(xs)?;
                    outputs.push(a.forward(&hidden)?);
                    outputs.push(b.forward(&hidden)?);
                }
                outputs.push(pool.forward(&avg_pool_3x3(xs)?)?);
            }
        }
        Tensor::f_cat(&outputs, 1)
    }
}

fn inception_a(m: &dyn Maker, p: &str, c_in: i64, pool_features: i64) -> Option<Block> {
    let chain = |layers: &[(&str, ConvShape)]| Chain::new(m, p, layers);
    Some(Block::Pooled {
        chains: vec![
            chain(&[("branch1x1", ConvShape::new(c_in, 64, 1))])?,
            chain(&[
                ("branch5x5_1", ConvShape::new(c_in, 48, 1)),
                ("branch5x5_2", ConvShape::new(48, 64, 5)),
            ])?,
            chain(&[
                ("branch3x3dbl_1", ConvShape::new(c_in, 64, 1)),
                ("branch3x3dbl_2", ConvShape::new(64, 96, 3)),
                ("branch3x3dbl_3", ConvShape::new(96, 96, 3)),
            ])?,
        ],
        pool: chain(&[("branch_pool", ConvShape::new(c_in, pool_features, 1))])?,
    })
}

fn inception_b(m: &dyn Maker, p: &str, c_in: i64) -> Option<Block> {
    let chain = |layers: &[(&str, ConvShape)]| Chain::new(m, p, layers);
    let reduce = |c_in: i64, c_out: i64| ConvShape::new(c_in, c_out, 3).stride(2).unpadded();
    Some(Block::Reduction {
        chains: vec![
            chain(&[("branch3x3", reduce(c_in, 384))])?,
            chain(&[
                ("branch3x3dbl_1", ConvShape::new(c_in, 64, 1)),
                ("branch3x3dbl_2", ConvShape::new(64, 96, 3)),
                ("branch3x3dbl_3", reduce(96, 96)),
            ])?,
        ],
    })
}

fn inception_c(m: &dyn Maker, p: &str, c_in: i64, c7: i64) -> Option<Block> {
    let chain = |layers: &[(&str, ConvShape)]| Chain::new(m, p, layers);
    let row = |c_in: i64, c_out: i64| ConvShape::rectangular(c_in, c_out, [1, 7]);
    let column = |c_in: i64, c_out: i64| ConvShape::rectangular(c_in, c_out, [7, 1]);
    Some(Block::Pooled {
        chains: vec![
            chain(&[("branch1x1", ConvShape::new(c_in, 192, 1))])?,
            chain(&[
                ("branch7x7_1", ConvShape::new(c_in, c7, 1)),
                ("branch7x7_2", row(c7, c7)),
                ("branch7x7_3", column(c7, 192)),
            ])?,
            chain(&[
                ("branch7x7dbl_1", ConvShape::new(c_in, c7, 1)),
                ("branch7x7dbl_2", column(c7, c7)),
                ("branch7x7dbl_3", row(c7, c7)),
                ("branch7x7dbl_4", column(c7, c7)),
                ("branch7x7dbl_5", row(c7, 192)),
            ])?,
        ],
        pool: chain(&[("branch_pool", ConvShape::new(c_in, 192, 1))])?,
    })
}

fn inception_d(m: &dyn Maker, p: &str, c_in: i64) -> Option<Block> {
    let chain = |layers: &[(&str, ConvShape)]| Chain::new(m, p, layers);
    let reduce = |c_in: i64, c_out: i64| ConvShape::new(c_in, c_out, 3).stride(2).unpadded();
    Some(Block::Reduction {
        chains: vec![
            chain(&[
                ("branch3x3_1", ConvShape::new(c_in, 192, 1)),
                ("branch3x3_2", reduce(192, 320)),
            ])?,
            chain(&[
                ("branch7x7x3_1", ConvShape::new(c_in, 192, 1)),
                ("branch7x7x3_2", ConvShape::rectangular(192, 192, [1, 7])),
                ("branch7x7x3_3", ConvShape::rectangular(192, 192, [7, 1])),
                ("branch7x7x3_4", reduce(192, 192)),
            ])?,
        ],
    })
}

fn inception_e(m: &dyn Maker, p: &str, c_in: i64) -> Option<Block> {
    let chain = |layers: &[(&str, ConvShape)]| Chain::new(m, p, layers);
    let sides = |name: &str, c_in: i64| -> Option<[Chain; 2]> {
        Some([
            chain(&[(
                &format!("{name}a"),
                ConvShape::rectangular(c_in, 384, [1, 3]),
            )])?,
            chain(&[(
                &format!("{name}b"),
                ConvShape::rectangular(c_in, 384, [3, 1]),
            )])?,
        ])
    };
    Some(Block::Expanded {
        branch1x1: chain(&[("branch1x1", ConvShape::new(c_in, 320, 1))])?,
        branch3x3: (
            chain(&[("branch3x3_1", ConvShape::new(c_in, 384, 1))])?,
            sides("branch3x3_2", 384)?,
        ),
        branch3x3dbl: (
            chain(&[
                ("branch3x3dbl_1", ConvShape::new(c_in, 448, 1)),
                ("branch3x3dbl_2", ConvShape::new(448, 384, 3)),
            ])?,
            sides("branch3x3dbl_3", 384)?,
        ),
        pool: chain(&[("branch_pool", ConvShape::new(c_in, 192, 1))])?,
    })
}

/// Everything before `fc`: the input transform, the stem, the `Mixed_*`
/// blocks, global average pooling and flattening.
struct Features {
    transform_input: bool,
    /// `Conv2d_1a_3x3`, `Conv2d_2a_3x3`, `Conv2d_2b_3x3` (then `maxpool1`),
    /// `Conv2d_3b_1x1`, `Conv2d_4a_3x3` (then `maxpool2`).
    stem: [Stage; 5],
    blocks: Vec<Block>,
}

impl Forward for Features {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let mut ys = if self.transform_input {
            crate::families::options::inception_transform_input(xs)?
        } else {
            xs.shallow_clone()
        };
        for (index, conv) in self.stem.iter().enumerate() {
            ys = relu_(conv.forward(&ys)?)?;
            if index == 2 || index == 4 {
                ys = max_pool_3x3_s2(&ys)?;
            }
        }
        for block in &self.blocks {
            ys = block.forward(&ys)?;
        }
        ys.f_adaptive_avg_pool2d([1, 1])?.f_flatten(1, -1)
    }
}

/// Inception v3 from `m`, with `classes` outputs (read from the weights
/// when folding) and torchvision's `transform_input`.
pub(crate) fn build(m: &dyn Maker, classes: i64, transform_input: bool) -> Option<Network> {
    let stem = [
        basic(
            m,
            "Conv2d_1a_3x3",
            ConvShape::new(3, 32, 3).stride(2).unpadded(),
        )?,
        basic(m, "Conv2d_2a_3x3", ConvShape::new(32, 32, 3).unpadded())?,
        basic(m, "Conv2d_2b_3x3", ConvShape::new(32, 64, 3))?,
        basic(m, "Conv2d_3b_1x1", ConvShape::new(64, 80, 1))?,
        basic(m, "Conv2d_4a_3x3", ConvShape::new(80, 192, 3).unpadded())?,
    ];
    let blocks = vec![
        inception_a(m, "Mixed_5b", 192, 32)?,
        inception_a(m, "Mixed_5c", 256, 64)?,
        inception_a(m, "Mixed_5d", 288, 64)?,
        inception_b(m, "Mixed_6a", 288)?,
        inception_c(m, "Mixed_6b", 768, 128)?,
        inception_c(m, "Mixed_6c", 768, 160)?,
        inception_c(m, "Mixed_6d", 768, 160)?,
        inception_c(m, "Mixed_6e", 768, 192)?,
        inception_d(m, "Mixed_7a", 768)?,
        inception_e(m, "Mixed_7b", 1280)?,
        inception_e(m, "Mixed_7c", 2048)?,
    ];
    let features = Features {
        transform_input,
        stem,
        blocks,
    };
    Some(Network::new(features, m.linear("fc", 2048, classes)?))
}

#[cfg(test)]
mod tests {
    use tch::nn::{ModuleT, VarStore};
    use tch::{Device, Kind, Tensor};

    use crate::families::BuildOptions;
    use crate::net::testing::{assert_close, copy_variables, logits, randomise};

    /// The oracle is `tch::vision::inception::v3` (a separate
    /// implementation with torchvision's names, taken whole before):
    /// same variables, same logits at 299x299 and at other sizes; the
    /// features are the 2048-d input of `fc`; the folded graph computes the
    /// same with `transform_input` (without it, `folded.rs`'s test).
    #[test]
    fn inception_v3_equals_tch_vision_with_2048_features_and_folds() {
        let ours_store = VarStore::new(Device::Cpu);
        let ours = crate::families::build("inception_v3", &ours_store.root(), 10).unwrap();
        randomise(&ours_store);
        let their_store = VarStore::new(Device::Cpu);
        let theirs = tch::vision::inception::v3(&their_store.root(), 10);
        copy_variables(&ours_store, &their_store);
        for (height, width) in [(299, 299), (75, 75), (120, 90), (131, 200)] {
            let input = Tensor::randn([2, 3, height, width], (Kind::Float, Device::Cpu));
            let want = tch::no_grad(|| theirs.forward_t(&input, false));
            let what = format!("inception_v3 at {height}x{width}");
            assert_close(&logits(&ours, &input), &want, &what);
            let features = tch::no_grad(|| ours.features(&input)).unwrap();
            assert_eq!(features.size(), vec![2, 2048], "{what}");
        }
        let options = BuildOptions {
            transform_input: true,
            ..BuildOptions::default()
        };
        let store = VarStore::new(Device::Cpu);
        let plain =
            crate::families::build_with("inception_v3", &store.root(), 10, options).unwrap();
        randomise(&store);
        let folded =
            crate::families::build_folded("inception_v3", store.variables(), Kind::Float, options)
                .unwrap();
        let input = Tensor::randn([2, 3, 101, 83], (Kind::Float, Device::Cpu));
        let want = logits(&plain, &input);
        let got = logits(&folded, &crate::net::fold::channels_last(&input));
        assert_close(&got, &want, "folded with transform_input");
    }
}

/// Speed against the `tch::vision` Inception v3 zoo ran before (run by
/// hand: `cargo xtask test -p zoo-torch-backend --lib --release --
/// --ignored inception_v3_speed --nocapture`).
#[cfg(test)]
mod speed {
    use std::time::Instant;

    use tch::nn::{ModuleT, VarStore};
    use tch::{Device, Kind, Tensor};

    use crate::net::testing::{assert_close, randomise};

    /// The median of `runs` timed forwards (after one warm-up), in ms.
    fn median_ms(runs: usize, mut forward: impl FnMut() -> Tensor) -> (f64, Tensor) {
        let mut output = forward();
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            output = forward();
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        (times[runs / 2], output)
    }

    /// Times both graphs on the same weights and inputs (1x3x299x299 and
    /// 8x3x299x299, f32, CPU) and checks they give the same logits.
    #[test]
    #[ignore = "a timing run, by hand"]
    fn inception_v3_speed_folded_against_tch_vision() {
        let store = VarStore::new(Device::Cpu);
        let _reference = crate::families::build("inception_v3", &store.root(), 1000).unwrap();
        randomise(&store);
        let their_store = VarStore::new(Device::Cpu);
        let theirs = tch::vision::inception::v3(&their_store.root(), 1000);
        crate::net::testing::copy_variables(&store, &their_store);
        let folded = crate::families::build_folded(
            "inception_v3",
            store.variables(),
            Kind::Float,
            crate::families::BuildOptions::default(),
        )
        .unwrap();
        for batch in [1, 8] {
            let input = Tensor::randn([batch, 3, 299, 299], (Kind::Float, Device::Cpu));
            let (old, want) = tch::no_grad(|| median_ms(7, || theirs.forward_t(&input, false)));
            let (new, got) = tch::no_grad(|| {
                median_ms(7, || {
                    let features = folded
                        .features(&crate::net::fold::channels_last(&input))
                        .unwrap();
                    folded.head(&features).unwrap()
                })
            });
            assert_close(&got, &want, &format!("batch {batch}"));
            println!(
                "inception_v3 batch {batch} 299x299 cpu f32 ({} threads): tch::vision {old:.1} ms, zoo folded {new:.1} ms, x{:.2}",
                tch::get_num_threads(),
                old / new
            );
        }
    }
}
