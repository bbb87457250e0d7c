//! Ultralytics YOLOv5u, YOLOv8, YOLOv10, YOLO11 and YOLO26 detection
//! (`yolov5{n,s,m,l,x}-coco-torch`, `yolov8{n,s,m,l,x}-coco-torch`,
//! `yolov10{n,s,m,l,x}-coco-torch`, `yolo11{n,s,m,l,x}-coco-torch`,
//! `yolo26{n,s,m,l,x}-coco-torch`), YOLOv8, YOLO11 and YOLO26 instance
//! segmentation (`yolov8{n,s,m,l,x}-seg-coco-torch`,
//! `yolo11{n,s,m,l,x}-seg-coco-torch`, `yolo26{n,s,m,l,x}-seg-coco-torch`),
//! YOLO26 classification
//! (`yolo26{n,s,m,l,x}-cls-imagenet-torch`), YOLO26 pose
//! (`yolo26{n,s,m,l,x}-pose-coco-torch`) and YOLOv8 oriented boxes
//! (`yolov8{n,s,m,l,x}-obb-dotav1-torch`), natively, as FiftyOne 1.22.1's
//! `FiftyOneYOLOModel` runs them with Ultralytics 8.4:
//!
//! - the release checkpoint's pickled module tree is read without running
//!   Python (`checkpoint::modules`), and the network built from its `yaml`
//!   and weights ([`graph`]), `Conv`+`BatchNorm2d` fused in `f32`;
//! - each image is letterboxed ([`letterbox`]: `LetterBox(imgsz,
//!   auto=False)` with the checkpoint's `train_args.imgsz`, 640 by
//!   default and 224 for the classifiers; OpenCV's `INTER_LINEAR`, padding
//!   114), scaled by `1/255` in RGB order (FiftyOne hands Ultralytics RGB
//!   arrays);
//! - a classifier's `Classify` head gives the class probabilities
//!   (`Results.probs`), and FiftyOne's `to_classifications` the top class;
//! - the head's output goes through Ultralytics' `non_max_suppression`
//!   (confidence above 0.25, class-aware NMS at IoU 0.7 with torchvision's
//!   kernel, at most 300 boxes), `scale_boxes` back to the image, and
//!   FiftyOne's `to_detections` (`xywhn` to relative `[x, y, w, h]`);
//!   YOLO26's and YOLOv10's end-to-end heads too: Ultralytics 8.4.190's
//!   predictor runs their one-to-one branches without NMS only with
//!   `nms=False`, which FiftyOne never sets, so their one-to-many branches
//!   and NMS run;
//! - for oriented boxes, the rotated NMS ([`obb`]: `batch_probiou`),
//!   `scale_boxes(xywh=True)` and FiftyOne's `obb_to_polylines` of the
//!   corners;
//! - for pose, each box's keypoints through `scale_coords` (clipped to the
//!   image), then FiftyOne's `to_keypoints` (`keypoints.xyn`, with the
//!   visibilities as confidences);
//! - for segmentation, the predictor's `retina_masks=True` path
//!   ([`masks`]: `process_mask_native` at the image's size, boxes without
//!   a mask pixel dropped), then FiftyOne's `to_instances` (each mask
//!   cropped to its relative box).

pub(crate) mod graph;
pub(crate) mod letterbox;
pub(crate) mod masks;
pub(crate) mod obb;

use std::path::Path;

use serde_json::Value as Json;
use tch::{Device, Kind, TchError, Tensor};
use zoo_model_core::Image;

use crate::checkpoint::modules::read_module_checkpoint;
use crate::checkpoint::weights::WeightsError;
use crate::families::detection::boxes::nms;
pub use graph::ArchitectureError;
use graph::{Network, NetworkOutput};
pub use masks::PixelMask;

/// Ultralytics' default image size (`imgsz`), when the checkpoint's
/// `train_args` give none.
pub(crate) const IMAGE_SIZE: usize = 640;

/// The largest `imgsz` zoo letterboxes to.
const MAX_IMAGE_SIZE: i64 = 8192;

