//! torchvision's detectors, natively: Faster R-CNN, Mask R-CNN, Keypoint
//! R-CNN and RetinaNet with a ResNet-50 FPN backbone
//! (`fasterrcnn_resnet50_fpn`, `maskrcnn_resnet50_fpn`,
//! `keypointrcnn_resnet50_fpn`, `retinanet_resnet50_fpn`), as torchvision
//! 0.28 runs them in evaluation mode.
//!
//! The flow is `GeneralizedRCNN.forward`: the transform
//! ([`transform::Transform`]: normalise, resize to 800/1333 with
//! `interpolate`, pad to 32), the backbone ([`backbone`]: ResNet-50 with
//! frozen batch norm, FPN with a max-pool level), the region proposal
//! network ([`rpn`]), the box branch ([`roi_heads`], over
//! [`roi_align`]'s multi-scale RoIAlign and [`boxes`]' NMS), Mask R-CNN's
//! mask branch ([`masks`]), Keypoint R-CNN's keypoint branch
//! ([`keypoints`]), and the boxes, masks and keypoints mapped back to the
//! input's size. Each image runs on its own, as
//! FiftyOne feeds a torchvision detector images of their own sizes.
//!
//! Every step is the tensor operation torchvision runs, in its order, so
//! the same libtorch gives torchvision's numbers; NMS and RoIAlign, which
//! libtorch lacks, follow torchvision's CPU kernels.

pub(crate) mod backbone;
pub(crate) mod boxes;
pub(crate) mod keypoints;
pub(crate) mod masks;
pub(crate) mod retinanet;
pub(crate) mod roi_align;
pub(crate) mod roi_heads;
pub(crate) mod rpn;
pub(crate) mod transform;

use serde_json::Value;
use tch::nn;
use tch::{Device, Kind, TchError, Tensor};

use backbone::{ExtraBlock, Fpn, ResNet50Body};
use keypoints::{KeypointBranch, Keypoints};
use masks::{MaskBranch, Pasted};
use retinanet::RetinaHead;
use roi_heads::BoxBranch;
use rpn::Rpn;
use transform::Transform;

/// One image's detections, in the input image's pixels.
#[derive(Debug)]
pub(crate) struct Detections {
    /// `[K, 4]` absolute `x1, y1, x2, y2` (`f32`, on the CPU).
    pub(crate) boxes: Tensor,
    /// `[K]` scores.
    pub(crate) scores: Tensor,
    /// `[K]` class indices.
    pub(crate) labels: Tensor,
    /// Mask R-CNN's masks, pasted in the input image (see [`Pasted`]).
    pub(crate) masks: Option<Vec<Pasted>>,
    /// Keypoint R-CNN's keypoints, in the input image's pixels (`f32`, on
    /// the CPU).
    pub(crate) keypoints: Option<Keypoints>,
}

/// What runs on the pyramid.
enum Heads {
    /// Faster / Mask / Keypoint R-CNN: proposals, then the box (and mask
    /// or keypoint) branch.
    TwoStage {
        rpn: Box<Rpn>,
        boxes: Box<BoxBranch>,
        masks: Option<MaskBranch>,
        keypoints: Option<Box<KeypointBranch>>,
    },
    /// RetinaNet's dense head.
    Retina(RetinaHead),
}

/// A torchvision detector.
pub(crate) struct Detector {
    transform: Transform,
    body: ResNet50Body,
    fpn: Fpn,
    heads: Heads,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("transform", &self.transform)
            .finish_non_exhaustive()
    }
}

/// A number from `entrypoint_args`, if given.
fn argument(args: Option<&Value>, key: &str) -> Result<Option<f64>, String> {
    match args.and_then(|args| args.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|number| number.is_finite())
            .map(Some)
            .ok_or_else(|| format!("`entrypoint_args.{key}` must be a number, got `{value}`")),
    }
}

/// A count from `entrypoint_args`, if given.
fn count(args: Option<&Value>, key: &str, most: i64) -> Result<Option<i64>, String> {
    match args.and_then(|args| args.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_i64()
            .filter(|number| (1..=most).contains(number))
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "`entrypoint_args.{key}` must be a whole number from 1 to {most}, got `{value}`"
                )
            }),
    }
}

