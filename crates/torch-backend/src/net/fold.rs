//! What a folded graph (a [`Maker`](crate::net::maker::Maker) over
//! [`Weights`]) is made of: the same arithmetic as the built graph,
//! rearranged for speed once the weights are loaded.
//!
//! - Batch-norm folded into the convolution before it (`w * g / sqrt(v + e)`,
//!   bias `b - m * g / sqrt(v + e)`, computed in f64): one pass over each
//!   activation instead of two.
//! - Channels-last (NHWC strides) convolution weights and inputs: oneDNN's
//!   CPU kernels and cuDNN's half-precision kernels run on NHWC without
//!   reordering every layer.
//! - ReLU and residual additions in place, like torchvision's modules, so
//!   fewer large activations are allocated per forward.
//!
//! Parity with PyTorch stays within 1e-4 (tested against the fixtures and
//! against the built graph, `families`' tests); see BENCHMARKS.md for the
//! measured gains.

use std::collections::HashMap;

use tch::{Kind, Tensor};

/// A copy of a 4-D tensor with channels-last (NHWC) strides, the same
/// values; other tensors are returned as they are.
pub(crate) fn channels_last(tensor: &Tensor) -> Tensor {
    let size = tensor.size();
    let [n, c, h, w] = size.as_slice() else {
        return tensor.shallow_clone();
    };
    let mut out = empty_channels_last([*n, *c, *h, *w], (tensor.kind(), tensor.device()));
    out.copy_(tensor);
    out
}

/// An uninitialised `[n, c, h, w]` tensor with channels-last (NHWC)
/// strides.
fn empty_channels_last([n, c, h, w]: [i64; 4], options: (Kind, tch::Device)) -> Tensor {
    Tensor::empty_strided([n, c, h, w], [h * w * c, 1, w * c, c], options)
}

/// The loaded weights by name.
pub(crate) struct Weights {
    pub(crate) by_name: HashMap<String, Tensor>,
    pub(crate) kind: Kind,
}

impl Weights {
    /// Tensor `name` in f64 for folding. Loading already checked that every
    /// name the architecture needs is present with the right shape.
    pub(crate) fn f64(&self, name: &str) -> Option<Tensor> {
        self.by_name.get(name).map(|t| t.to_kind(Kind::Double))
    }

    /// Inference-mode batch-norm `bn` with `eps` (1e-5, GoogLeNet's 1e-3)
    /// as a per-channel `(scale, shift)`: `g / sqrt(v + e)` and
    /// `b - m * g / sqrt(v + e)`, in f64.
    pub(crate) fn batch_norm_eps(&self, bn: &str, eps: f64) -> Option<(Tensor, Tensor)> {
        let gamma = self.f64(&format!("{bn}.weight"))?;
        let beta = self.f64(&format!("{bn}.bias"))?;
        let mean = self.f64(&format!("{bn}.running_mean"))?;
        let var = self.f64(&format!("{bn}.running_var"))?;
        let scale = gamma / (var + eps).sqrt();
        let shift = beta - &mean * &scale;
        Some((scale, shift))
    }

    /// Converts a prepared f64 tensor to the run's kind and layout.
    pub(crate) fn finish(&self, tensor: &Tensor) -> Tensor {
        channels_last(&tensor.to_kind(self.kind))
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::channels_last;

    #[test]
    fn channels_last_keeps_values_and_changes_strides() {
        let input = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        let output = channels_last(&input);
        assert_eq!(output.stride(), vec![60, 1, 15, 3]);
        assert!(output.equal(&input));
        let flat = Tensor::randn([4, 5], (Kind::Float, Device::Cpu));
        assert_eq!(channels_last(&flat).stride(), vec![5, 1]);
    }
}