/// Ultralytics' default confidence threshold (`conf`), which FiftyOne's
/// entry keeps (its config sets no `confidence_thresh`).
pub(crate) const CONFIDENCE_THRESHOLD: f64 = 0.25;

/// Ultralytics' default NMS IoU threshold (`iou`).
pub(crate) const IOU_THRESHOLD: f64 = 0.7;

/// Ultralytics' default most detections per image (`max_det`).
pub(crate) const MAX_DETECTIONS: i64 = 300;

/// `non_max_suppression`'s most boxes into NMS (`max_nms`).
const MAX_NMS: i64 = 30_000;

/// `non_max_suppression`'s class offset (`max_wh`).
const MAX_WH: f64 = 7680.0;

/// Why a YOLO checkpoint could not be loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum YoloError {
    /// The checkpoint could not be read.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The checkpoint's network is not one zoo builds.
    #[error("YOLO checkpoint `{path}`: {source}")]
    Architecture {
        /// The checkpoint.
        path: String,
        /// Why.
        #[source]
        source: ArchitectureError,
    },
    /// libtorch failed while running the network.
    #[error("libtorch failed while running the YOLO network")]
    Torch(#[from] TchError),
    /// The image cannot be fed to the network.
    #[error("cannot run YOLO on the image: {0}")]
    Image(String),
}

/// One detection in the image's pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelDetection {
    /// `x1, y1, x2, y2`, clipped to the image.
    pub xyxy: [f32; 4],
    /// The class score.
    pub confidence: f32,
    /// The class index.
    pub class: i64,
    /// The instance mask (segmentation models).
    pub mask: Option<PixelMask>,
    /// The keypoints (pose models).
    pub keypoints: Option<PixelKeypoints>,
    /// The rotated box (OBB models): centre `x, y`, `w, h` in the image's
    /// pixels (`scale_boxes(xywh=True)`, not clipped) and the angle; then
    /// `xyxy` is its corners' extent.
    pub xywhr: Option<[f32; 5]>,
}

/// One detection's keypoints in the image's pixels, as Ultralytics'
/// `Results.keypoints` holds them (`scale_coords`, clipped to the image).
#[derive(Debug, Clone, PartialEq)]
pub struct PixelKeypoints {
    /// `x, y` per keypoint.
    pub points: Vec<[f32; 2]>,
    /// The visibility per keypoint, when `kpt_shape` has 3 values.
    pub confidence: Option<Vec<f32>>,
}

/// One detection as FiftyOne's `to_detections` makes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The class name (the checkpoint's `names`).
    pub label: String,
    /// Relative `[top-left x, top-left y, width, height]`.
    pub bounding_box: [f64; 4],
    /// The class score.
    pub confidence: f64,
    /// The instance mask cropped to the box as FiftyOne crops it:
    /// `(height, width, bytes)`, bytes 0 or 1 (segmentation models).
    pub mask: Option<(usize, usize, Vec<u8>)>,
}

/// A loaded Ultralytics YOLOv5u, YOLOv8, YOLOv10, YOLO11 or YOLO26
/// detector, YOLOv8 or YOLO11 segmenter, YOLO26 classifier or pose model,
/// or YOLOv8 oriented box detector.
#[derive(Debug)]
pub struct YoloDetector {
    network: Network,
    /// Class names by index.
    names: Vec<String>,
    size: usize,
}

impl YoloDetector {
    /// Loads an Ultralytics release checkpoint (`yolov8n.pt`, `yolo11n.pt`,
    /// `yolov5nu.pt`, ...): its
    /// module tree, `yaml`, `names` and `stride`.
    pub fn load(path: &Path) -> Result<YoloDetector, YoloError> {
        let checkpoint = read_module_checkpoint(path)?;
        let architecture = |source| YoloError::Architecture {
            path: path.display().to_string(),
            source,
        };
        let names = class_names(checkpoint.root.attributes.get("names")).map_err(architecture)?;
        let size = image_size(checkpoint.train_args.get("imgsz")).map_err(architecture)?;
        let network = Network::build(checkpoint).map_err(architecture)?;
        let classes = match (network.detect(), network.classify()) {
            (Some(detect), _) => detect.nc,
            (None, Some(classify)) => classify.nc,
            (None, None) => 0,
        };
        if names.len() as i64 != classes {
            return Err(architecture(ArchitectureError::Unsupported(format!(
                "the model names {} classes; its head has {classes}",
                names.len()
            ))));
        }
        Ok(YoloDetector {
            network,
            names,
            size,
        })
    }

