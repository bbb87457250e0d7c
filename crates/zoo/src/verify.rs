//! Golden outputs: a model run on a fixed probe set zoo ships, recorded in
//! the lock (`zoo lock --with-golden`) and compared later (`zoo models
//! verify`, `zoo bundle install`), so wrong or corrupt weights, another
//! libtorch or a GPU's numerics show up as a difference with a size.
//!
//! The probes are three small pictures zoo draws itself (no file to lose or
//! tamper with): smooth colour fields with shapes and edges, in a square, a
//! landscape and a portrait size, so resize and crop paths differ. Each is
//! written as PNG and the model runs on them exactly as `zoo models apply`
//! and `embed` run it (one image per forward, so a batch's kernel choice
//! plays no part), into a dataset in a temporary folder. What is recorded
//! is each probe's stored label JSON (ids left out) and embedding.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result, bail};
use crate::{LabelOptions, LoadOptions, RunOptions, Zoo};

/// The probe set's name, recorded with golden outputs: outputs of another
/// probe set are never compared with these.
pub const PROBES: &str = "zoo-probes-v1";
/// The tolerance golden outputs are compared within unless the lock or the
/// caller names another: the parity tolerance every family is tested to
/// (a number `g` and `a` agree when `|g - a| <= tolerance * max(1, |g|)`).
pub const DEFAULT_TOLERANCE: f64 = 1e-4;
/// The largest share of a mask's pixels that may differ (a pixel whose
/// class sits on a decision boundary flips with the last bits of a logit).
const MASK_TOLERANCE: f64 = 0.01;
/// The largest array a golden output may hold once inflated (a mask of a
/// probe picture is under 100 KB).
const MAX_GOLDEN_ARRAY_BYTES: u64 = 16 << 20;
const LABELS_FIELD: &str = "golden";
const EMBEDDINGS_FIELD: &str = "golden_embedding";

/// A model's golden outputs, as the lock holds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Golden {
    /// The probe set they were made on ([`PROBES`]).
    pub probes: String,
    /// The tolerance they are compared within.
    pub tolerance: f64,
    /// One per probe.
    #[serde(rename = "output")]
    pub outputs: Vec<GoldenOutput>,
}

/// What a model made of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldenOutput {
    /// The probe's file name.
    pub probe: String,
    /// Its fields as compact JSON: `golden` (the label, without ids) and
    /// `golden_embedding` (the vector), each where the model makes one.
    pub fields: String,
}

/// The result of [`Zoo::verify`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The model.
    pub model: String,
    /// Whether every output is within tolerance.
    pub passed: bool,
    /// The tolerance used.
    pub tolerance: f64,
    /// How many probes ran.
    pub probes: usize,
    /// How many numbers were compared.
    pub numbers: usize,
    /// The largest difference between numbers, scaled as the tolerance is.
    pub worst: f64,
    /// Where it was: `probe/field/path`.
    pub worst_at: String,
    /// The largest share of a mask's pixels that differ.
    pub worst_mask: f64,
    /// The first difference that is not a number within tolerance (a label
    /// changed, a detection gone, a number too far), if any.
    pub failure: Option<String>,
}

/// Draws the probe set: `(file name, width, height, RGB bytes)`.
fn probe_images() -> Vec<(&'static str, u32, u32, Vec<u8>)> {
    [
        ("probe-0.png", 224_u32, 224_u32),
        ("probe-1.png", 320, 200),
        ("probe-2.png", 150, 260),
    ]
    .into_iter()
    .enumerate()
    .map(|(index, (name, width, height))| {
        let seed = index as f64;
        let mut pixels = Vec::with_capacity((width * height * 3) as usize);
        for y in 0..height {
            for x in 0..width {
                let u = f64::from(x) / f64::from(width);
                let v = f64::from(y) / f64::from(height);
                // A smooth field, a disc, a bar and a checker corner.
                let mut rgb = [
                    0.5 + 0.5 * (6.0 * u + seed).sin(),
                    0.5 + 0.5 * (5.0 * v - seed).cos(),
                    0.5 + 0.5 * (4.0 * (u + v) + 2.0 * seed).sin(),
                ];
                let (dx, dy) = (u - 0.6, v - 0.45);
                if dx * dx + dy * dy < 0.04 {
                    rgb = [0.9, 0.15 + 0.2 * seed, 0.1];
                }
                if (0.15..0.3).contains(&u) && v > 0.2 {
                    rgb = [0.1, 0.2, 0.85 - 0.2 * seed];
                }
                if u > 0.8 && v > 0.8 && ((x / 6) + (y / 6)) % 2 == 0 {
                    rgb = [1.0, 1.0, 1.0];
                }
                pixels.extend(rgb.map(|c| (c * 255.0).round().clamp(0.0, 255.0) as u8));
            }
        }
        (name, width, height, pixels)
    })
    .collect()
}

