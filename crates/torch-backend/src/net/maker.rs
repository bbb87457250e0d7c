//! One way to write a network: against a [`Maker`], which gives each
//! parameterised layer either as built ([`Reference`]: a variable-store
//! graph whose variables carry torchvision's names, what loading checks
//! names and shapes against, and the reference the folded graph is tested
//! against) or folded from the loaded weights ([`Folding`]: batch-norm
//! folded into the convolution before it, computed in f64, channels-last
//! weights; see `fold.rs`). A family writes its graph once; the same code
//! builds both.

use tch::nn;
use tch::{TchError, Tensor};

use crate::net::fold::Weights;
use crate::net::layers::{Conv, Forward};

/// One stage of a network.
pub(crate) type Stage = Box<dyn Forward>;

impl Forward for Stage {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        (**self).forward(xs)
    }
}

/// A convolution's shape and hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvShape {
    c_in: i64,
    c_out: i64,
    /// Rows, then columns.
    kernel: [i64; 2],
    stride: i64,
    /// Rows, then columns.
    padding: [i64; 2],
    dilation: i64,
    groups: i64,
}

impl ConvShape {
    /// A `kernel` x `kernel` convolution, stride 1, "same" padding.
    pub(crate) fn new(c_in: i64, c_out: i64, kernel: i64) -> ConvShape {
        ConvShape::rectangular(c_in, c_out, [kernel, kernel])
    }

    /// A `rows` x `columns` convolution, stride 1, "same" padding
    /// (torchvision's `kernel_size=(7, 1), padding=(3, 0)`).
    pub(crate) fn rectangular(c_in: i64, c_out: i64, [rows, columns]: [i64; 2]) -> ConvShape {
        ConvShape {
            c_in,
            c_out,
            kernel: [rows, columns],
            stride: 1,
            padding: [(rows - 1) / 2, (columns - 1) / 2],
            dilation: 1,
            groups: 1,
        }
    }

    pub(crate) fn stride(self, stride: i64) -> ConvShape {
        ConvShape { stride, ..self }
    }

    /// No padding (torchvision's `BasicConv2d` default in Inception v3).
    pub(crate) fn unpadded(self) -> ConvShape {
        ConvShape {
            padding: [0, 0],
            ..self
        }
    }

    /// Dilation `dilation`, with the padding that keeps the size
    /// (torchvision's `padding=dilation` for 3x3 kernels).
    pub(crate) fn dilation(self, dilation: i64) -> ConvShape {
        let [rows, columns] = self.kernel;
        ConvShape {
            dilation,
            padding: [dilation * (rows - 1) / 2, dilation * (columns - 1) / 2],
            ..self
        }
    }

    pub(crate) fn groups(self, groups: i64) -> ConvShape {
        ConvShape { groups, ..self }
    }

    pub(crate) fn depthwise(self) -> ConvShape {
        ConvShape {
            groups: self.c_in,
            ..self
        }
    }
}

/// Where a network's parameterised layers come from.
pub(crate) trait Maker {
    /// Convolution `conv` (no bias) then inference batch-norm `bn` with
    /// `eps`: two stages as built, one folded.
    fn conv_bn(&self, conv: &str, bn: &str, shape: ConvShape, eps: f64) -> Option<Stage>;
    /// Convolution `conv`, with a bias when `bias`.
    fn conv(&self, conv: &str, shape: ConvShape, bias: bool) -> Option<Stage>;
    /// `nn.Linear(c_in, c_out)` named `name`.
    fn linear(&self, name: &str, c_in: i64, c_out: i64) -> Option<Stage>;
    /// Inference batch-norm `bn` over `channels` that no convolution
    /// precedes (DenseNet's, after a concatenation): as built, or as a
    /// per-channel `x * scale + shift`.
    fn batch_norm(&self, bn: &str, channels: i64, eps: f64) -> Option<Stage>;
}

/// The built graph: variables created under `root` with torchvision's
/// names.
pub(crate) struct Reference<'a, 'b>(pub(crate) &'a nn::Path<'b>);

impl<'b> Reference<'_, 'b> {
    fn path(&self, name: &str) -> nn::Path<'b> {
        let mut parts = name.split('.');
        let mut path = self.0 / parts.next().unwrap_or_default();
        for part in parts {
            path = &path / part;
        }
        path
    }
}

/// An inference-mode batch-norm with its own `eps`.
struct BatchNormEps {
    bn: nn::BatchNorm,
    eps: f64,
}

impl Forward for BatchNormEps {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        Tensor::f_batch_norm(
            xs,
            self.bn.ws.as_ref(),
            self.bn.bs.as_ref(),
            Some(&self.bn.running_mean),
            Some(&self.bn.running_var),
            false,
            0.1,
            self.eps,
            true,
        )
    }
}

/// A linear layer from its tensors.
struct Dense {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Forward for Dense {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        xs.f_linear(&self.weight, self.bias.as_ref())
    }
}

fn reference_conv(path: nn::Path<'_>, shape: ConvShape, bias: bool) -> Conv {
    // The configuration's stride, padding and dilation only matter to
    // tch's own forward, which is not used: the variables' names, shapes
    // and initialisation depend on the kernel, groups and bias.
    let config = nn::ConvConfigND::<[i64; 2]> {
        groups: shape.groups,
        bias,
        ..Default::default()
    };
    let conv = nn::conv(path, shape.c_in, shape.c_out, shape.kernel, config);
    Conv::from_parts(conv.ws, conv.bs, shape.stride, 0, shape.groups)
        .padded(shape.padding)
        .dilated(shape.dilation)
}