    /// The class names, by index.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The square side images are letterboxed to.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The letterboxed pixels of `image` (`size * size * 3` RGB bytes).
    pub fn letterboxed(&self, image: &Image) -> Result<Vec<u8>, YoloError> {
        letterboxed(image, self.size)
    }

    /// The network input of letterboxed `pixels`: `[1, 3, size, size]`,
    /// `f32` in `0..=1` (FiftyOne's `/ 255`).
    fn input_of(&self, pixels: &[u8]) -> Result<Tensor, YoloError> {
        let size = self.size as i64;
        if pixels.len() != self.size * self.size * 3 {
            return Err(YoloError::Image(format!(
                "{} letterboxed bytes, not {size} x {size} x 3",
                pixels.len()
            )));
        }
        Ok(Tensor::f_from_slice(pixels)?
            .f_view([size, size, 3])?
            .f_permute([2, 0, 1])?
            .f_unsqueeze(0)?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(255)?)
    }

    /// The network input of several images' letterboxed `pixels`, one
    /// batch: `[N, 3, size, size]`, `f32` in `0..=1`.
    fn batch_input_of(&self, pixels: &[&[u8]]) -> Result<Tensor, YoloError> {
        if let [one] = pixels {
            return self.input_of(one);
        }
        let size = self.size as i64;
        let each = self.size * self.size * 3;
        let mut bytes = Vec::with_capacity(each * pixels.len());
        for image in pixels {
            if image.len() != each {
                return Err(YoloError::Image(format!(
                    "{} letterboxed bytes, not {size} x {size} x 3",
                    image.len()
                )));
            }
            bytes.extend_from_slice(image);
        }
        Ok(Tensor::f_from_slice(&bytes)?
            .f_view([pixels.len() as i64, size, size, 3])?
            .f_permute([0, 3, 1, 2])?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(255)?)
    }

    /// The letterboxed input of `image`: `[1, 3, size, size]`, `f32` in
    /// `0..=1`.
    pub fn input(&self, image: &Image) -> Result<Tensor, YoloError> {
        self.input_of(&self.letterboxed(image)?)
    }

    /// The head's output for a letterboxed input: `[1, 4 + nc (+ nm),
    /// anchors]`, and a segmenter's prototypes.
    fn forward(&self, input: &Tensor) -> Result<graph::HeadOutput, YoloError> {
        match tch::no_grad(|| self.network.forward(input))? {
            NetworkOutput::Boxes(output) => Ok(output),
            NetworkOutput::Probabilities(_) => Err(YoloError::Image(
                "the model is a classifier: it gives no boxes".to_owned(),
            )),
        }
    }

    /// Whether the model finds keypoints (a `Pose` head).
    pub fn poses(&self) -> bool {
        self.network
            .detect()
            .and_then(graph::Detect::keypoint_shape)
            .is_some()
    }

    /// Whether the model gives oriented boxes (an `OBB` head).
    pub fn rotates(&self) -> bool {
        self.network.detect().is_some_and(graph::Detect::rotates)
    }

    /// Whether the model classifies (a `Classify` head).
    pub fn classifies(&self) -> bool {
        self.network.classify().is_some()
    }

    /// The class probabilities of letterboxed `pixels` (a `Classify`
    /// head's softmax), as Ultralytics' `Results.probs` holds them.
    pub fn classify_letterboxed(&self, pixels: &[u8]) -> Result<Vec<f32>, YoloError> {
        let mut all = self.classify_letterboxed_batch(&[pixels])?;
        all.pop()
            .ok_or_else(|| YoloError::Image("the network gave no probabilities".to_owned()))
    }

