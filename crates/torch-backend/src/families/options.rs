//! How torchvision's builders build an architecture from FiftyOne's
//! `entrypoint_args`, and what they then do to the input.

use serde_json::Value;
use tch::Tensor;

use crate::families::find;

/// How torchvision builds an architecture, from FiftyOne's
/// `entrypoint_args`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BuildOptions {
    /// Inception v3's and GoogLeNet's `transform_input`.
    pub(crate) transform_input: bool,
    /// MNASNet built with the fixed 32/16-channel stem of version-1
    /// checkpoints (see [`BuildOptions::for_checkpoint`]).
    pub(crate) mnasnet_v1_stem: bool,
}

impl BuildOptions {
    /// The options torchvision's builder `architecture` uses for these
    /// `entrypoint_args` (absent: none).
    pub(crate) fn new(architecture: &str, entrypoint_args: Option<&Value>) -> BuildOptions {
        let args = entrypoint_args.and_then(Value::as_object);
        let has_weights = args
            .and_then(|args| args.get("weights"))
            .is_some_and(|weights| !weights.is_null());
        let transform_input = match args.and_then(|args| args.get("transform_input")) {
            Some(value) => value.as_bool().unwrap_or(false),
            None => find(architecture).is_some_and(|family| family.transform_input) && has_weights,
        };
        BuildOptions {
            transform_input,
            mnasnet_v1_stem: false,
        }
    }

    /// Whether [`BuildOptions::for_checkpoint`] needs the checkpoint of
    /// `architecture` before the network is built (its family row's
    /// `options_from_checkpoint`: MNASNet 0.5 only).
    pub(crate) fn depends_on_checkpoint(architecture: &str) -> bool {
        find(architecture).is_some_and(|family| family.options_from_checkpoint.is_some())
    }

    /// These options adjusted to checkpoint `tensors` of `architecture`, as
    /// torchvision's loader adjusts the model (its family row's
    /// `options_from_checkpoint`; MNASNet's version-1 stem).
    pub(crate) fn for_checkpoint(
        self,
        architecture: &str,
        tensors: &[(String, Tensor)],
    ) -> BuildOptions {
        match find(architecture).and_then(|family| family.options_from_checkpoint) {
            Some(adjust) => adjust(self, tensors),
            None => self,
        }
    }
}

/// torchvision's `Inception3._transform_input`: each channel from
/// ImageNet's normalisation to `(x - 0.5) / 0.5` of the raw pixel.
pub(crate) fn inception_transform_input(xs: &Tensor) -> Result<Tensor, tch::TchError> {
    let channel = |index: i64, std: f64, mean: f64| -> Result<Tensor, tch::TchError> {
        Ok(xs.f_select(1, index)?.f_unsqueeze(1)? * (std / 0.5) + (mean - 0.5) / 0.5)
    };
    Tensor::f_cat(
        &[
            channel(0, 0.229, 0.485)?,
            channel(1, 0.224, 0.456)?,
            channel(2, 0.225, 0.406)?,
        ],
        1,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn inception_runs_with_transform_input_when_named_weights_are_given() {
        let cases = [
            (
                "inception_v3",
                json!({"weights": "Inception_V3_Weights.DEFAULT"}),
                true,
            ),
            ("inception_v3", json!({}), false),
            ("inception_v3", json!({"weights": null}), false),
            (
                "inception_v3",
                json!({"weights": "Inception_V3_Weights.DEFAULT", "transform_input": false}),
                false,
            ),
            (
                "resnet50",
                json!({"weights": "ResNet50_Weights.DEFAULT"}),
                false,
            ),
        ];
        for (architecture, args, expected) in cases {
            assert_eq!(
                BuildOptions::new(architecture, Some(&args)).transform_input,
                expected,
                "{architecture} {args}"
            );
        }
        assert!(!BuildOptions::new("inception_v3", None).transform_input);
    }
}
