//! The heads: `Detect` (YOLOv5u, YOLOv8, YOLO11; YOLO26's and YOLOv10's
//! `v10Detect`'s one-to-many branches, YOLO26's without DFL as its
//! `reg_max` is 1), `Pose` and `Pose26` (keypoints), `OBB` (an angle per
//! box, `dist2rbox`), `Classify`, and
//! `Segment` and `Segment26` (`Proto26` fusing every level first) (its
//! mask coefficients and `Proto` prototypes), each level's branches read
//! from the module tree and decoded as Ultralytics' heads decode them in
//! inference.

use serde_json::Value as Json;
use tch::{Kind, TchError, Tensor};

use super::{ArchitectureError, Builder, Conv, Layer, unsupported};
use crate::net::fold::channels_last;

/// The `Detect` head: per level, a box branch (`cv2`: Conv, Conv, Conv2d
/// to `4 * reg_max`) and a class branch (`cv3`: Conv, Conv, Conv2d to `nc`
/// in Ultralytics' `legacy` head of YOLOv5u and YOLOv8; YOLO11's is two
/// depthwise + pointwise pairs, then the Conv2d), decoded through DFL. Each
/// branch is its convolutions in order. `Segment` adds a mask
/// coefficient branch per level and the prototypes ([`Masks`]).
#[derive(Debug)]
pub(crate) struct Detect {
    boxes: Vec<Vec<Conv>>,
    classes: Vec<Vec<Conv>>,
    /// The DFL's fixed `1 x reg_max` convolution weight (none when
    /// `reg_max` is 1).
    dfl: Option<Tensor>,
    reg_max: i64,
    /// The number of classes.
    pub(crate) nc: i64,
    /// The levels' strides.
    pub(super) strides: Vec<f64>,
    /// `Segment`'s mask branches, when the head is one.
    masks: Option<Masks>,
    /// `Pose`'s (or `Pose26`'s) keypoint branches, when the head is one.
    keypoints: Option<Keypoints>,
    /// `OBB`'s angle branches (`cv4`: Conv, Conv, Conv2d to 1), when the
    /// head is one.
    angles: Option<Vec<Vec<Conv>>>,
}

/// `Pose`'s and `Pose26`'s additions: per level a branch giving each
/// anchor's `kpt_shape[0] x kpt_shape[1]` keypoint values (`cv4`; for
/// `Pose26`, `cv4` then `cv4_kpts`), decoded around the anchors.
#[derive(Debug)]
struct Keypoints {
    branches: Vec<Vec<Conv>>,
    /// `kpt_shape`: keypoints, and values per keypoint (2 or 3).
    shape: [i64; 2],
    /// `Pose26`'s decoding (`(y + anchor) * stride`) rather than
    /// `Pose`'s (`(2y + anchor - 0.5) * stride`).
    pose26: bool,
}

/// `Segment`'s additions: per level a branch (`cv4`: Conv, Conv, Conv2d to
/// `nm`) giving each anchor's mask coefficients, and `Proto` on the first
/// level giving the `nm` prototypes.
#[derive(Debug)]
struct Masks {
    coefficients: Vec<Vec<Conv>>,
    nm: i64,
    proto: Proto,
}

/// `Proto`: Conv 3x3, `ConvTranspose2d(2, 2)`, Conv 3x3, Conv 1x1.
#[derive(Debug)]
struct Proto {
    /// `Proto26`'s fusion of the levels before the `Proto` layers.
    levels: Option<FuseLevels>,
    cv1: Conv,
    upsample: Transposed,
    cv2: Conv,
    cv3: Conv,
}

/// `Proto26`'s start: each deeper level through its `feat_refine` conv,
/// upsampled (nearest) by `2^(i+1)` and added to the first, then
/// `feat_fuse`.
#[derive(Debug)]
struct FuseLevels {
    refine: Vec<Conv>,
    fuse: Conv,
}

/// A `ConvTranspose2d` with its kernel as stride, no padding, one group.
#[derive(Debug)]
struct Transposed {
    weight: Tensor,
    bias: Tensor,
    stride: [i64; 2],
}

