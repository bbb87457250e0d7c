//! Which model made a field: recorded with every label and embeddings field
//! a run writes, shown by `zoo datasets info`, exported as the field's
//! FiftyOne `info` and `description`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use zoo_manifest::{Origin, ZooModel};
use zoo_model_core::SystemInfo;
use zoo_registry::Registry;

use crate::error::Result;

/// The model behind a run, as recorded for each field it writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// The model's versioned name.
    pub model: String,
    /// Its manifest version, if any.
    pub version: Option<String>,
    /// `builtin`, the custom manifest's path, or the source's URL.
    pub source: String,
    /// The commit the source (or Hugging Face repo) was fetched at.
    pub commit: Option<String>,
    /// The Hugging Face repo the weights came from, if they did.
    pub hub_repo: Option<String>,
    /// The sha256 of the model's files (`Registry::weights_digest`);
    /// `None` when zoo holds no files for it (a hosted class whose library
    /// fetches its own) or they could not be read (said as a warning).
    pub weights_sha256: Option<String>,
    /// The sha256 of the deployment config it ran with (keys sorted,
    /// compact JSON), overrides included.
    pub config_sha256: String,
    /// `native` or `python host`.
    pub runs: &'static str,
    /// `cpu`, `cuda`, `cuda:1` ...
    pub device: String,
    /// `float32` or `float16`.
    pub precision: &'static str,
}

impl Provenance {
    /// The provenance of `model`, downloaded at `path`, running with
    /// `config` (`{"type": ..., "config": {...}}`, the run's overrides
    /// applied): natively (`hosted` is `None`) or in the model host
    /// (`Some(the device it reported)`).
    pub(crate) fn of(
        registry: &Registry,
        model: &ZooModel,
        path: &std::path::Path,
        config: &Value,
        hosted: Option<Option<&str>>,
        system: &SystemInfo,
    ) -> Result<Self> {
        let weights = if fs_err::symlink_metadata(path).is_ok() {
            match registry.weights_digest(path) {
                Ok(digest) => Some(digest.sha256),
                Err(err) => {
                    tracing::warn!(
                        "the provenance of `{}` records no weights digest: {err}",
                        model.name()
                    );
                    None
                }
            }
        } else {
            None
        };
        let snapshot = registry.hub_snapshot(model);
        let commit = match &model.origin {
            Origin::Source { url, .. } => registry
                .sources()?
                .into_iter()
                .find(|source| &source.url == url)
                .and_then(|source| source.commit),
            _ => None,
        }
        .or_else(|| snapshot.as_ref().map(|snapshot| snapshot.commit.clone()));
        let options = config.get("config").unwrap_or(config);
        let device = hosted
            .flatten()
            .or_else(|| options.get("device").and_then(Value::as_str))
            .map(str::to_owned)
            .unwrap_or_else(|| {
                if system.cuda_available {
                    "cuda".to_owned()
                } else {
                    "cpu".to_owned()
                }
            });
        let half = options.get("use_half_precision").and_then(Value::as_bool) == Some(true)
            && device.starts_with("cuda");
        Ok(Self {
            model: model.name(),
            version: model.model.version.clone(),
            source: model.origin.to_string(),
            commit,
            hub_repo: snapshot.map(|snapshot| snapshot.repo),
            weights_sha256: weights,
            config_sha256: config_digest(config),
            runs: if hosted.is_some() {
                "python host"
            } else {
                "native"
            },
            device,
            precision: if half { "float16" } else { "float32" },
        })
    }

    /// The record stored with a field, stamped with the zoo version and
    /// the time now.
    pub(crate) fn record(&self) -> Value {
        json!({
            "model": self.model,
            "version": self.version,
            "source": self.source,
            "commit": self.commit,
            "hub_repo": self.hub_repo,
            "weights_sha256": self.weights_sha256,
            "config_sha256": self.config_sha256,
            "runs": self.runs,
            "device": self.device,
            "precision": self.precision,
            "zoo_version": env!("CARGO_PKG_VERSION"),
            "created_at": utc_now(),
        })
    }
}

/// The sha256 of `config` as compact JSON with every object's keys sorted,
/// so the same settings give the same digest whatever their order.
pub fn config_digest(config: &Value) -> String {
    let canonical = sorted(config).to_string();
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                out.insert(key.clone(), sorted(&map[key]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The time now in UTC, RFC 3339 to the second (`2026-12-07T12:00:00Z`).
fn utc_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    rfc3339(seconds)
}

fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_digests_ignore_key_order_and_see_every_value() {
        let a = json!({"b": 1, "a": {"y": [1, {"q": 1, "p": 2}], "x": null}});
        let b = json!({"a": {"x": null, "y": [1, {"p": 2, "q": 1}]}, "b": 1});
        assert_eq!(config_digest(&a), config_digest(&b));
        assert_ne!(config_digest(&a), config_digest(&json!({"b": 2, "a": {}})));
        assert_eq!(
            config_digest(&json!({})),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_646_645), "2026-12-07T12:30:45Z");
    }
}
