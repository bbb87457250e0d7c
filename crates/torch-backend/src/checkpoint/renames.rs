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
//!   32/16 channels wide where version 2 scales it (`families/mnasnet.rs`).
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

use tch::Tensor;

/// Which of torchvision's loader conventions a network's checkpoints
/// need: the family table (`families`) names one per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renames {
    /// Names pass unchanged, less the tensors under these prefixes
    /// (auxiliary classifiers torchvision loads and then drops).
    Drop(&'static [&'static str]),
    /// DenseNet's names of torchvision before 0.3 (see the module docs).
    DenseNet,
    /// The detectors' names of torchvision before 0.13.
    Detection,
}

impl Renames {
    /// The tensors of a checkpoint under the names zoo's network uses:
    /// torchvision's loader renames applied, and the tensors torchvision
    /// loads only into parts it then drops left out.
    pub(crate) fn names(self, tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
        tensors
            .into_iter()
            .filter_map(|(name, tensor)| Some((self.name(name)?, tensor)))
            .collect()
    }

    /// One checkpoint name as [`Renames::names`] maps it: renamed, or
    /// `None` when the tensor is left out.
    pub(crate) fn name(self, name: String) -> Option<String> {
        match self {
            Renames::DenseNet => Some(densenet_name(&name)),
            Renames::Detection => Some(detection_name(&name)),
            Renames::Drop(prefixes) => {
                (!prefixes.iter().any(|prefix| name.starts_with(prefix))).then_some(name)
            }
        }
    }
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

#[cfg(test)]
mod tests {
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
}