    /// The class probabilities of several images' letterboxed `pixels`,
    /// in one forward (every input is the same square).
    pub fn classify_letterboxed_batch(&self, pixels: &[&[u8]]) -> Result<Vec<Vec<f32>>, YoloError> {
        if pixels.is_empty() {
            return Ok(Vec::new());
        }
        let input = self.batch_input_of(pixels)?;
        match tch::no_grad(|| self.network.forward(&input))? {
            NetworkOutput::Probabilities(probabilities) => (0..pixels.len() as i64)
                .map(|index| {
                    Ok(Vec::<f32>::try_from(
                        probabilities.f_get(index)?.f_contiguous()?,
                    )?)
                })
                .collect(),
            NetworkOutput::Boxes(_) => Err(YoloError::Image(
                "the model is a detector: it gives no class probabilities".to_owned(),
            )),
        }
    }

    /// FiftyOne's `to_classifications` of class `probabilities`: the
    /// first most probable class (`probs.top1`) and its probability.
    pub fn top1(&self, probabilities: &[f32]) -> Result<(String, f32), YoloError> {
        let mut best: Option<(usize, f32)> = None;
        for (index, probability) in probabilities.iter().enumerate() {
            if best.is_none_or(|(_, top)| *probability > top) {
                best = Some((index, *probability));
            }
        }
        let (index, probability) =
            best.ok_or_else(|| YoloError::Image("no class probabilities".to_owned()))?;
        let label = self
            .names
            .get(index)
            .cloned()
            .ok_or_else(|| YoloError::Image(format!("class {index} has no name")))?;
        Ok((label, probability))
    }

    /// Whether the model segments (a `Segment` head).
    pub fn segments(&self) -> bool {
        self.network
            .detect()
            .and_then(graph::Detect::mask_count)
            .is_some()
    }

    /// The detections of an image of `width` x `height` from its
    /// letterboxed `pixels`, in its pixels, as Ultralytics' predictor
    /// returns them (`Results.boxes`) with confidence threshold
    /// `confidence`.
    pub fn detect_letterboxed(
        &self,
        pixels: &[u8],
        width: u32,
        height: u32,
        confidence: f64,
    ) -> Result<Vec<PixelDetection>, YoloError> {
        let mut all = self.detect_letterboxed_batch(&[(pixels, width, height)], confidence)?;
        all.pop()
            .ok_or_else(|| YoloError::Image("the network gave no detections".to_owned()))
    }