/// The `Classify` head: `Conv`, global average pooling, `Linear`, softmax.
#[derive(Debug)]
pub(crate) struct Classify {
    conv: Conv,
    weight: Tensor,
    bias: Tensor,
    /// The number of classes.
    pub(crate) nc: i64,
}

impl Classify {
    pub(super) fn make_channels_last(&mut self) {
        self.conv.make_channels_last();
    }

    /// `Classify.forward` in inference: the class probabilities.
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor, TchError> {
        self.conv
            .forward(x)?
            .f_adaptive_avg_pool2d([1, 1])?
            .f_flatten(1, -1)?
            .f_linear(&self.weight, Some(&self.bias))?
            .f_softmax(1, Kind::Float)
    }
}

/// What the head gives in inference.
#[derive(Debug)]
pub(crate) struct HeadOutput {
    /// `[N, 4 + nc (+ nm), anchors]`: boxes (`xywh`, input pixels), class
    /// scores after the sigmoid, and (`Segment`) mask coefficients.
    pub(crate) predictions: Tensor,
    /// `Segment`'s prototypes, `[N, nm, h, w]`.
    pub(crate) protos: Option<Tensor>,
}

impl Detect {
    /// Every convolution weight with channels-last strides, as
    /// Ultralytics' `AutoBackend` sets them on x86 CPUs.
    pub(super) fn make_channels_last(&mut self) {
        let mut convs: Vec<&mut Conv> = self
            .boxes
            .iter_mut()
            .chain(self.classes.iter_mut())
            .flatten()
            .collect();
        if let Some(keypoints) = &mut self.keypoints {
            convs.extend(keypoints.branches.iter_mut().flatten());
        }
        if let Some(angles) = &mut self.angles {
            convs.extend(angles.iter_mut().flatten());
        }
        if let Some(masks) = &mut self.masks {
            convs.extend(masks.coefficients.iter_mut().flatten());
            let proto = &mut masks.proto;
            if let Some(levels) = &mut proto.levels {
                convs.extend(levels.refine.iter_mut());
                convs.push(&mut levels.fuse);
            }
            convs.extend([&mut proto.cv1, &mut proto.cv2, &mut proto.cv3]);
            proto.upsample.weight = channels_last(&proto.upsample.weight);
        }
        for conv in convs {
            conv.make_channels_last();
        }
        self.dfl = self.dfl.as_ref().map(channels_last);
    }

    /// The number of mask coefficients per box (`nm`), for a `Segment`
    /// head.
    pub(crate) fn mask_count(&self) -> Option<i64> {
        self.masks.as_ref().map(|masks| masks.nm)
    }

    /// Whether the head gives rotated boxes (`OBB`).
    pub(crate) fn rotates(&self) -> bool {
        self.angles.is_some()
    }

    /// `kpt_shape` (keypoints, values per keypoint), for a `Pose` head.
    pub(crate) fn keypoint_shape(&self) -> Option<[i64; 2]> {
        self.keypoints.as_ref().map(|keypoints| keypoints.shape)
    }
}