impl Detector {
    /// Builds detector `name` with `classes` outputs under `root`
    /// (variables named as torchvision names them), with the evaluation
    /// settings torchvision's builder takes from `entrypoint_args`
    /// (`box_score_thresh`, `box_nms_thresh`, `box_detections_per_img`,
    /// `rpn_pre_nms_top_n_test`, `rpn_post_nms_top_n_test`,
    /// `rpn_nms_thresh`, `rpn_score_thresh`, `min_size`, `max_size`; Keypoint
    /// R-CNN's `num_keypoints`, 17 by default).
    /// `None` when `name` is not a detector zoo builds; an error names a
    /// bad argument.
    pub(crate) fn build(
        name: &str,
        root: &nn::Path<'_>,
        classes: i64,
        args: Option<&Value>,
    ) -> Option<Result<Detector, String>> {
        if !crate::families::find(name).is_some_and(crate::families::Family::is_detector) {
            return None;
        }
        // torchvision's builders call `overwrite_eps(model, 0.0)` after
        // loading the COCO_V1 weights (every detector's DEFAULT): the frozen
        // batch norms then divide by `sqrt(running_var)` exactly.
        let coco_v1 = args
            .and_then(|args| args.get("weights"))
            .and_then(Value::as_str)
            .is_some_and(|weights| weights.ends_with(".DEFAULT") || weights.ends_with(".COCO_V1"));
        let eps = if coco_v1 { 0.0 } else { 1e-5 };
        let backbone = root / "backbone";
        let retina = name == "retinanet_resnet50_fpn";
        // RetinaNet's pyramid starts at `layer2` and adds P6 and P7.
        let (in_channels, extra): (&[i64], _) = if retina {
            (&[512, 1024, 2048], ExtraBlock::P6P7)
        } else {
            (&[256, 512, 1024, 2048], ExtraBlock::MaxPool)
        };
        let heads = if retina {
            Heads::Retina(RetinaHead::new(&(root / "head"), classes))
        } else {
            let keypoints = if name == "keypointrcnn_resnet50_fpn" {
                let count = match count(args, "num_keypoints", 1_000) {
                    Ok(count) => count.unwrap_or(keypoints::COCO_KEYPOINTS),
                    Err(message) => return Some(Err(message)),
                };
                Some(Box::new(KeypointBranch::new(&(root / "roi_heads"), count)))
            } else {
                None
            };
            Heads::TwoStage {
                rpn: Box::new(Rpn::new(&(root / "rpn" / "head"), 256)),
                boxes: Box::new(BoxBranch::new(&(root / "roi_heads"), classes)),
                masks: (name == "maskrcnn_resnet50_fpn")
                    .then(|| MaskBranch::new(&(root / "roi_heads"), classes)),
                keypoints,
            }
        };
        let mut detector = Detector {
            transform: Transform::default(),
            body: ResNet50Body::new(&(&backbone / "body"), eps),
            fpn: Fpn::new(&(&backbone / "fpn"), in_channels, extra),
            heads,
        };
        Some(detector.configure(args).map(|()| detector))
    }

    fn configure(&mut self, args: Option<&Value>) -> Result<(), String> {
        let (rpn, boxes) = match &mut self.heads {
            Heads::TwoStage { rpn, boxes, .. } => (rpn, boxes),
            Heads::Retina(head) => {
                let settings = &mut head.settings;
                if let Some(value) = argument(args, "score_thresh")? {
                    settings.score_thresh = value;
                }
                if let Some(value) = argument(args, "nms_thresh")? {
                    settings.nms_thresh = value;
                }
                if let Some(value) = count(args, "detections_per_img", 100_000)? {
                    settings.detections_per_img = value;
                }
                if let Some(value) = count(args, "topk_candidates", 1_000_000)? {
                    settings.topk_candidates = value;
                }
                return self.configure_transform(args);
            }
        };
        let boxes = &mut boxes.settings;
        if let Some(value) = argument(args, "box_score_thresh")? {
            boxes.score_thresh = value;
        }
        if let Some(value) = argument(args, "box_nms_thresh")? {
            boxes.nms_thresh = value;
        }
        if let Some(value) = count(args, "box_detections_per_img", 100_000)? {
            boxes.detections_per_img = value;
        }
        let rpn = &mut rpn.settings;
        if let Some(value) = count(args, "rpn_pre_nms_top_n_test", 1_000_000)? {
            rpn.pre_nms_top_n = value;
        }
        if let Some(value) = count(args, "rpn_post_nms_top_n_test", 1_000_000)? {
            rpn.post_nms_top_n = value;
        }
        if let Some(value) = argument(args, "rpn_nms_thresh")? {
            rpn.nms_thresh = value;
        }
        if let Some(value) = argument(args, "rpn_score_thresh")? {
            rpn.score_thresh = value;
        }
        self.configure_transform(args)
    }

    fn configure_transform(&mut self, args: Option<&Value>) -> Result<(), String> {
        let side = crate::preprocess::MAX_IMAGE_SIDE.into();
        if let Some(value) = count(args, "min_size", side)? {
            self.transform.min_size = value;
        }
        if let Some(value) = count(args, "max_size", side)? {
            self.transform.max_size = value;
        }
        Ok(())
    }

    /// Folds the backbone's frozen batch norms into its convolutions and
    /// makes the backbone and pyramid channels-last, once the weights are
    /// loaded (see [`ResNet50Body::fold`]); the heads get the pyramid's
    /// maps in the contiguous layout as before.
    pub(crate) fn fold(&mut self) -> Result<(), TchError> {
        self.body.fold()?;
        self.fpn.fold();
        Ok(())
    }