/// Writes the probe set into `dir`.
fn write_probes(dir: &Path) -> Result<()> {
    fs_err::create_dir_all(dir)?;
    for (name, width, height, pixels) in probe_images() {
        let image = image::RgbImage::from_raw(width, height, pixels)
            .ok_or_else(|| Error::new(ErrorKind::Lock, "a probe picture has the wrong size"))?;
        image.save(dir.join(name)).map_err(|err| {
            Error::new(
                ErrorKind::Lock,
                format!("cannot write the probe `{name}`: {err}"),
            )
        })?;
    }
    Ok(())
}

/// Drops `_id` keys everywhere: ids are made anew on every run.
fn without_ids(value: &mut Value) {
    match value {
        Value::Object(object) => {
            object.remove("_id");
            object.values_mut().for_each(without_ids);
        }
        Value::Array(items) => items.iter_mut().for_each(without_ids),
        _ => {}
    }
}

impl Zoo<'_> {
    /// Runs model `name` on the probe set, as `apply` (when it makes labels,
    /// with logits where it has them) and `embed` (when it embeds) run it,
    /// one image per forward, in a dataset in a temporary folder; returns
    /// each probe's fields.
    pub fn probe_outputs(&self, name: &str, options: &LoadOptions) -> Result<Vec<GoldenOutput>> {
        let staging = self.registry().staging_dir("probes-")?;
        let probes = staging.path().join("probes");
        write_probes(&probes)?;
        let mut config = self.config().clone();
        config.datasets_dir = staging.path().join("datasets");
        let zoo = Zoo::new(config, self.runtime()).with_observer(self.observer());
        let mut model = zoo.load_model(name, options)?;
        let folder = probes.to_string_lossy().into_owned();
        let mut dataset = None;
        if model.model_mut().has_labels() {
            let labels = LabelOptions {
                store_logits: model.model_mut().has_logits(),
                stop_on_failure: true,
                ..LabelOptions::default()
            };
            let run = RunOptions::new(LABELS_FIELD).batch_size(1);
            dataset = Some(zoo.apply(&mut model, &folder, &run, &labels)?.dataset);
        }
        if model.model_mut().has_embeddings() {
            // A model runs once per load, as `apply` and `embed` run it (a
            // hosted model's context is entered once).
            if dataset.is_some() {
                drop(model);
                model = zoo.load_model(name, options)?;
            }
            let run = RunOptions::new(EMBEDDINGS_FIELD).batch_size(1);
            dataset = Some(zoo.embed(&mut model, &folder, &run)?.dataset);
        }
        let Some(dataset) = dataset else {
            bail!(
                Lock,
                "model `{name}` neither labels nor embeds images, so it has no golden outputs"
            );
        };
        drop(model);
        let samples = zoo.datasets()?.samples_json(&dataset)?;
        let mut outputs = Vec::new();
        for mut sample in samples {
            let probe = sample
                .remove("filepath")
                .and_then(|path| {
                    Path::new(path.as_str()?)
                        .file_name()
                        .map(|name| name.to_string_lossy().into_owned())
                })
                .unwrap_or_default();
            let mut fields = Value::Object(sample);
            without_ids(&mut fields);
            outputs.push(GoldenOutput {
                probe,
                fields: fields.to_string(),
            });
        }
        outputs.sort_by(|a, b| a.probe.cmp(&b.probe));
        Ok(outputs)
    }

    /// Golden outputs of model `name` (see [`Zoo::probe_outputs`]), to be
    /// compared within `tolerance`.
    pub fn golden(&self, name: &str, tolerance: f64) -> Result<Golden> {
        Ok(Golden {
            probes: PROBES.to_owned(),
            tolerance,
            outputs: self.probe_outputs(name, &LoadOptions::default())?,
        })
    }

    /// Runs model `name` on the probe set and compares its outputs with
    /// `golden`, within `tolerance` (else the golden outputs' own). A
    /// difference is a report with `passed: false`, not an error; golden
    /// outputs of another probe set are an error saying how to record them
    /// again. [`Zoo::verify`] finds them in a lock.
    pub fn verify_golden(
        &self,
        name: &str,
        golden: &Golden,
        tolerance: Option<f64>,
    ) -> Result<VerifyReport> {
        if golden.probes != PROBES {
            bail!(
                Lock,
                "the golden outputs of `{name}` are on probe set `{}`, and this zoo ships `{PROBES}`: record them again with `zoo lock --with-golden {name}`",
                golden.probes
            );
        }
        let tolerance = tolerance.unwrap_or(golden.tolerance);
        let actual = self.probe_outputs(name, &LoadOptions::default())?;
        Ok(compare_outputs(name, &golden.outputs, &actual, tolerance))
    }
}

