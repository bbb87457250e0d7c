//! RoIAlign, which libtorch lacks, as torchvision's CPU kernel computes it
//! (`csrc/ops/cpu/roi_align_kernel.cpp`), and `MultiScaleRoIAlign`'s level
//! assignment (`ops/poolers.py`).
//!
//! The sample positions and bilinear weights are computed here in `f32`
//! exactly as the kernel computes them; the weighted sums run as tensor
//! operations over all channels in the kernel's order
//! (`acc += w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4` per sample, then
//! `acc / count`), so the results are the kernel's.

use tch::{Kind, TchError, Tensor};

use crate::families::detection::boxes;

/// One sample's four neighbours (flat positions) and bilinear weights.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    positions: [i64; 4],
    weights: [f32; 4],
}

/// The kernel's `pre_calc_for_bilinear_interpolate` for one sample point.
fn sample(y: f32, x: f32, height: i64, width: i64) -> Sample {
    if y < -1.0 || y > height as f32 || x < -1.0 || x > width as f32 {
        return Sample::default();
    }
    let y = y.max(0.0);
    let x = x.max(0.0);
    let (mut y_low, mut x_low) = (y as i64, x as i64);
    let (y_high, y) = if y_low >= height - 1 {
        y_low = height - 1;
        (y_low, y_low as f32)
    } else {
        (y_low + 1, y)
    };
    let (x_high, x) = if x_low >= width - 1 {
        x_low = width - 1;
        (x_low, x_low as f32)
    } else {
        (x_low + 1, x)
    };
    let ly = y - y_low as f32;
    let lx = x - x_low as f32;
    let hy = 1.0 - ly;
    let hx = 1.0 - lx;
    Sample {
        positions: [
            y_low * width + x_low,
            y_low * width + x_high,
            y_high * width + x_low,
            y_high * width + x_high,
        ],
        weights: [hy * hx, hy * lx, ly * hx, ly * lx],
    }
}

/// `torchvision.ops.roi_align(input, rois, output_size, spatial_scale,
/// sampling_ratio, aligned)` for `input` `[N, C, H, W]` and `rois` as
/// `(batch index, [x1, y1, x2, y2])`; gives `[K, C, output, output]`.
/// `sampling_ratio` must be positive (torchvision's detectors use 2).
pub(crate) fn roi_align(
    input: &Tensor,
    rois: &[(i64, [f32; 4])],
    output_size: i64,
    spatial_scale: f32,
    sampling_ratio: i64,
    aligned: bool,
) -> Result<Tensor, TchError> {
    let size = input.size();
    let [batch, channels, height, width] = size[..] else {
        return Err(TchError::Shape(format!(
            "roi_align takes a [N, C, H, W] input, got {size:?}"
        )));
    };
    let (pooled, grid) = (output_size, sampling_ratio.max(1));
    if rois.is_empty() {
        return Tensor::f_zeros(
            [0, channels, pooled, pooled],
            (input.kind(), input.device()),
        );
    }
    if rois.iter().any(|(index, _)| !(0..batch).contains(index)) {
        return Err(TchError::Shape(format!(
            "a roi names an image outside the batch of {batch}"
        )));
    }
    let offset = if aligned { 0.5f32 } else { 0.0 };
    let bins = (pooled * pooled) as usize;
    let per_bin = (grid * grid) as usize;
    // samples[s][k]: sample s of bin k (k over rois, then bins).
    let mut samples = vec![vec![Sample::default(); rois.len() * bins]; per_bin];
    for (roi, (image, corners)) in rois.iter().enumerate() {
        let [x1, y1, x2, y2] = *corners;
        let roi_start_w = x1 * spatial_scale - offset;
        let roi_start_h = y1 * spatial_scale - offset;
        let roi_end_w = x2 * spatial_scale - offset;
        let roi_end_h = y2 * spatial_scale - offset;
        let mut roi_width = roi_end_w - roi_start_w;
        let mut roi_height = roi_end_h - roi_start_h;
        if !aligned {
            roi_width = roi_width.max(1.0);
            roi_height = roi_height.max(1.0);
        }
        let bin_size_h = roi_height / pooled as f32;
        let bin_size_w = roi_width / pooled as f32;
        let base = image * height * width;
        for ph in 0..pooled {
            for pw in 0..pooled {
                let bin = roi * bins + (ph * pooled + pw) as usize;
                for iy in 0..grid {
                    let yy = roi_start_h
                        + ph as f32 * bin_size_h
                        + (iy as f32 + 0.5) * bin_size_h / grid as f32;
                    for ix in 0..grid {
                        let xx = roi_start_w
                            + pw as f32 * bin_size_w
                            + (ix as f32 + 0.5) * bin_size_w / grid as f32;
                        let mut point = sample(yy, xx, height, width);
                        for position in &mut point.positions {
                            *position += base;
                        }
                        samples[(iy * grid + ix) as usize][bin] = point;
                    }
                }
            }
        }
    }
    // [N * H * W, C]: one row of channels per position.
    let rows = input
        .f_permute([0, 2, 3, 1])?
        .f_contiguous()?
        .f_view([batch * height * width, channels])?;
    let rows_out = rois.len() * bins;
    let pooled_rows = if input.device() == tch::Device::Cpu && input.kind() == Kind::Float {
        let values = Vec::<f32>::try_from(rows.f_flatten(0, -1)?)?;
        Tensor::f_from_slice(&pool_rows(&values, channels as usize, &samples, rows_out))?
    } else {
        pool_tensors(&rows, &samples, rows_out)?
    };
    pooled_rows
        .f_view([rois.len() as i64, pooled, pooled, channels])?
        .f_permute([0, 3, 1, 2])?
        .f_contiguous()
}

