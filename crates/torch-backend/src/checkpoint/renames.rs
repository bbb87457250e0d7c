//! What torchvision's model builders do to a hosted checkpoint and to the
//! architecture when they load named weights, so zoo loads the same files
//! into the same networks.
//!
//! - DenseNet: the hosted files (`densenet121-a639ec97.pth`, ...) use the
//!   names of torchvision before 0.3 (`denselayer1.norm.1.weight`);
//!   torchvision's `_load_state_dict` renames them with the pattern
//!   `^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$`
//!   (the two groups joined, so `denselayer1.norm1.weight`). zoo applies
//!   the same rename; current names pass unchanged.
//! - GoogLeNet: like Inception v3 below, the hosted file holds the two
//!   auxiliary classifiers (`aux1.*`, `aux2.*`), which torchvision loads
//!   and drops; `transform_input` defaults to true with named weights.
//! - Segmentation (`deeplabv3_*`, `fcn_*`): with named weights torchvision
//!   builds the `aux_classifier` the hosted files hold (`aux_loss=True`);
//!   it computes an `aux` output FiftyOne never reads, so zoo drops those
//!   tensors and does not build it.
//! - MNASNet 0.5: the hosted file is a version-1 checkpoint, whose stem is
//!   32/16 channels wide where version 2 scales it (`BuildOptions::for_checkpoint`).
//! - Inception v3: the hosted file holds the auxiliary classifier
//!   (`AuxLogits.*`); torchvision builds it to load them and then drops it
//!   (`aux_logits=False`, FiftyOne's setting), so its tensors are not used
//!   for inference: zoo drops them before loading. With named weights
//!   torchvision also sets `transform_input=True` unless the caller gives
//!   it, which re-normalises the input from ImageNet's statistics to
//!   `[-1, 1]` per channel before the first convolution.
//! - Detectors: the hosted COCO checkpoints
//!   (`fasterrcnn_resnet50_fpn_coco-258fb6c6.pth`, ...) name the FPN's
//!   convolutions `inner_blocks.0.weight` and the RPN head's `conv.weight`,
//!   which torchvision 0.13 moved into `Conv2dNormActivation`
//!   (`inner_blocks.0.0.weight`, `conv.0.0.weight`); the modules'
//!   `_load_from_state_dict` rename them, and so does zoo.

use serde_json::Value;
use tch::Tensor;

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
            None => matches!(architecture, "inception_v3" | "googlenet") && has_weights,
        };
        BuildOptions {
            transform_input,
            mnasnet_v1_stem: false,
        }
    }

    /// Whether [`BuildOptions::for_checkpoint`] needs the checkpoint of
    /// `architecture` before the network is built (MNASNet 0.5 only).
    pub(crate) fn depends_on_checkpoint(architecture: &str) -> bool {
        architecture == "mnasnet0_5"
    }

    /// These options adjusted to checkpoint `tensors` of `architecture`, as
    /// torchvision's loader adjusts the model: MNASNet's
    /// `_load_from_state_dict` gives a version-1 checkpoint (saved before
    /// torchvision 0.5; the hosted `mnasnet0.5_top1_67.823-3ffadce67e.pth`)
    /// the fixed 32/16-channel stem of that version whatever the width
    /// multiplier. The version lives in the pickle's metadata, which zoo does
    /// not read; the stem's shape tells the two apart (`layers.0.weight` has
    /// 32 output channels in version 1, `16` in version 2 at width 0.5).
    pub(crate) fn for_checkpoint(
        self,
        architecture: &str,
        tensors: &[(String, Tensor)],
    ) -> BuildOptions {
        let v1 = Self::depends_on_checkpoint(architecture)
            && tensors.iter().any(|(name, tensor)| {
                name == "layers.0.weight" && tensor.size().first() == Some(&32)
            });
        BuildOptions {
            mnasnet_v1_stem: v1,
            ..self
        }
    }
}

/// The tensors of a torchvision checkpoint under the names zoo's
/// architecture `architecture` uses: torchvision's loader renames applied,
/// and the tensors torchvision loads only into parts it then drops left
/// out.
pub(crate) fn torchvision_names(
    architecture: &str,
    tensors: Vec<(String, Tensor)>,
) -> Vec<(String, Tensor)> {
    tensors
        .into_iter()
        .filter_map(|(name, tensor)| Some((torchvision_name(architecture, name)?, tensor)))
        .collect()
}

