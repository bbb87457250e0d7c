//! Fallible building blocks for the networks zoo writes itself.
//!
//! tch's `nn` modules call libtorch through its panicking wrappers, so a
//! libtorch error in a forward (an input too small for a pooling window, a
//! wrong channel count) would unwind through the whole run. The layers here
//! keep tch's parameter creation (so variables get torchvision's names and
//! `load_into` checks them) but run through tch's `f_` calls, which return
//! libtorch's error.

use std::sync::atomic::{AtomicBool, Ordering};

use tch::nn;
use tch::{Kind, TchError, Tensor};

/// A stage of a network, run in inference mode; a libtorch error is an
/// `Err`, never a panic.
pub(crate) trait Forward: Send {
    /// The stage's output for `xs`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError>;
}

/// A 2-D convolution with torchvision's parameter names (`weight`,
/// `bias`) under its path.
#[derive(Debug)]
pub(crate) struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: i64,
    /// Rows, then columns (Inception v3's 1x7 and 7x1 kernels pad one
    /// side only).
    padding: [i64; 2],
    dilation: i64,
    groups: i64,
}

impl Conv {
    /// `nn.Conv2d(c_in, c_out, kernel, stride, padding)` with a bias.
    pub(crate) fn new(
        path: nn::Path<'_>,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
    ) -> Conv {
        let config = nn::ConvConfig {
            stride,
            padding,
            ..Default::default()
        };
        let conv = nn::conv2d(path, c_in, c_out, kernel, config);
        Conv::from_parts(conv.ws, conv.bs, stride, padding, 1)
    }

    /// A convolution from tensors already made (the folded graphs build
    /// their weights themselves).
    pub(crate) fn from_parts(
        weight: Tensor,
        bias: Option<Tensor>,
        stride: i64,
        padding: i64,
        groups: i64,
    ) -> Conv {
        Conv {
            weight,
            bias,
            stride,
            padding: [padding, padding],
            dilation: 1,
            groups,
        }
    }

    /// This convolution with padding `rows` above and below and `columns`
    /// left and right (torchvision's `padding=(rows, columns)`).
    pub(crate) fn padded(mut self, [rows, columns]: [i64; 2]) -> Conv {
        self.padding = [rows, columns];
        self
    }

    /// This convolution with kernel dilation `dilation` (torchvision's
    /// dilated ResNet backbones and ASPP branches).
    pub(crate) fn dilated(mut self, dilation: i64) -> Conv {
        self.dilation = dilation;
        self
    }

    /// This convolution followed by `x * scale + shift` per output channel
    /// (a frozen batch norm; `scale` and `shift` in `f64`) as one
    /// convolution: the weights scaled in `f64`, the bias `bias * scale +
    /// shift`, both back in the weights' kind, the weights channels-last
    /// (see `folded.rs`).
    pub(crate) fn folded(&self, scale: &Tensor, shift: &Tensor) -> Result<Conv, TchError> {
        let kind = self.weight.kind();
        let weight = self
            .weight
            .f_to_kind(Kind::Double)?
            .f_mul(&scale.f_view([-1, 1, 1, 1])?)?
            .f_to_kind(kind)?;
        let bias = match &self.bias {
            Some(bias) => bias.f_to_kind(Kind::Double)?.f_mul(scale)?.f_add(shift)?,
            None => shift.shallow_clone(),
        };
        Ok(Conv {
            weight: crate::net::fold::channels_last(&weight),
            bias: Some(bias.f_to_kind(kind)?),
            ..*self
        })
    }

    /// The same convolution with channels-last weights.
    pub(crate) fn channels_last(&self) -> Conv {
        Conv {
            weight: crate::net::fold::channels_last(&self.weight),
            bias: self.bias.as_ref().map(Tensor::shallow_clone),
            ..*self
        }
    }
}

/// Whether cuDNN times its convolution algorithms for each new input shape
/// and keeps the fastest (`torch.backends.cudnn.benchmark`). Set by the
/// model from the shapes it sees; read by every [`Conv`].
static CUDNN_BENCHMARK: AtomicBool = AtomicBool::new(false);