impl Builder<'_> {
    /// A head branch at `path`: `Sequential(Conv, Conv, Conv2d)`, or (the
    /// class branch of YOLO11's head) `Sequential(Sequential(DWConv,
    /// Conv), Sequential(DWConv, Conv), Conv2d)`; its convolutions in order.
    fn branch(&mut self, path: &str) -> Result<Vec<Conv>, ArchitectureError> {
        let sequence = self.expect(path, "Sequential")?;
        let kinds: Vec<&str> = sequence
            .children
            .iter()
            .map(|(_, child)| child.kind())
            .collect();
        let mut convs = Vec::new();
        match kinds.as_slice() {
            ["Conv", "Conv", "Conv2d"] => {
                convs.push(self.conv(&format!("{path}.0"))?);
                convs.push(self.conv(&format!("{path}.1"))?);
            }
            ["Sequential", "Sequential", "Conv2d"] => {
                for index in 0..2 {
                    let pair = format!("{path}.{index}");
                    let kinds: Vec<&str> = self
                        .module(&pair)?
                        .children
                        .iter()
                        .map(|(_, child)| child.kind())
                        .collect();
                    if !matches!(kinds.as_slice(), ["DWConv" | "Conv", "Conv"]) {
                        return Err(unsupported(format!(
                            "`{pair}` holds {kinds:?}, not a (depthwise) Conv and a Conv"
                        )));
                    }
                    convs.push(self.conv(&format!("{pair}.0"))?);
                    convs.push(self.conv(&format!("{pair}.1"))?);
                }
            }
            other => {
                return Err(unsupported(format!(
                    "`{path}` holds {other:?}, not a head branch zoo builds (Conv, Conv, Conv2d; or DWConv and Conv pairs, Conv2d)"
                )));
            }
        }
        convs.push(self.conv2d(&format!("{path}.2"))?);
        Ok(convs)
    }

    /// A `ConvTranspose2d` at `path` whose stride is its kernel, with no
    /// padding, dilation nor groups (`Proto`'s upsampling).
    fn transposed(&mut self, path: &str) -> Result<Transposed, ArchitectureError> {
        let module = self.expect(path, "ConvTranspose2d")?;
        let pair = |name: &str| -> Option<[i64; 2]> {
            match module.attributes.get(name)? {
                Json::Array(items) if items.len() == 2 => {
                    Some([items[0].as_i64()?, items[1].as_i64()?])
                }
                _ => None,
            }
        };
        let stride = pair("stride").filter(|s| s.iter().all(|s| (1..=64).contains(s)));
        let plain = pair("padding") == Some([0, 0])
            && pair("output_padding") == Some([0, 0])
            && pair("dilation") == Some([1, 1])
            && module.attributes.get("groups").and_then(Json::as_i64) == Some(1)
            && pair("kernel_size") == stride;
        let Some(stride) = stride.filter(|_| plain) else {
            return Err(unsupported(format!(
                "`{path}` is not a transposed convolution with its kernel as stride and no padding"
            )));
        };
        let weight = self.tensor(&format!("{path}.weight"))?;
        let size = weight.size();
        if size.len() != 4 || size[2..] != stride {
            return Err(unsupported(format!("`{path}.weight` has shape {size:?}")));
        }
        let bias = match self.optional_tensor(&format!("{path}.bias")) {
            Some(bias) if bias.size() == [size[1]] => bias,
            Some(_) => return Err(unsupported(format!("`{path}.bias` has the wrong shape"))),
            None => Tensor::f_zeros([size[1]], (Kind::Float, weight.device()))?,
        };
        Ok(Transposed {
            weight,
            bias,
            stride,
        })
    }

    /// The `Classify` head at `path` (`conv`, `pool`, `drop`, `linear`).
    pub(super) fn classify(&mut self, path: &str) -> Result<Classify, ArchitectureError> {
        self.expect(path, "Classify")?;
        let pool = self.expect(&format!("{path}.pool"), "AdaptiveAvgPool2d")?;
        let size = pool.attributes.get("output_size");
        let global = match size {
            Some(Json::Number(n)) => n.as_i64() == Some(1),
            Some(Json::Array(items)) => items.iter().all(|item| item.as_i64() == Some(1)),
            _ => false,
        };
        if !global {
            return Err(unsupported(format!("`{path}.pool` does not pool to 1 x 1")));
        }
        self.expect(&format!("{path}.linear"), "Linear")?;
        let conv = self.conv(&format!("{path}.conv"))?;
        let weight = self.tensor(&format!("{path}.linear.weight"))?;
        let bias = self.tensor(&format!("{path}.linear.bias"))?;
        let size = weight.size();
        if size.len() != 2 || size[1] != conv.out_channels() || bias.size() != [size[0]] {
            return Err(unsupported(format!(
                "`{path}.linear` does not fit `{path}.conv`'s {} channels",
                conv.out_channels()
            )));
        }
        Ok(Classify {
            conv,
            weight,
            bias,
            nc: size[0],
        })
    }

    /// `Pose`'s (`cv4`: Conv, Conv, Conv2d) or `Pose26`'s (`cv4`: Conv,
    /// Conv; `cv4_kpts`: Conv2d) keypoint branches at `path`. `Pose26`'s
    /// `cv4_sigma` and `flow_model` serve training only, and an end-to-end
    /// head's one-to-one branches go unused (see [`Builder::detect`]):
    /// their tensors are dropped.
    fn keypoints(
        &mut self,
        path: &str,
        kind: &str,
        levels: usize,
        one_to_one: bool,
    ) -> Result<Keypoints, ArchitectureError> {
        let shape = match self.module(path)?.attributes.get("kpt_shape") {
            Some(Json::Array(items)) => match items.as_slice() {
                [count, values] => count.as_i64().zip(values.as_i64()),
                _ => None,
            },
            _ => None,
        };
        let shape = shape
            .filter(|(count, values)| (1..=1024).contains(count) && matches!(values, 2 | 3))
            .map(|(count, values)| [count, values])
            .ok_or_else(|| unsupported(format!("`{path}.kpt_shape` is not [keypoints, 2 or 3]")))?;
        let pose26 = kind == "Pose26";
        let mut branches = Vec::with_capacity(levels);
        for level in 0..levels {
            let branch = if pose26 {
                let sequence = format!("{path}.cv4.{level}");
                if self.count(&sequence, Some(2)).is_err() {
                    return Err(unsupported(format!("`{sequence}` is not two convolutions")));
                }
                vec![
                    self.conv(&format!("{sequence}.0"))?,
                    self.conv(&format!("{sequence}.1"))?,
                    self.conv2d(&format!("{path}.cv4_kpts.{level}"))?,
                ]
            } else {
                self.branch(&format!("{path}.cv4.{level}"))?
            };
            let out = branch.last().map_or(0, Conv::out_channels);
            if out != shape[0] * shape[1] {
                return Err(unsupported(format!(
                    "`{path}`'s keypoint branch {level} gives {out} values, not {} x {}",
                    shape[0], shape[1]
                )));
            }
            branches.push(branch);
        }
        let mut unused = vec![format!("{path}.cv4_sigma."), format!("{path}.flow_model.")];
        if one_to_one {
            unused.push(format!("{path}.one2one_cv4"));
        }
        self.tensors.retain(|name, _| {
            !unused
                .iter()
                .any(|prefix| name.starts_with(prefix.as_str()))
        });
        Ok(Keypoints {
            branches,
            shape,
            pose26,
        })
    }

    /// `Segment`'s `cv4` branches and `proto` at `path`.
    fn masks(&mut self, path: &str, kind: &str, levels: usize) -> Result<Masks, ArchitectureError> {
        let nm = self
            .module(path)?
            .attributes
            .get("nm")
            .and_then(Json::as_i64)
            .filter(|nm| (1..=4096).contains(nm))
            .ok_or_else(|| unsupported(format!("`{path}.nm` is not a whole number")))?;
        let mut coefficients = Vec::with_capacity(levels);
        for level in 0..levels {
            let branch = self.branch(&format!("{path}.cv4.{level}"))?;
            let out = branch.last().map_or(0, Conv::out_channels);
            if out != nm {
                return Err(unsupported(format!(
                    "`{path}.cv4.{level}` gives {out} channels, not nm = {nm}"
                )));
            }
            coefficients.push(branch);
        }
        let proto = format!("{path}.proto");
        let levels = if kind == "Segment26" {
            self.expect(&proto, "Proto26")?;
            let mut refine = Vec::with_capacity(levels.saturating_sub(1));
            for level in 1..levels {
                refine.push(self.conv(&format!("{proto}.feat_refine.{}", level - 1))?);
            }
            let fuse = self.conv(&format!("{proto}.feat_fuse"))?;
            // `semseg` serves training only; `fuse()` drops it, and the
            // one-to-one mask branches go unused (see `detect`).
            let unused = [format!("{proto}.semseg."), format!("{path}.one2one_cv4.")];
            self.tensors.retain(|name, _| {
                !unused
                    .iter()
                    .any(|prefix| name.starts_with(prefix.as_str()))
            });
            Some(FuseLevels { refine, fuse })
        } else {
            self.expect(&proto, "Proto")?;
            None
        };
        let proto = Proto {
            levels,
            cv1: self.conv(&format!("{proto}.cv1"))?,
            upsample: self.transposed(&format!("{proto}.upsample"))?,
            cv2: self.conv(&format!("{proto}.cv2"))?,
            cv3: self.conv(&format!("{proto}.cv3"))?,
        };
        if proto.cv3.out_channels() != nm {
            return Err(unsupported(format!(
                "`{path}.proto` gives {} prototypes, not nm = {nm}",
                proto.cv3.out_channels()
            )));
        }
        Ok(Masks {
            coefficients,
            nm,
            proto,
        })
    }

    /// A `Detect` or `Segment` (`kind`) head at `path` on `levels` levels.
    pub(super) fn detect(
        &mut self,
        path: &str,
        kind: &str,
        levels: usize,
    ) -> Result<Layer, ArchitectureError> {
        let module = self.expect(path, kind)?;
        let one_to_one = module.get("one2one_cv2").is_some();
        if module.get("cv2").is_none() {
            return Err(unsupported(format!(
                "`{path}` has no one-to-many branches (`cv2`): a fused end-to-end head"
            )));
        }
        let integer = |name: &str, most: i64| -> Result<i64, ArchitectureError> {
            module
                .attributes
                .get(name)
                .and_then(Json::as_i64)
                .filter(|n| (1..=most).contains(n))
                .ok_or_else(|| unsupported(format!("`{path}.{name}` is not a whole number")))
        };
        let nc = integer("nc", 100_000)?;
        let reg_max = integer("reg_max", 1024)?;
        let nl = integer("nl", 16)?;
        if nl as usize != levels {
            return Err(unsupported(format!(
                "`{path}.nl` is {nl}, but the yaml feeds it {levels} levels"
            )));
        }
        let mut boxes = Vec::new();
        let mut classes = Vec::new();
        for level in 0..levels {
            let branch = self.branch(&format!("{path}.cv2.{level}"))?;
            let out = branch.last().map_or(0, Conv::out_channels);
            if out != 4 * reg_max {
                return Err(unsupported(format!(
                    "`{path}.cv2.{level}` gives {out} channels, not 4 x reg_max"
                )));
            }
            boxes.push(branch);
            let branch = self.branch(&format!("{path}.cv3.{level}"))?;
            let out = branch.last().map_or(0, Conv::out_channels);
            if out != nc {
                return Err(unsupported(format!(
                    "`{path}.cv3.{level}` gives {out} channels, not nc = {nc}"
                )));
            }
            classes.push(branch);
        }
        // An end-to-end head's one-to-one branches (YOLO26's, YOLOv10's):
        // Ultralytics 8.4's predictor runs them only with `nms=False`
        // (`AutoBackend(end2end=args.nms is False)`, which FiftyOne never
        // sets), and its `fuse()` drops them; checked and dropped here.
        if one_to_one {
            for level in 0..levels {
                self.branch(&format!("{path}.one2one_cv2.{level}"))?;
                self.branch(&format!("{path}.one2one_cv3.{level}"))?;
            }
        }
        let dfl = if reg_max == 1 {
            // `reg_max` 1 (YOLO26): the distances as they come.
            self.expect(&format!("{path}.dfl"), "Identity")?;
            None
        } else {
            self.expect(&format!("{path}.dfl"), "DFL")?;
            let dfl = self.tensor(&format!("{path}.dfl.conv.weight"))?;
            if dfl.size() != [1, reg_max, 1, 1] {
                return Err(unsupported(format!(
                    "`{path}.dfl.conv.weight` has shape {:?}",
                    dfl.size()
                )));
            }
            Some(dfl)
        };
        let masks = if matches!(kind, "Segment" | "Segment26") {
            Some(self.masks(path, kind, levels)?)
        } else {
            None
        };
        let keypoints = if matches!(kind, "Pose" | "Pose26") {
            Some(self.keypoints(path, kind, levels, one_to_one)?)
        } else {
            None
        };
        let angles = if kind == "OBB" {
            let mut angles = Vec::with_capacity(levels);
            for level in 0..levels {
                let branch = self.branch(&format!("{path}.cv4.{level}"))?;
                if branch.last().map_or(0, Conv::out_channels) != 1 {
                    return Err(unsupported(format!(
                        "`{path}.cv4.{level}` gives more than one angle"
                    )));
                }
                angles.push(branch);
            }
            Some(angles)
        } else {
            None
        };
        Ok(Layer::Detect(Box::new(Detect {
            boxes,
            classes,
            dfl,
            reg_max,
            nc,
            strides: Vec::new(),
            masks,
            keypoints,
            angles,
        })))
    }
}