/// The kernel's sums as tensor operations (any device and kind): per
/// sample and corner, the gathered rows times their weights, added in the
/// kernel's order, then divided by the sample count. `rows` is
/// `[positions, channels]`; gives `[bins, channels]`.
fn pool_tensors(rows: &Tensor, samples: &[Vec<Sample>], bins: usize) -> Result<Tensor, TchError> {
    let (device, kind) = (rows.device(), rows.kind());
    let mut total: Option<Tensor> = None;
    for points in samples {
        let mut term: Option<Tensor> = None;
        for corner in 0..4 {
            let positions: Vec<i64> = points.iter().map(|p| p.positions[corner]).collect();
            let weights: Vec<f32> = points.iter().map(|p| p.weights[corner]).collect();
            let values =
                rows.f_index_select(0, &Tensor::f_from_slice(&positions)?.f_to_device(device)?)?;
            let weights = Tensor::f_from_slice(&weights)?
                .f_to_device(device)?
                .f_to_kind(kind)?
                .f_unsqueeze(1)?;
            let weighted = weights.f_mul(&values)?;
            term = Some(match term {
                None => weighted,
                Some(sum) => sum.f_add(&weighted)?,
            });
        }
        let Some(term) = term else { continue };
        total = Some(match total {
            None => term,
            // `output_val` starts at 0: 0 + term is term.
            Some(sum) => sum.f_add(&term)?,
        });
    }
    let count = samples.len().max(1) as f64;
    match total {
        Some(total) => total.f_div_scalar(count),
        None => Tensor::f_zeros([bins as i64, rows.size()[1]], (kind, device)),
    }
}

/// The kernel's sums on the CPU, in one pass: for each bin, over its
/// samples in order, `acc += w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4` for
/// every channel (the kernel's expression, evaluated left to right, no
/// fused multiply-add), then `acc / count`. `rows` is `[positions,
/// channels]`; `samples[s][k]` is sample `s` of bin `k`. Gives `[bins,
/// channels]`. The same arithmetic as the tensor path, without its 16
/// gathered `[bins, channels]` intermediates.
fn pool_rows(rows: &[f32], channels: usize, samples: &[Vec<Sample>], bins: usize) -> Vec<f32> {
    let count = samples.len().max(1) as f32;
    let mut out = vec![0f32; bins * channels];
    let row = |position: i64| {
        let start = position as usize * channels;
        &rows[start..start + channels]
    };
    for (bin, acc) in out.chunks_exact_mut(channels).enumerate() {
        for points in samples {
            let point = &points[bin];
            let [w1, w2, w3, w4] = point.weights;
            let (v1, v2, v3, v4) = (
                row(point.positions[0]),
                row(point.positions[1]),
                row(point.positions[2]),
                row(point.positions[3]),
            );
            for ((((value, x1), x2), x3), x4) in acc.iter_mut().zip(v1).zip(v2).zip(v3).zip(v4) {
                *value += w1 * x1 + w2 * x2 + w3 * x3 + w4 * x4;
            }
        }
        for value in acc.iter_mut() {
            *value /= count;
        }
    }
    out
}