/// Turns cuDNN's per-shape algorithm search on or off for every [`Conv`].
pub(crate) fn set_cudnn_benchmark(on: bool) {
    CUDNN_BENCHMARK.store(on, Ordering::Relaxed);
}

impl Forward for Conv {
    /// `conv2d`, with two of libtorch's process-wide switches made explicit:
    /// TF32 off, so an `f32` model on a GPU computes in `f32` (with cuDNN's
    /// default TF32, resnet50's logits moved 1.7e-2 from the CPU result on an
    /// H100; BENCHMARKS.md, GPU section), and the algorithm search from
    /// [`set_cudnn_benchmark`]. On a CPU both are ignored.
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        xs.f_internal_convolution(
            &self.weight,
            self.bias.as_ref(),
            [self.stride, self.stride],
            self.padding,
            [self.dilation, self.dilation],
            false,
            [0, 0],
            self.groups,
            CUDNN_BENCHMARK.load(Ordering::Relaxed),
            false,
            true,
            false,
        )
    }
}

/// An inference-mode `nn.BatchNorm2d` (running statistics, `eps` 1e-5).
#[derive(Debug)]
pub(crate) struct BatchNorm(nn::BatchNorm);

impl BatchNorm {
    pub(crate) fn new(path: nn::Path<'_>, channels: i64) -> BatchNorm {
        BatchNorm(nn::batch_norm2d(path, channels, Default::default()))
    }
}

impl Forward for BatchNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let bn = &self.0;
        Tensor::f_batch_norm(
            xs,
            bn.ws.as_ref(),
            bn.bs.as_ref(),
            Some(&bn.running_mean),
            Some(&bn.running_var),
            false,
            0.1,
            1e-5,
            true,
        )
    }
}

impl Forward for nn::Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        xs.f_linear(&self.ws, self.bs.as_ref())
    }
}

/// `nn.Linear(c_in, c_out)`.
pub(crate) fn linear(path: nn::Path<'_>, c_in: i64, c_out: i64) -> nn::Linear {
    nn::linear(path, c_in, c_out, Default::default())
}

/// Stages run one after the other.
#[derive(Default)]
pub(crate) struct Sequence(Vec<Box<dyn Forward>>);

impl Sequence {
    /// This sequence, then `stage`.
    pub(crate) fn then(mut self, stage: impl Forward + 'static) -> Sequence {
        self.0.push(Box::new(stage));
        self
    }

    /// This sequence, then a stateless function of the activations.
    pub(crate) fn then_fn(
        self,
        function: impl Fn(&Tensor) -> Result<Tensor, TchError> + Send + 'static,
    ) -> Sequence {
        self.then(Function(Box::new(function)))
    }
}

impl Forward for Sequence {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        let mut ys = xs.shallow_clone();
        for stage in &self.0 {
            ys = stage.forward(&ys)?;
        }
        Ok(ys)
    }
}

type Activation = Box<dyn Fn(&Tensor) -> Result<Tensor, TchError> + Send>;

/// A stateless stage (ReLU, pooling, flattening).
struct Function(Activation);

impl Forward for Function {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        (self.0)(xs)
    }
}

/// `nn.ReLU`.
pub(crate) fn relu(xs: &Tensor) -> Result<Tensor, TchError> {
    xs.f_relu()
}

/// `nn.MaxPool2d(kernel, stride, ceil_mode)` without padding.
pub(crate) fn max_pool(
    kernel: i64,
    stride: i64,
    ceil_mode: bool,
) -> impl Fn(&Tensor) -> Result<Tensor, TchError> + Send + 'static {
    move |xs: &Tensor| {
        xs.f_max_pool2d(
            [kernel, kernel],
            [stride, stride],
            [0, 0],
            [1, 1],
            ceil_mode,
        )
    }
}

/// `nn.AdaptiveAvgPool2d((height, width))`, then `torch.flatten(x, 1)`.
pub(crate) fn adaptive_pool_flat(
    height: i64,
    width: i64,
) -> impl Fn(&Tensor) -> Result<Tensor, TchError> + Send + 'static {
    move |xs: &Tensor| xs.f_adaptive_avg_pool2d([height, width])?.f_flatten(1, -1)
}