/// One checkpoint name as [`torchvision_names`] maps it: renamed, or
/// `None` when the tensor is left out.
pub(crate) fn torchvision_name(architecture: &str, name: String) -> Option<String> {
    if architecture.starts_with("densenet") {
        return Some(densenet_name(&name));
    }
    if crate::families::detection::is_detector(architecture) {
        return Some(detection_name(&name));
    }
    let dropped: &[&str] = match architecture {
        "inception_v3" => &["AuxLogits."],
        "googlenet" => &["aux1.", "aux2."],
        _ if crate::net::maker::SEGMENTERS.contains(&architecture) => &["aux_classifier."],
        _ => &[],
    };
    (!dropped.iter().any(|prefix| name.starts_with(prefix))).then_some(name)
}

/// torchvision's renames of the detectors' pre-0.13 names (the hosted
/// COCO checkpoints use them), as the modules' `_load_from_state_dict`
/// apply them to a state dict without version metadata: FPN
/// `inner_blocks.N.weight` and `layer_blocks.N.weight` to `...N.0.weight`,
/// the RPN head's `conv.weight` to `conv.0.0.weight`, Mask R-CNN's
/// `mask_head.mask_fcnN.weight` to `mask_head.{N-1}.0.weight`, RetinaNet's
/// `head.classification_head.conv.{2i}.weight` (and the regression head's)
/// to `conv.{i}.0.weight`; current names pass unchanged.
fn detection_name(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        [
            "backbone",
            "fpn",
            blocks @ ("inner_blocks" | "layer_blocks"),
            index,
            parameter @ ("weight" | "bias"),
        ] => {
            format!("backbone.fpn.{blocks}.{index}.0.{parameter}")
        }
        ["rpn", "head", "conv", parameter @ ("weight" | "bias")] => {
            format!("rpn.head.conv.0.0.{parameter}")
        }
        [
            "roi_heads",
            "mask_head",
            layer,
            parameter @ ("weight" | "bias"),
        ] => {
            match layer
                .strip_prefix("mask_fcn")
                .and_then(|digits| digits.parse::<u32>().ok())
                .filter(|number| *number >= 1)
            {
                Some(number) => format!("roi_heads.mask_head.{}.0.{parameter}", number - 1),
                None => name.to_owned(),
            }
        }
        [
            "head",
            head @ ("classification_head" | "regression_head"),
            "conv",
            index,
            parameter @ ("weight" | "bias"),
        ] => {
            // RetinaNet's towers: `conv.{2i}` (convolutions and ReLUs
            // alternating) to `conv.{i}.0`.
            match index.parse::<u32>() {
                Ok(number) if number % 2 == 0 && number <= 6 => {
                    format!("head.{head}.conv.{}.0.{parameter}", number / 2)
                }
                _ => name.to_owned(),
            }
        }
        _ => name.to_owned(),
    }
}

/// torchvision's DenseNet rename of one key (see the module docs).
fn densenet_name(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    let [.., layer, module, index, parameter] = parts.as_slice() else {
        return name.to_owned();
    };
    let is_layer = layer
        .rfind("denselayer")
        .map(|at| &layer[at + "denselayer".len()..])
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    let renamed = is_layer
        && matches!(*module, "norm" | "relu" | "conv")
        && matches!(*index, "1" | "2")
        && matches!(
            *parameter,
            "weight" | "bias" | "running_mean" | "running_var"
        );
    if !renamed {
        return name.to_owned();
    }
    let head = &parts[..parts.len() - 3];
    format!("{}.{module}{index}.{parameter}", head.join("."))
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

    /// torchvision's DenseNet pattern, case by case: legacy names are
    /// renamed, current and unrelated names are not.
    #[test]
    fn densenet_legacy_names_are_renamed_like_torchvisions_loader() {
        let cases = [
            (
                "features.denseblock1.denselayer1.norm.1.weight",
                "features.denseblock1.denselayer1.norm1.weight",
            ),
            (
                "features.denseblock4.denselayer16.conv.2.weight",
                "features.denseblock4.denselayer16.conv2.weight",
            ),
            (
                "features.denseblock2.denselayer3.norm.2.running_var",
                "features.denseblock2.denselayer3.norm2.running_var",
            ),
            (
                "features.denseblock1.denselayer1.norm1.weight",
                "features.denseblock1.denselayer1.norm1.weight",
            ),
            (
                "features.denseblock1.denselayer1.norm.1.num_batches_tracked",
                "features.denseblock1.denselayer1.norm.1.num_batches_tracked",
            ),
            (
                "features.denseblock1.denselayer1.norm.3.weight",
                "features.denseblock1.denselayer1.norm.3.weight",
            ),
            (
                "features.transition1.norm.weight",
                "features.transition1.norm.weight",
            ),
            (
                "features.denselayer.norm.1.weight",
                "features.denselayer.norm.1.weight",
            ),
            ("classifier.weight", "classifier.weight"),
        ];
        for (legacy, expected) in cases {
            assert_eq!(densenet_name(legacy), expected, "{legacy}");
        }
    }

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