impl Maker for Reference<'_, '_> {
    fn conv_bn(&self, conv: &str, bn: &str, shape: ConvShape, eps: f64) -> Option<Stage> {
        let conv = reference_conv(self.path(conv), shape, false);
        let config = nn::BatchNormConfig {
            eps,
            ..Default::default()
        };
        let bn = nn::batch_norm2d(self.path(bn), shape.c_out, config);
        Some(Box::new(
            crate::net::layers::Sequence::default()
                .then(conv)
                .then(BatchNormEps { bn, eps }),
        ))
    }

    fn conv(&self, conv: &str, shape: ConvShape, bias: bool) -> Option<Stage> {
        Some(Box::new(reference_conv(self.path(conv), shape, bias)))
    }

    fn linear(&self, name: &str, c_in: i64, c_out: i64) -> Option<Stage> {
        let linear = nn::linear(self.path(name), c_in, c_out, Default::default());
        Some(Box::new(Dense {
            weight: linear.ws,
            bias: linear.bs,
        }))
    }

    fn batch_norm(&self, bn: &str, channels: i64, eps: f64) -> Option<Stage> {
        let config = nn::BatchNormConfig {
            eps,
            ..Default::default()
        };
        let bn = nn::batch_norm2d(self.path(bn), channels, config);
        Some(Box::new(BatchNormEps { bn, eps }))
    }
}

/// The folded graph, from the loaded weights (which loading checked
/// against the reference: every name is there with its shape).
pub(crate) struct Folding<'a>(pub(crate) &'a Weights);

impl Maker for Folding<'_> {
    fn conv_bn(&self, conv: &str, bn: &str, shape: ConvShape, eps: f64) -> Option<Stage> {
        let w = self.0;
        let weight = w.f64(&format!("{conv}.weight"))?;
        let (scale, shift) = w.batch_norm_eps(bn, eps)?;
        let weight = weight * scale.view([-1, 1, 1, 1]);
        Some(Box::new(
            Conv::from_parts(
                w.finish(&weight),
                Some(shift.to_kind(w.kind)),
                shape.stride,
                0,
                shape.groups,
            )
            .padded(shape.padding)
            .dilated(shape.dilation),
        ))
    }

    fn conv(&self, conv: &str, shape: ConvShape, bias: bool) -> Option<Stage> {
        let w = self.0;
        let weight = w.f64(&format!("{conv}.weight"))?;
        let bias = if bias {
            Some(w.f64(&format!("{conv}.bias"))?.to_kind(w.kind))
        } else {
            None
        };
        Some(Box::new(
            Conv::from_parts(w.finish(&weight), bias, shape.stride, 0, shape.groups)
                .padded(shape.padding)
                .dilated(shape.dilation),
        ))
    }

    fn linear(&self, name: &str, _c_in: i64, _c_out: i64) -> Option<Stage> {
        let w = self.0;
        let tensor = |part: &str| {
            w.by_name
                .get(&format!("{name}.{part}"))
                .map(|tensor| tensor.to_kind(w.kind))
        };
        Some(Box::new(Dense {
            weight: tensor("weight")?,
            bias: Some(tensor("bias")?),
        }))
    }

    fn batch_norm(&self, bn: &str, _channels: i64, eps: f64) -> Option<Stage> {
        let w = self.0;
        let (scale, shift) = w.batch_norm_eps(bn, eps)?;
        Some(Box::new(Affine {
            scale: scale.to_kind(w.kind).view([1, -1, 1, 1]),
            shift: shift.to_kind(w.kind).view([1, -1, 1, 1]),
        }))
    }
}

/// An inference-mode batch-norm that could not be folded (it follows a
/// concatenation), as a per-channel affine map.
struct Affine {
    scale: Tensor,
    shift: Tensor,
}

impl Forward for Affine {
    /// `x * scale + shift` into a new tensor (the caller's ReLU then runs
    /// in place).
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let mut ys = xs.f_mul(&self.scale)?;
        let _ = ys.f_add_(&self.shift)?;
        Ok(ys)
    }
}

/// ReLU in place.
pub(crate) fn relu_(mut xs: Tensor) -> Result<Tensor, TchError> {
    let _ = xs.f_relu_()?;
    Ok(xs)
}

/// torchvision's `x.mean([2, 3])`.
pub(crate) fn spatial_mean(xs: &Tensor) -> Result<Tensor, TchError> {
    xs.f_mean_dim([2i64, 3].as_slice(), false, None::<tch::Kind>)
}

/// Global average pooling to `[N, C]`.
pub(crate) fn global_pool(xs: &Tensor) -> Result<Tensor, TchError> {
    xs.f_adaptive_avg_pool2d([1, 1])?.f_flatten(1, -1)
}

/// `(stage, ReLU after it)` pairs run in order.
pub(crate) fn run_chain(chain: &[(Stage, bool)], xs: &Tensor) -> Result<Tensor, TchError> {
    let mut ys = xs.shallow_clone();
    for (stage, relu) in chain {
        ys = stage.forward(&ys)?;
        if *relu {
            ys = relu_(ys)?;
        }
    }
    Ok(ys)
}