    /// The pyramid's maps for the heads, contiguous (`NCHW`).
    fn pyramid(&self, levels: &[Tensor]) -> Result<Vec<Tensor>, TchError> {
        self.fpn
            .forward(levels)?
            .iter()
            .map(Tensor::f_contiguous)
            .collect()
    }

    /// The detections of one image `[3, H, W]` with values in `[0, 1]`.
    pub(crate) fn detect(&self, image: &Tensor) -> Result<Detections, TchError> {
        let prepared = self.transform.prepare(image)?;
        let padded = prepared.batch.size();
        let levels = self.body.forward(&prepared.batch)?;
        let padded = [padded[2], padded[3]];
        let (rpn, box_branch, mask_branch, keypoint_branch) = match &self.heads {
            Heads::TwoStage {
                rpn,
                boxes,
                masks,
                keypoints,
            } => (rpn, boxes, masks, keypoints),
            Heads::Retina(head) => {
                let features = self.pyramid(&levels[1..])?;
                let found = head.detect(&features, padded, prepared.image_size)?;
                let boxes = Transform::boxes_to_original(
                    &found.boxes,
                    prepared.image_size,
                    prepared.original_size,
                )?;
                return Ok(Detections {
                    boxes: boxes.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?,
                    scores: found
                        .scores
                        .f_to_kind(Kind::Float)?
                        .f_to_device(Device::Cpu)?,
                    labels: found
                        .labels
                        .f_to_kind(Kind::Int64)?
                        .f_to_device(Device::Cpu)?,
                    masks: None,
                    keypoints: None,
                });
            }
        };
        let features = self.pyramid(&levels)?;
        let proposals = rpn.proposals(&features, padded, prepared.image_size)?;
        let pooled: Vec<&Tensor> = features.iter().take(4).collect();
        let found = box_branch.detect(&pooled, &proposals, prepared.image_size)?;
        let boxes = Transform::boxes_to_original(
            &found.boxes,
            prepared.image_size,
            prepared.original_size,
        )?;
        let masks = match mask_branch {
            Some(branch) if found.boxes.size()[0] > 0 => {
                let probabilities = branch.probabilities(
                    &pooled,
                    &found.boxes,
                    &found.labels,
                    prepared.image_size,
                )?;
                Some(masks::paste(&probabilities, &boxes)?)
            }
            Some(_) => Some(Vec::new()),
            None => None,
        };
        let cpu = |tensor: Tensor, kind: Kind| tensor.f_to_kind(kind)?.f_to_device(Device::Cpu);
        let keypoints = match keypoint_branch {
            Some(branch) => {
                let located = branch.keypoints(&pooled, &found.boxes, prepared.image_size)?;
                let points = keypoints::keypoints_to_original(
                    &located.points,
                    prepared.image_size,
                    prepared.original_size,
                )?;
                Some(Keypoints {
                    points: cpu(points, Kind::Float)?,
                    scores: cpu(located.scores, Kind::Float)?,
                })
            }
            None => None,
        };
        Ok(Detections {
            boxes: cpu(boxes, Kind::Float)?,
            scores: cpu(found.scores, Kind::Float)?,
            labels: cpu(found.labels, Kind::Int64)?,
            masks,
            keypoints,
        })
    }
}

/// The oracle of `cargo xtask detection-oracle`
/// (`xtask/fixtures/detection_oracle.py`: torchvision 0.28's own ops).
#[cfg(test)]
pub(crate) fn oracle() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/detection_oracle.json");
    serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap()
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tch::nn::VarStore;

    use super::Detector;

    /// A bad evaluation setting in `entrypoint_args` is an error naming
    /// the field and the value, not a panic or a silent default.
    #[test]
    fn bad_entrypoint_args_are_errors_naming_the_field() {
        for (args, field) in [
            (
                json!({"box_detections_per_img": 0}),
                "box_detections_per_img",
            ),
            (json!({"box_score_thresh": "high"}), "box_score_thresh"),
            (json!({"min_size": 1_000_000}), "min_size"),
            (json!({"topk_candidates": -3}), "topk_candidates"),
            (json!({"num_keypoints": 0}), "num_keypoints"),
        ] {
            let name = match field {
                "topk_candidates" => "retinanet_resnet50_fpn",
                "num_keypoints" => "keypointrcnn_resnet50_fpn",
                _ => "fasterrcnn_resnet50_fpn",
            };
            let store = VarStore::new(tch::Device::Cpu);
            let Some(Err(message)) = Detector::build(name, &store.root(), 91, Some(&args)) else {
                panic!("{args} was accepted");
            };
            assert!(message.contains(field), "{message}");
        }
        let store = VarStore::new(tch::Device::Cpu);
        assert!(Detector::build("resnet50", &store.root(), 91, None).is_none());
    }
}