/// `MultiScaleRoIAlign` over the feature maps `features` (each `[1, C,
/// h, w]`, finest first) for one image of size `image_size` (`[height,
/// width]` after the transform) and its `boxes` `[K, 4]`: each box is
/// pooled from the level `LevelMapper` assigns it (FPN paper, eq. 1:
/// `floor(4 + log2(sqrt(area) / 224) + 1e-6)` clamped to the levels there
/// are), with `sampling_ratio` 2 and `aligned=False`.
pub(crate) fn multi_scale_roi_align(
    features: &[&Tensor],
    boxes: &Tensor,
    image_size: [i64; 2],
    output_size: i64,
) -> Result<Tensor, TchError> {
    let Some(first) = features.first() else {
        return Err(TchError::Shape("no feature maps to pool".into()));
    };
    // `_infer_scale`: 2 ** round(log2(feature height / image height)).
    let scales: Vec<f32> = features
        .iter()
        .map(|feature| {
            let approx = feature.size()[2] as f64 / image_size[0] as f64;
            2f32.powf((approx as f32).log2().round_ties_even())
        })
        .collect();
    let k_min = -(scales[0].log2()) as i64;
    let k_max = -(scales[scales.len() - 1].log2()) as i64;
    let count = boxes.size()[0];
    let channels = first.size()[1];
    let mut result = Tensor::f_zeros(
        [count, channels, output_size, output_size],
        (first.kind(), first.device()),
    )?;
    if count == 0 {
        return Ok(result);
    }
    let boxes = boxes.f_to_kind(Kind::Float)?;
    let levels = if features.len() == 1 {
        Tensor::f_zeros([count], (Kind::Int64, boxes.device()))?
    } else {
        let s = boxes::area(&boxes)?.f_sqrt()?;
        let eps = Tensor::f_from_slice(&[1e-6f32])?.f_reshape([])?;
        s.f_div_scalar(224)?
            .f_log2()?
            .f_add_scalar(4)?
            .f_add(&eps)?
            .f_floor()?
            .f_clamp(k_min, k_max)?
            .f_to_kind(Kind::Int64)?
            .f_sub_scalar(k_min)?
    };
    let levels = Vec::<i64>::try_from(levels.f_to_device(tch::Device::Cpu)?)?;
    let corners = Vec::<f32>::try_from(
        boxes
            .f_to_device(tch::Device::Cpu)?
            .f_contiguous()?
            .f_flatten(0, -1)?,
    )?;
    for (level, (feature, scale)) in features.iter().zip(&scales).enumerate() {
        let chosen: Vec<i64> = (0..count)
            .filter(|&k| levels[k as usize] == level as i64)
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let rois: Vec<(i64, [f32; 4])> = chosen
            .iter()
            .map(|&k| {
                let at = k as usize * 4;
                (
                    0,
                    [
                        corners[at],
                        corners[at + 1],
                        corners[at + 2],
                        corners[at + 3],
                    ],
                )
            })
            .collect();
        let pooled = roi_align(feature, &rois, output_size, *scale, 2, false)?;
        let index = Tensor::f_from_slice(&chosen)?.f_to_device(first.device())?;
        result = result.f_index_copy(0, &index, &pooled)?;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use tch::Tensor;

    use super::{Sample, pool_rows, pool_tensors, roi_align};

    /// The CPU's one-pass sums give the tensor path's results bit for bit
    /// (same products, same order of additions).
    #[test]
    fn cpu_sums_equal_the_tensor_path_bit_for_bit() {
        let (positions, channels, bins) = (37usize, 19usize, 23usize);
        let noise = |i: usize, scale: f32| ((i as f32 * 0.618_034).fract() - 0.5) * scale;
        let values: Vec<f32> = (0..positions * channels).map(|i| noise(i, 7.3)).collect();
        let samples: Vec<Vec<Sample>> = (0..4)
            .map(|s| {
                (0..bins)
                    .map(|k| {
                        let at = s * 97 + k * 13;
                        Sample {
                            positions: [0, 1, 2, 3].map(|c| ((at + c * 7) % positions) as i64),
                            weights: [0, 1, 2, 3].map(|c| noise(at * 4 + c, 1.0).abs()),
                        }
                    })
                    .collect()
            })
            .collect();
        let ours = pool_rows(&values, channels, &samples, bins);
        let rows = Tensor::from_slice(&values).view([positions as i64, channels as i64]);
        let theirs =
            Vec::<f32>::try_from(pool_tensors(&rows, &samples, bins).unwrap().flatten(0, -1))
                .unwrap();
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a} != {b}");
        }
    }

    /// `torchvision.ops.roi_align(aligned=False, sampling_ratio=2)` (oracle:
    /// `cargo xtask detection-oracle`) on a 2-image feature map, rois in
    /// both images, partly and wholly outside the map and smaller than a
    /// cell, at three output sizes and scales: within 1e-6.
    #[test]
    fn roi_align_matches_torchvisions_kernel() {
        let oracle = crate::families::detection::oracle();
        let case = &oracle["roi_align"];
        let floats = |value: &serde_json::Value| -> Vec<f32> {
            value
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        };
        let shape: Vec<i64> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let input = Tensor::from_slice(&floats(&case["input"])).view(shape.as_slice());
        let rois: Vec<(i64, [f32; 4])> = case["rois"]
            .as_array()
            .unwrap()
            .iter()
            .map(|roi| {
                let values = floats(roi);
                (
                    values[0] as i64,
                    [values[1], values[2], values[3], values[4]],
                )
            })
            .collect();
        for expected in case["cases"].as_array().unwrap() {
            let size = expected["output_size"].as_i64().unwrap();
            let scale = expected["spatial_scale"].as_f64().unwrap() as f32;
            let pooled = roi_align(&input, &rois, size, scale, 2, false).unwrap();
            assert_eq!(pooled.size(), [rois.len() as i64, shape[1], size, size]);
            let ours = Vec::<f32>::try_from(pooled.flatten(0, -1)).unwrap();
            let theirs = floats(&expected["output"]);
            let difference = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                difference <= 1e-6,
                "output {size}, scale {scale}: max |diff| {difference}"
            );
        }
    }
}