    /// The detections of several images, each given as its letterboxed
    /// pixels and its own `width` x `height`, from one forward (every
    /// input is the same square), then each image's NMS and scaling as
    /// [`YoloDetector::detect_letterboxed`] runs them.
    pub fn detect_letterboxed_batch(
        &self,
        images: &[(&[u8], u32, u32)],
        confidence: f64,
    ) -> Result<Vec<Vec<PixelDetection>>, YoloError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        if images
            .iter()
            .any(|(_, width, height)| *width == 0 || *height == 0)
        {
            return Err(YoloError::Image("the image is empty".to_owned()));
        }
        let pixels: Vec<&[u8]> = images.iter().map(|(pixels, _, _)| *pixels).collect();
        let output = self.forward(&self.batch_input_of(&pixels)?)?;
        images
            .iter()
            .enumerate()
            .map(|(index, (_, width, height))| {
                let protos = match &output.protos {
                    Some(protos) => Some(protos.f_get(index as i64)?),
                    None => None,
                };
                self.postprocess(
                    &output.predictions.f_get(index as i64)?,
                    protos.as_ref(),
                    *width,
                    *height,
                    confidence,
                )
            })
            .collect()
    }

    /// One image's detections from its row of the head's output
    /// (`[4 + nc (+ extra), anchors]`) and, for a segmenter, its
    /// prototypes (`[nm, h, w]`).
    fn postprocess(
        &self,
        predictions: &Tensor,
        protos: Option<&Tensor>,
        width: u32,
        height: u32,
        confidence: f64,
    ) -> Result<Vec<PixelDetection>, YoloError> {
        let classes = self.names.len() as i64;
        let rotated = self.network.detect().is_some_and(graph::Detect::rotates);
        let kept = tch::no_grad(|| {
            non_max_suppression(predictions, confidence, IOU_THRESHOLD, classes, rotated)
        })?;
        let boxes = if rotated {
            scale_rotated(
                &kept.f_narrow(1, 0, 4)?,
                self.size,
                width as usize,
                height as usize,
            )?
        } else {
            scale_boxes(
                &kept.f_narrow(1, 0, 4)?,
                self.size,
                width as usize,
                height as usize,
            )?
        };
        let angles = if rotated {
            let last = kept.size()[1] - 1;
            Some(Vec::<f32>::try_from(
                kept.f_select(1, last)?.f_contiguous()?,
            )?)
        } else {
            None
        };
        let mut masks = match protos {
            Some(protos) => {
                let extra = kept.size()[1] - 6;
                let coefficients = kept.f_narrow(1, 6, extra)?;
                let masks = tch::no_grad(|| {
                    masks::process_mask_native(
                        protos,
                        &coefficients,
                        &boxes,
                        width as usize,
                        height as usize,
                    )
                })?;
                masks.into_iter().map(Some).collect()
            }
            None => vec![None; kept.size()[0] as usize],
        };
        let mut keypoints = match self
            .network
            .detect()
            .and_then(graph::Detect::keypoint_shape)
        {
            Some([points, values]) => {
                let count = kept.size()[0];
                let raw = kept
                    .f_narrow(1, 6, points * values)?
                    .f_view([count, points, values])?;
                let xy = scale_points(
                    &raw.f_narrow(2, 0, 2)?,
                    self.size,
                    width as usize,
                    height as usize,
                )?;
                let xy = Vec::<f32>::try_from(xy.f_contiguous()?.f_flatten(0, -1)?)?;
                let confidence = if values == 3 {
                    Some(Vec::<f32>::try_from(
                        raw.f_select(2, 2)?.f_contiguous()?.f_flatten(0, -1)?,
                    )?)
                } else {
                    None
                };
                let points = points as usize;
                (0..count as usize)
                    .map(|index| {
                        Some(PixelKeypoints {
                            points: (0..points)
                                .map(|point| {
                                    let at = (index * points + point) * 2;
                                    [xy[at], xy[at + 1]]
                                })
                                .collect(),
                            confidence: confidence.as_ref().map(|confidence| {
                                confidence[index * points..(index + 1) * points].to_vec()
                            }),
                        })
                    })
                    .collect()
            }
            None => vec![None; kept.size()[0] as usize],
        };
        let boxes = Vec::<f32>::try_from(boxes.f_contiguous()?.f_flatten(0, -1)?)?;
        let scores = Vec::<f32>::try_from(kept.f_select(1, 4)?.f_contiguous()?)?;
        let classes = Vec::<f32>::try_from(kept.f_select(1, 5)?.f_contiguous()?)?;
        Ok(scores
            .iter()
            .zip(&classes)
            .enumerate()
            .map(|(index, (score, class))| {
                let four = [
                    boxes[index * 4],
                    boxes[index * 4 + 1],
                    boxes[index * 4 + 2],
                    boxes[index * 4 + 3],
                ];
                let xywhr = angles
                    .as_ref()
                    .map(|angles| [four[0], four[1], four[2], four[3], angles[index]]);
                let xyxy = match xywhr {
                    Some([x, y, w, h, angle]) => {
                        let corners = obb::corners(x, y, w, h, angle);
                        let xs = corners.map(|corner| corner[0]);
                        let ys = corners.map(|corner| corner[1]);
                        [
                            xs.into_iter().fold(f32::INFINITY, f32::min),
                            ys.into_iter().fold(f32::INFINITY, f32::min),
                            xs.into_iter().fold(f32::NEG_INFINITY, f32::max),
                            ys.into_iter().fold(f32::NEG_INFINITY, f32::max),
                        ]
                    }
                    None => four,
                };
                PixelDetection {
                    xyxy,
                    xywhr,
                    confidence: *score,
                    class: class.round() as i64,
                    mask: masks[index].take(),
                    keypoints: keypoints[index].take(),
                }
            })
            // The predictor keeps only the boxes whose mask has a pixel.
            .filter(|detection| detection.mask.as_ref().is_none_or(PixelMask::any))
            .collect())
    }

    /// The detections of `image` in its pixels, at Ultralytics' default
    /// confidence threshold.
    pub fn detect_pixels(&self, image: &Image) -> Result<Vec<PixelDetection>, YoloError> {
        let pixels = self.letterboxed(image)?;
        self.detect_letterboxed(&pixels, image.width, image.height, CONFIDENCE_THRESHOLD)
    }

    /// The detections of `image` as FiftyOne's `to_detections` makes them,
    /// at Ultralytics' default confidence threshold.
    pub fn detect(&self, image: &Image) -> Result<Vec<Detection>, YoloError> {
        let pixels = self.detect_pixels(image)?;
        self.to_fiftyone(pixels, image.width, image.height)
    }

    /// FiftyOne's `to_detections` (or `to_instances`) of Ultralytics'
    /// results for an image of `width` x `height` (`boxes.xywhn`, in `f32`,
    /// then `[xc - w / 2, yc - h / 2, w, h]` in `f64`; each mask cropped to
    /// that box in the image's pixels).
    pub fn to_fiftyone(
        &self,
        pixels: Vec<PixelDetection>,
        width: u32,
        height: u32,
    ) -> Result<Vec<Detection>, YoloError> {
        let (width, height) = (width as f32, height as f32);
        pixels
            .into_iter()
            .map(|detection| {
                let [x1, y1, x2, y2] = detection.xyxy;
                // xyxy2xywh, then / orig_shape, in f32.
                let xc = f64::from(((x1 + x2) / 2.0) / width);
                let yc = f64::from(((y1 + y2) / 2.0) / height);
                let w = f64::from((x2 - x1) / width);
                let h = f64::from((y2 - y1) / height);
                let label = usize::try_from(detection.class)
                    .ok()
                    .and_then(|class| self.names.get(class))
                    .cloned()
                    .ok_or_else(|| {
                        YoloError::Image(format!("class {} has no name", detection.class))
                    })?;
                let bounding_box = [xc - 0.5 * w, yc - 0.5 * h, w, h];
                let mask = detection
                    .mask
                    .map(|mask| mask.fiftyone_crop(bounding_box, width as usize, height as usize));
                Ok(Detection {
                    label,
                    bounding_box,
                    confidence: f64::from(detection.confidence),
                    mask,
                })
            })
            .collect()
    }
}

