//! `Conv`: Ultralytics' convolution block (`Conv2d`, `BatchNorm2d`, an
//! activation) and plain `Conv2d`s, read from the module tree with their
//! hyperparameters and fused as Ultralytics' `fuse()` fuses them.

use serde_json::Value as Json;
use tch::{Kind, TchError, Tensor};

use super::{ArchitectureError, Builder, unsupported};
use crate::net::fold::channels_last;

/// `Conv2d` (+ fused `BatchNorm2d`) (+ SiLU).
#[derive(Debug)]
pub(crate) struct Conv {
    pub(super) weight: Tensor,
    pub(super) bias: Tensor,
    pub(super) stride: [i64; 2],
    pub(super) padding: [i64; 2],
    pub(super) dilation: [i64; 2],
    pub(super) groups: i64,
    pub(super) silu: bool,
}

impl Conv {
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let y = x.f_conv2d(
            &self.weight,
            Some(&self.bias),
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )?;
        if self.silu { y.f_silu() } else { Ok(y) }
    }

    pub(super) fn out_channels(&self) -> i64 {
        self.weight.size()[0]
    }
}

impl Conv {
    pub(super) fn make_channels_last(&mut self) {
        self.weight = channels_last(&self.weight);
    }
}

impl Builder<'_> {
    /// A `torch.nn.Conv2d` at `path`, with its bias (or zeros) and the
    /// `Conv2d` hyperparameters from its attributes.
    pub(super) fn conv2d(&mut self, path: &str) -> Result<Conv, ArchitectureError> {
        let module = self.expect(path, "Conv2d")?;
        let pair = |name: &str| -> Result<[i64; 2], ArchitectureError> {
            let value = module.attributes.get(name);
            let numbers: Option<Vec<i64>> = match value {
                Some(Json::Array(items)) => items.iter().map(Json::as_i64).collect(),
                Some(Json::Number(number)) => number.as_i64().map(|n| vec![n, n]),
                _ => None,
            };
            match numbers.as_deref() {
                Some(&[a, b]) if (0..=1024).contains(&a) && (0..=1024).contains(&b) => Ok([a, b]),
                _ => Err(unsupported(format!(
                    "`{path}.{name}` is {}, not a pair of small whole numbers",
                    value.map_or_else(|| "missing".to_owned(), ToString::to_string)
                ))),
            }
        };
        let stride = pair("stride")?;
        let padding = pair("padding")?;
        let dilation = pair("dilation")?;
        let groups = module
            .attributes
            .get("groups")
            .and_then(Json::as_i64)
            .filter(|groups| (1..=65_536).contains(groups))
            .ok_or_else(|| unsupported(format!("`{path}.groups` is not a whole number")))?;
        if let Some(mode) = module.attributes.get("padding_mode")
            && mode != "zeros"
        {
            return Err(unsupported(format!(
                "`{path}.padding_mode` is {mode}, not \"zeros\""
            )));
        }
        if stride.contains(&0) || dilation.contains(&0) {
            return Err(unsupported(format!(
                "`{path}` has a zero stride or dilation"
            )));
        }
        let weight = self.tensor(&format!("{path}.weight"))?;
        if weight.dim() != 4 {
            return Err(unsupported(format!("`{path}.weight` is not 4-dimensional")));
        }
        let out = weight.size()[0];
        let bias = match self.optional_tensor(&format!("{path}.bias")) {
            Some(bias) if bias.size() == [out] => bias,
            Some(_) => return Err(unsupported(format!("`{path}.bias` has the wrong shape"))),
            None => Tensor::f_zeros([out], (Kind::Float, weight.device()))?,
        };
        Ok(Conv {
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups,
            silu: false,
        })
    }

    /// An Ultralytics `Conv` or `DWConv` at `path` (`conv`, `bn`, `act`),
    /// fused as `torch.nn.utils.fusion.fuse_conv_bn_weights` fuses it.
    pub(super) fn conv(&mut self, path: &str) -> Result<Conv, ArchitectureError> {
        let module = self.module(path)?;
        if !matches!(module.kind(), "Conv" | "DWConv") {
            return Err(unsupported(format!(
                "`{path}` is a `{}`, not a `Conv`",
                module.class
            )));
        }
        let mut conv = self.conv2d(&format!("{path}.conv"))?;
        let bn = self.expect(&format!("{path}.bn"), "BatchNorm2d")?;
        let eps = bn
            .attributes
            .get("eps")
            .and_then(Json::as_f64)
            .filter(|eps| eps.is_finite() && *eps >= 0.0)
            .ok_or_else(|| unsupported(format!("`{path}.bn.eps` is not a number")))?;
        let silu = match self.module(&format!("{path}.act"))?.kind() {
            "SiLU" => true,
            "Identity" => false,
            other => {
                return Err(unsupported(format!(
                    "`{path}.act` is a `{other}`; zoo runs SiLU and Identity"
                )));
            }
        };
        let out = conv.out_channels();
        let mut take = |name: &str| -> Result<Tensor, ArchitectureError> {
            let tensor = self.tensor(&format!("{path}.bn.{name}"))?;
            if tensor.size() != [out] {
                return Err(unsupported(format!(
                    "`{path}.bn.{name}` has shape {:?}, not [{out}]",
                    tensor.size()
                )));
            }
            Ok(tensor)
        };
        let (mean, var, gamma, beta) = (
            take("running_mean")?,
            take("running_var")?,
            take("weight")?,
            take("bias")?,
        );
        let _ = self.optional_tensor(&format!("{path}.bn.num_batches_tracked"));
        // fuse_conv_bn_weights: w * (gamma * rsqrt(var + eps)), and
        // (b - mean) * rsqrt(var + eps) * gamma + beta.
        let rsqrt = var.f_add_scalar(eps)?.f_rsqrt()?;
        let scale = gamma.f_mul(&rsqrt)?.f_reshape([-1, 1, 1, 1])?;
        conv.weight = conv.weight.f_mul(&scale)?;
        conv.bias = conv
            .bias
            .f_sub(&mean)?
            .f_mul(&rsqrt)?
            .f_mul(&gamma)?
            .f_add(&beta)?;
        conv.silu = silu;
        Ok(conv)
    }
}