/// Compares every probe's fields.
fn compare_outputs(
    model: &str,
    golden: &[GoldenOutput],
    actual: &[GoldenOutput],
    tolerance: f64,
) -> VerifyReport {
    let mut compare = Compare {
        tolerance,
        numbers: 0,
        worst: 0.0,
        worst_at: String::new(),
        worst_mask: 0.0,
        failure: None,
    };
    let actual: BTreeMap<&str, &str> = actual
        .iter()
        .map(|output| (output.probe.as_str(), output.fields.as_str()))
        .collect();
    for output in golden {
        let Some(found) = actual.get(output.probe.as_str()) else {
            compare.fail(&output.probe, "no output for this probe".to_owned());
            continue;
        };
        match (
            serde_json::from_str::<Value>(&output.fields),
            serde_json::from_str::<Value>(found),
        ) {
            (Ok(want), Ok(got)) => compare.value(&output.probe, &want, &got),
            _ => compare.fail(&output.probe, "the outputs are not JSON".to_owned()),
        }
    }
    if golden.len() != actual.len() {
        compare.fail(
            "",
            format!(
                "{} probes in the lock, {} outputs now",
                golden.len(),
                actual.len()
            ),
        );
    }
    VerifyReport {
        model: model.to_owned(),
        passed: compare.failure.is_none(),
        tolerance,
        probes: golden.len(),
        numbers: compare.numbers,
        worst: compare.worst,
        worst_at: compare.worst_at,
        worst_mask: compare.worst_mask,
        failure: compare.failure,
    }
}

struct Compare {
    tolerance: f64,
    numbers: usize,
    worst: f64,
    worst_at: String,
    worst_mask: f64,
    failure: Option<String>,
}

impl Compare {
    fn fail(&mut self, at: &str, what: String) {
        if self.failure.is_none() {
            self.failure = Some(format!("{at}: {what}"));
        }
    }