/// The pixels of `image` letterboxed into a `size` square (`size * size *
/// 3` RGB bytes).
pub(crate) fn letterboxed(image: &Image, size: usize) -> Result<Vec<u8>, YoloError> {
    if image.width == 0 || image.height == 0 {
        return Err(YoloError::Image("the image is empty".to_owned()));
    }
    if image.pixels.len() != image.width as usize * image.height as usize * 3 {
        return Err(YoloError::Image(
            "the pixels do not fill the image".to_owned(),
        ));
    }
    Ok(letterbox::letterbox(image, size).pixels)
}

/// The square side FiftyOne letterboxes to: the predictor's `imgsz`,
/// which Ultralytics takes from the checkpoint's `train_args` (640 when
/// absent); a whole number, or two equal ones.
fn image_size(imgsz: Option<&Json>) -> Result<usize, ArchitectureError> {
    let Some(imgsz) = imgsz else {
        return Ok(IMAGE_SIZE);
    };
    let side = match imgsz {
        Json::Number(side) => side.as_i64(),
        Json::Array(sides) => match sides.as_slice() {
            [height, width] if height == width => height.as_i64(),
            _ => None,
        },
        _ => None,
    };
    side.filter(|side| (1..=MAX_IMAGE_SIZE).contains(side))
        .map(|side| side as usize)
        .ok_or_else(|| {
            ArchitectureError::Unsupported(format!(
                "the checkpoint's `train_args.imgsz` is {imgsz}, not one side from 1 to {MAX_IMAGE_SIZE}"
            ))
        })
}