impl Detect {
    /// `Detect.forward` in inference: the branches, DFL, `dist2bbox`
    /// (`xywh`) times the strides, and the sigmoid of the class scores;
    /// `Segment`'s mask coefficients after them, and its prototypes.
    pub(super) fn forward(&self, features: &[&Tensor]) -> Result<HeadOutput, TchError> {
        let batch = features[0].size()[0];
        let mut boxes = Vec::new();
        let mut scores = Vec::new();
        let mut anchors = Vec::new();
        let mut strides = Vec::new();
        let mut coefficients = Vec::new();
        let mut keypoints = Vec::new();
        let mut angles = Vec::new();
        for (level, feature) in features.iter().enumerate() {
            let run = |branch: &[Conv]| -> Result<Tensor, TchError> {
                let mut y = feature.shallow_clone();
                for conv in branch {
                    y = conv.forward(&y)?;
                }
                Ok(y)
            };
            boxes.push(run(&self.boxes[level])?.f_view([batch, 4 * self.reg_max, -1])?);
            scores.push(run(&self.classes[level])?.f_view([batch, self.nc, -1])?);
            if let Some(masks) = &self.masks {
                coefficients.push(run(&masks.coefficients[level])?.f_view([batch, masks.nm, -1])?);
            }
            if let Some(head) = &self.keypoints {
                let values = head.shape[0] * head.shape[1];
                keypoints.push(run(&head.branches[level])?.f_view([batch, values, -1])?);
            }
            if let Some(branches) = &self.angles {
                angles.push(run(&branches[level])?.f_view([batch, 1, -1])?);
            }
            // make_anchors(feats, strides, 0.5).
            let size = feature.size();
            let (height, width) = (size[2], size[3]);
            let options = (Kind::Float, feature.device());
            let sx = Tensor::f_arange(width, options)?.f_add_scalar(0.5)?;
            let sy = Tensor::f_arange(height, options)?.f_add_scalar(0.5)?;
            let grid = Tensor::f_meshgrid_indexing(&[&sy, &sx], "ij")?;
            anchors.push(Tensor::f_stack(&[&grid[1], &grid[0]], -1)?.f_view([-1, 2])?);
            strides.push(Tensor::f_full(
                [height * width, 1],
                self.strides[level],
                options,
            )?);
        }
        let boxes = Tensor::f_cat(&boxes, -1)?;
        let scores = Tensor::f_cat(&scores, -1)?;
        let anchors = Tensor::f_cat(&anchors, 0)?
            .f_transpose(0, 1)?
            .f_unsqueeze(0)?;
        let strides = Tensor::f_cat(&strides, 0)?.f_transpose(0, 1)?;
        // DFL: softmax over the reg_max bins, then the fixed 1x1 conv.
        let anchors_count = boxes.size()[2];
        let distances = match &self.dfl {
            Some(dfl) => boxes
                .f_view([batch, 4, self.reg_max, anchors_count])?
                .f_transpose(2, 1)?
                .f_softmax(1, Kind::Float)?
                .f_conv2d(dfl, None::<&Tensor>, [1, 1], [0, 0], [1, 1], 1)?
                .f_view([batch, 4, anchors_count])?,
            None => boxes,
        };
        let halves = distances.f_chunk(2, 1)?;
        let (decoded, angle) = if self.angles.is_some() {
            // OBB: the angle `(sigmoid - 0.25) * pi`, and dist2rbox(dim=1).
            let angle = Tensor::f_cat(&angles, 2)?
                .f_sigmoid()?
                .f_sub_scalar(0.25)?
                .f_mul_scalar(std::f64::consts::PI)?;
            let (cos, sin) = (angle.f_cos()?, angle.f_sin()?);
            let half = halves[1].f_sub(&halves[0])?.f_div_scalar(2)?;
            let parts = half.f_split(1, 1)?;
            let (xf, yf) = (&parts[0], &parts[1]);
            let x = xf.f_mul(&cos)?.f_sub(&yf.f_mul(&sin)?)?;
            let y = xf.f_mul(&sin)?.f_add(&yf.f_mul(&cos)?)?;
            let xy = Tensor::f_cat(&[x, y], 1)?.f_add(&anchors)?;
            let size = halves[0].f_add(&halves[1])?;
            (Tensor::f_cat(&[xy, size], 1)?.f_mul(&strides)?, Some(angle))
        } else {
            // dist2bbox(xywh=True, dim=1).
            let top_left = anchors.f_sub(&halves[0])?;
            let bottom_right = anchors.f_add(&halves[1])?;
            let centre = top_left.f_add(&bottom_right)?.f_div_scalar(2)?;
            let size = bottom_right.f_sub(&top_left)?;
            (Tensor::f_cat(&[centre, size], 1)?.f_mul(&strides)?, None)
        };
        let mut predictions = Tensor::f_cat(&[decoded, scores.f_sigmoid()?], 1)?;
        if let Some(angle) = angle {
            predictions = Tensor::f_cat(&[predictions, angle], 1)?;
        }
        if let Some(head) = &self.keypoints {
            let keypoints = Tensor::f_cat(&keypoints, 2)?;
            let decoded = head.decode(&keypoints, &anchors.f_select(0, 0)?, &strides)?;
            predictions = Tensor::f_cat(&[predictions, decoded], 1)?;
        }
        let mut protos = None;
        if let Some(masks) = &self.masks {
            let coefficients = Tensor::f_cat(&coefficients, 2)?;
            predictions = Tensor::f_cat(&[predictions, coefficients], 1)?;
            protos = Some(masks.proto.forward(features)?);
        }
        Ok(HeadOutput {
            predictions,
            protos,
        })
    }
}