    fn number(&mut self, at: &str, want: f64, got: f64) {
        self.numbers += 1;
        let scaled = if want.is_finite() && got.is_finite() {
            (want - got).abs() / want.abs().max(1.0)
        } else if want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()) {
            0.0
        } else {
            f64::INFINITY
        };
        if scaled > self.worst || (scaled.is_nan() && !self.worst.is_nan()) {
            self.worst = scaled;
            self.worst_at = at.to_owned();
        }
        if scaled.is_nan() || scaled > self.tolerance {
            self.fail(at, format!("{got} where the lock has {want}"));
        }
    }

    fn value(&mut self, at: &str, want: &Value, got: &Value) {
        match (want, got) {
            (Value::Number(a), Value::Number(b)) => {
                self.number(
                    at,
                    a.as_f64().unwrap_or(f64::NAN),
                    b.as_f64().unwrap_or(f64::NAN),
                );
            }
            (Value::Array(a), Value::Array(b)) => {
                if a.len() != b.len() {
                    self.fail(
                        at,
                        format!("{} items where the lock has {}", b.len(), a.len()),
                    );
                    return;
                }
                for (index, (a, b)) in a.iter().zip(b).enumerate() {
                    self.value(&format!("{at}/{index}"), a, b);
                }
            }
            (Value::Object(a), Value::Object(_)) if a.contains_key("$binary") => {
                self.array(at, want, got);
            }
            (Value::Object(a), Value::Object(b)) => {
                for (key, value) in a {
                    match b.get(key) {
                        Some(other) => self.value(&format!("{at}/{key}"), value, other),
                        None => self.fail(&format!("{at}/{key}"), "missing".to_owned()),
                    }
                }
                if let Some(key) = b.keys().find(|key| !a.contains_key(*key)) {
                    self.fail(&format!("{at}/{key}"), "not in the lock".to_owned());
                }
            }
            _ if want == got => {}
            _ => self.fail(at, format!("{got} where the lock has {want}")),
        }
    }

    /// Arrays stored as `.npy` (masks, logits, maps): float ones number by
    /// number, the others by the share of elements that differ.
    fn array(&mut self, at: &str, want: &Value, got: &Value) {
        // The lock is a file zoo may not have written: its arrays inflate no
        // further than a golden output needs.
        let (Ok(a), Ok(b)) = (
            zoo_model_core::array_from_json_within(want, MAX_GOLDEN_ARRAY_BYTES),
            zoo_model_core::array_from_json_within(got, MAX_GOLDEN_ARRAY_BYTES),
        ) else {
            self.fail(at, "an array that cannot be read".to_owned());
            return;
        };
        if a.dtype != b.dtype || a.shape != b.shape {
            self.fail(
                at,
                format!(
                    "array {} {:?} where the lock has {} {:?}",
                    b.dtype, b.shape, a.dtype, a.shape
                ),
            );
            return;
        }
        if (a.dtype.ends_with("f4") || a.dtype.ends_with("f8"))
            && let (Some(x), Some(y)) = (a.to_f32(), b.to_f32())
        {
            for (index, (x, y)) in x.iter().zip(&y).enumerate() {
                self.number(&format!("{at}/{index}"), f64::from(*x), f64::from(*y));
            }
            return;
        }
        let width = a.data.len() / a.shape.iter().product::<usize>().max(1);
        let width = width.max(1);
        let differing = a
            .data
            .chunks(width)
            .zip(b.data.chunks(width))
            .filter(|(x, y)| x != y)
            .count();
        let share = differing as f64 / (a.data.len() / width).max(1) as f64;
        self.worst_mask = self.worst_mask.max(share);
        if share > MASK_TOLERANCE {
            self.fail(
                at,
                format!(
                    "{:.2}% of the array's elements differ (at most {:.0}% may)",
                    share * 100.0,
                    MASK_TOLERANCE * 100.0
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(probe: &str, fields: Value) -> GoldenOutput {
        GoldenOutput {
            probe: probe.to_owned(),
            fields: fields.to_string(),
        }
    }

    #[test]
    fn the_probes_are_the_same_every_time_and_differ_from_each_other() {
        let first = probe_images();
        assert_eq!(first, probe_images());
        assert_eq!(first.len(), 3);
        let sizes: Vec<(u32, u32)> = first.iter().map(|p| (p.1, p.2)).collect();
        assert_eq!(sizes, [(224, 224), (320, 200), (150, 260)]);
        for (_, width, height, pixels) in &first {
            assert_eq!(pixels.len(), (width * height * 3) as usize);
            let distinct: std::collections::BTreeSet<&[u8]> = pixels.chunks(3).collect();
            assert!(distinct.len() > 1000, "{}", distinct.len());
        }
    }

    #[test]
    fn numbers_within_tolerance_pass_and_report_the_worst() {
        let golden = [output(
            "p.png",
            serde_json::json!({"golden": {"_cls": "Classification", "label": "cat", "confidence": 0.5, "logits": [1.0, 200.0]}}),
        )];
        let near = [output(
            "p.png",
            serde_json::json!({"golden": {"_cls": "Classification", "label": "cat", "confidence": 0.50004, "logits": [1.00002, 200.01]}}),
        )];
        let report = compare_outputs("m", &golden, &near, 1e-4);
        assert!(report.passed, "{report:?}");
        assert_eq!(report.numbers, 3);
        assert!((report.worst - 5e-5).abs() < 1e-9, "{}", report.worst);
        assert_eq!(report.worst_at, "p.png/golden/logits/1");

        let far = [output(
            "p.png",
            serde_json::json!({"golden": {"_cls": "Classification", "label": "cat", "confidence": 0.6, "logits": [1.0, 200.0]}}),
        )];
        let report = compare_outputs("m", &golden, &far, 1e-4);
        assert!(!report.passed);
        assert!(
            report
                .failure
                .as_deref()
                .unwrap()
                .contains("golden/confidence"),
            "{report:?}"
        );
    }

    #[test]
    fn a_changed_label_a_lost_detection_or_a_nan_fails() {
        let golden = [output(
            "p.png",
            serde_json::json!({"golden": {"label": "cat", "boxes": [[0.1, 0.2], [0.3, 0.4]]}}),
        )];
        for (changed, says) in [
            (
                serde_json::json!({"golden": {"label": "dog", "boxes": [[0.1, 0.2], [0.3, 0.4]]}}),
                "\"dog\" where the lock has \"cat\"",
            ),
            (
                serde_json::json!({"golden": {"label": "cat", "boxes": [[0.1, 0.2]]}}),
                "1 items where the lock has 2",
            ),
            (
                serde_json::json!({"golden": {"label": "cat", "boxes": [[0.1, 0.2], [0.3, null]]}}),
                "null where the lock has 0.4",
            ),
            (serde_json::json!({}), "missing"),
        ] {
            let report = compare_outputs("m", &golden, &[output("p.png", changed)], 1e-4);
            assert!(!report.passed);
            let failure = report.failure.unwrap();
            assert!(failure.contains(says), "{failure}");
        }
        let report = compare_outputs("m", &golden, &[], 1e-4);
        assert!(report.failure.unwrap().contains("no output for this probe"));
    }

    #[test]
    fn a_lock_array_that_inflates_past_the_cap_is_a_failure_not_an_allocation() {
        let big = zoo_model_core::array_to_json("|u1", &[5000, 5000], &vec![0_u8; 25_000_000]);
        assert!(big.to_string().len() < 100_000, "zlib shrinks zeros");
        let golden = [output(
            "p.png",
            serde_json::json!({"golden": {"mask": big}}),
        )];
        let report = compare_outputs("m", &golden, &golden, 1e-4);
        let failure = report.failure.unwrap();
        assert!(
            failure.contains("an array that cannot be read"),
            "{failure}"
        );
    }

    #[test]
    fn masks_may_differ_on_a_few_pixels_only() {
        let mask = |ones: usize| {
            let mut data = vec![0_u8; 400];
            data[..ones].fill(1);
            zoo_model_core::array_to_json("|u1", &[20, 20], &data)
        };
        let golden = [output(
            "p.png",
            serde_json::json!({"golden": {"mask": mask(100)}}),
        )];
        let near = [output(
            "p.png",
            serde_json::json!({"golden": {"mask": mask(103)}}),
        )];
        let report = compare_outputs("m", &golden, &near, 1e-4);
        assert!(report.passed, "{report:?}");
        assert!((report.worst_mask - 0.0075).abs() < 1e-12);
        let far = [output(
            "p.png",
            serde_json::json!({"golden": {"mask": mask(140)}}),
        )];
        let report = compare_outputs("m", &golden, &far, 1e-4);
        assert!(
            report
                .failure
                .unwrap()
                .contains("10.00% of the array's elements differ")
        );
    }
}