/// The model's `names` (`{index: name}`, indices `0..n`) as a list.
fn class_names(names: Option<&Json>) -> Result<Vec<String>, ArchitectureError> {
    let bad = || ArchitectureError::Unsupported("the model's `names` is not {index: name}".into());
    let names = names.and_then(Json::as_object).ok_or_else(bad)?;
    let mut list = vec![None; names.len()];
    for (key, value) in names {
        let index: usize = key.parse().map_err(|_| bad())?;
        let slot = list.get_mut(index).ok_or_else(bad)?;
        *slot = Some(value.as_str().ok_or_else(bad)?.to_owned());
    }
    list.into_iter().map(|name| name.ok_or_else(bad)).collect()
}

/// Ultralytics' `non_max_suppression` for one image's `[4 + nc + extra,
/// anchors]` output (not multi-label, class-aware): `[K, 6 + extra]` rows
/// `x1, y1, x2, y2, score, class, extra...` (a segmenter's mask
/// coefficients).
fn non_max_suppression(
    prediction: &Tensor,
    confidence: f64,
    iou: f64,
    classes: i64,
    rotated: bool,
) -> Result<Tensor, TchError> {
    let channels = prediction.size()[0];
    let extra = channels - 4 - classes;
    if extra < 0 {
        return Err(TchError::Kind(format!(
            "the head gives {channels} channels, fewer than 4 + {classes} classes"
        )));
    }
    let candidates = prediction
        .f_narrow(0, 4, classes)?
        .f_amax([0].as_slice(), false)?
        .f_gt(confidence)?;
    let x = prediction.f_transpose(0, 1)?.f_index(&[Some(candidates)])?;
    if x.size()[0] == 0 {
        return Tensor::f_zeros([0, 6 + extra], (Kind::Float, Device::Cpu));
    }
    // xywh2xyxy (rotated boxes stay `xywh`).
    let corners = if rotated {
        x.f_narrow(1, 0, 4)?
    } else {
        let xy = x.f_narrow(1, 0, 2)?;
        let half = x.f_narrow(1, 2, 2)?.f_div_scalar(2)?;
        Tensor::f_cat(&[xy.f_sub(&half)?, xy.f_add(&half)?], 1)?
    };
    let (best, class) = x.f_narrow(1, 4, classes)?.f_max_dim(1, true)?;
    let keep = best.f_view([-1])?.f_gt(confidence)?;
    let mut x = Tensor::f_cat(
        &[
            corners,
            best,
            class.f_to_kind(Kind::Float)?,
            x.f_narrow(1, 4 + classes, extra)?,
        ],
        1,
    )?
    .f_index(&[Some(keep)])?;
    if x.size()[0] == 0 {
        return Tensor::f_zeros([0, 6 + extra], (Kind::Float, Device::Cpu));
    }
    if x.size()[0] > MAX_NMS {
        let order = x
            .f_select(1, 4)?
            .f_argsort(0, true)?
            .f_narrow(0, 0, MAX_NMS)?;
        x = x.f_index_select(0, &order)?;
    }
    let offsets = x.f_narrow(1, 5, 1)?.f_mul_scalar(MAX_WH)?;
    let scores = x.f_select(1, 4)?;
    let kept = if rotated {
        // `xywhr` with the class offset on the centre, the angle last.
        let boxes = Tensor::f_cat(
            &[
                x.f_narrow(1, 0, 2)?.f_add(&offsets)?,
                x.f_narrow(1, 2, 2)?,
                x.f_narrow(1, x.size()[1] - 1, 1)?,
            ],
            1,
        )?;
        obb::fast_nms(&boxes, &scores, iou)?
    } else {
        let boxes = x.f_narrow(1, 0, 4)?.f_add(&offsets)?;
        nms(&boxes, &scores, iou)?
    };
    let kept = kept.f_narrow(0, 0, kept.size()[0].min(MAX_DETECTIONS))?;
    x.f_index_select(0, &kept)
}