impl Keypoints {
    /// `kpts_decode` (not exporting): visibilities through the sigmoid,
    /// coordinates around the anchors (`[2, A]`) times the strides
    /// (`[1, A]`).
    fn decode(&self, raw: &Tensor, anchors: &Tensor, strides: &Tensor) -> Result<Tensor, TchError> {
        let size = raw.size();
        let (batch, count) = (size[0], size[2]);
        let [points, values] = self.shape;
        let raw = raw.f_view([batch, points, values, count])?;
        let coordinate = |axis: i64| -> Result<Tensor, TchError> {
            let y = raw.f_select(2, axis)?;
            let anchor = anchors.f_select(0, axis)?;
            let y = if self.pose26 {
                y.f_add(&anchor)?
            } else {
                y.f_mul_scalar(2.0)?.f_add(&anchor.f_sub_scalar(0.5)?)?
            };
            y.f_mul(strides)
        };
        let mut parts = vec![coordinate(0)?, coordinate(1)?];
        if values == 3 {
            parts.push(raw.f_select(2, 2)?.f_sigmoid()?);
        }
        Tensor::f_stack(&parts, 2)?.f_view([batch, points * values, count])
    }
}

impl Proto {
    /// `Proto.forward` on the first level, or `Proto26.forward` on all.
    fn forward(&self, features: &[&Tensor]) -> Result<Tensor, TchError> {
        let fused;
        let x = match &self.levels {
            None => features[0],
            Some(levels) => {
                let mut feature = features[0].shallow_clone();
                for (index, refine) in levels.refine.iter().enumerate() {
                    let deeper = features.get(index + 1).ok_or_else(|| {
                        TchError::Kind("`Proto26` has more levels than the head".to_owned())
                    })?;
                    let up = refine.forward(deeper)?;
                    let size = up.size();
                    let scale = f64::from(1_u32 << (index + 1));
                    let up = up.f_upsample_nearest2d(
                        [
                            (size[2] as f64 * scale).floor() as i64,
                            (size[3] as f64 * scale).floor() as i64,
                        ],
                        Some(scale),
                        Some(scale),
                    )?;
                    feature = feature.f_add(&up)?;
                }
                fused = levels.fuse.forward(&feature)?;
                &fused
            }
        };
        let y = self.cv1.forward(x)?;
        let upsample = &self.upsample;
        let y = y.f_conv_transpose2d(
            &upsample.weight,
            Some(&upsample.bias),
            upsample.stride,
            [0, 0],
            [0, 0],
            1,
            [1, 1],
        )?;
        self.cv3.forward(&self.cv2.forward(&y)?)
    }
}