/// Python's `round` (ties to even) of a float.
fn round(value: f64) -> f64 {
    value.round_ties_even()
}

/// Ultralytics' `scale_coords(img1_shape, points, img0_shape)` of `[..., 2]`
/// points: from the `size` square back to the image, clipped.
fn scale_points(
    points: &Tensor,
    size: usize,
    width: usize,
    height: usize,
) -> Result<Tensor, TchError> {
    let gain = (size as f64 / height as f64).min(size as f64 / width as f64);
    let new_height = round(height as f64 * gain).max(1.0);
    let new_width = round(width as f64 * gain).max(1.0);
    let (gain_y, gain_x) = (new_height / height as f64, new_width / width as f64);
    let pad_x = round((size as f64 - new_width) / 2.0 - 0.1);
    let pad_y = round((size as f64 - new_height) / 2.0 - 0.1);
    let last = points.dim() as i64 - 1;
    let x = points
        .f_select(last, 0)?
        .f_sub_scalar(pad_x)?
        .f_div_scalar(gain_x)?
        .f_clamp(0.0, width as f64)?;
    let y = points
        .f_select(last, 1)?
        .f_sub_scalar(pad_y)?
        .f_div_scalar(gain_y)?
        .f_clamp(0.0, height as f64)?;
    Tensor::f_stack(&[x, y], last)
}

/// Ultralytics' `scale_boxes(img1_shape, boxes, img0_shape, xywh=True)` of
/// rotated boxes' `x, y, w, h`: the centres less the padding, everything
/// over the gains, not clipped.
fn scale_rotated(
    boxes: &Tensor,
    size: usize,
    width: usize,
    height: usize,
) -> Result<Tensor, TchError> {
    let gain = (size as f64 / height as f64).min(size as f64 / width as f64);
    let new_height = round(height as f64 * gain).max(1.0);
    let new_width = round(width as f64 * gain).max(1.0);
    let (gain_y, gain_x) = (new_height / height as f64, new_width / width as f64);
    let pad_x = round((size as f64 - new_width) / 2.0 - 0.1);
    let pad_y = round((size as f64 - new_height) / 2.0 - 0.1);
    let columns = [
        boxes
            .f_select(1, 0)?
            .f_sub_scalar(pad_x)?
            .f_div_scalar(gain_x)?,
        boxes
            .f_select(1, 1)?
            .f_sub_scalar(pad_y)?
            .f_div_scalar(gain_y)?,
        boxes.f_select(1, 2)?.f_div_scalar(gain_x)?,
        boxes.f_select(1, 3)?.f_div_scalar(gain_y)?,
    ];
    Tensor::f_stack(&columns, 1)
}

/// Ultralytics' `scale_boxes(img1_shape, boxes, img0_shape)`: from the
/// `size` square back to the image, clipped.
fn scale_boxes(
    boxes: &Tensor,
    size: usize,
    width: usize,
    height: usize,
) -> Result<Tensor, TchError> {
    let gain = (size as f64 / height as f64).min(size as f64 / width as f64);
    let new_height = round(height as f64 * gain).max(1.0);
    let new_width = round(width as f64 * gain).max(1.0);
    let (gain_y, gain_x) = (new_height / height as f64, new_width / width as f64);
    let pad_x = round((size as f64 - new_width) / 2.0 - 0.1);
    let pad_y = round((size as f64 - new_height) / 2.0 - 0.1);
    let column = |index: i64, pad: f64, gain: f64, limit: f64| -> Result<Tensor, TchError> {
        boxes
            .f_select(1, index)?
            .f_sub_scalar(pad)?
            .f_div_scalar(gain)?
            .f_clamp(0.0, limit)
    };
    let columns = [
        column(0, pad_x, gain_x, width as f64)?,
        column(1, pad_y, gain_y, height as f64)?,
        column(2, pad_x, gain_x, width as f64)?,
        column(3, pad_y, gain_y, height as f64)?,
    ];
    Tensor::f_stack(&columns, 1)
}
