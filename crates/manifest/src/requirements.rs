//! What a model needs: packages and CPU/GPU support.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A model's `requirements`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Requirements {
    /// Packages needed everywhere, as pip requirement strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<String>>,
    /// CPU support and CPU-only packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Support>,
    /// GPU support and GPU-only packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<Support>,
    /// Fields zoo does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `cpu` or `gpu` in [`Requirements`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Support {
    /// Whether the model runs on this kind of device (absent: yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support: Option<bool>,
    /// Packages needed on this kind of device only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<String>>,
    /// Fields zoo does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// FiftyOne's error levels for unmet requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorLevel {
    /// 0: an unmet requirement is an error.
    Fail,
    /// 1: an unmet requirement is a warning.
    Warn,
    /// 2: unmet requirements are ignored.
    Ignore,
}

impl ErrorLevel {
    /// The level for FiftyOne's number (0, 1 or 2).
    pub fn from_number(level: u8) -> Option<Self> {
        match level {
            0 => Some(Self::Fail),
            1 => Some(Self::Warn),
            2 => Some(Self::Ignore),
            _ => None,
        }
    }
}

/// What [`Requirements::check`] found missing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequirementsCheck {
    /// Requirement strings whose package is not installed.
    pub missing_packages: Vec<String>,
    /// Set when the model does not support the device in use.
    pub unsupported_device: Option<&'static str>,
}

impl RequirementsCheck {
    /// Whether everything is met.
    pub fn is_satisfied(&self) -> bool {
        self.missing_packages.is_empty() && self.unsupported_device.is_none()
    }
}

impl Requirements {
    /// The package requirement strings for a CPU or GPU run.
    pub fn packages_for(&self, gpu: bool) -> Vec<&str> {
        let device = if gpu { &self.gpu } else { &self.cpu };
        self.packages
            .iter()
            .flatten()
            .chain(
                device
                    .iter()
                    .flat_map(|support| support.packages.iter().flatten()),
            )
            .map(String::as_str)
            .collect()
    }

    /// Whether the model supports a CPU (`gpu == false`) or GPU run.
    pub fn supports(&self, gpu: bool) -> bool {
        let device = if gpu { &self.gpu } else { &self.cpu };
        device
            .as_ref()
            .and_then(|support| support.support)
            .unwrap_or(true)
    }

    /// Checks the requirements for a CPU or GPU run; `is_installed` answers
    /// for a bare package name (`torch` for `torch>=1.7`).
    pub fn check(&self, gpu: bool, is_installed: impl Fn(&str) -> bool) -> RequirementsCheck {
        RequirementsCheck {
            missing_packages: self
                .packages_for(gpu)
                .into_iter()
                .filter(|requirement| !is_installed(requirement_name(requirement)))
                .map(str::to_owned)
                .collect(),
            unsupported_device: (!self.supports(gpu)).then_some(if gpu { "gpu" } else { "cpu" }),
        }
    }
}

/// The package name of a pip requirement string: `torch>=1.7` -> `torch`,
/// `pkg[extra]==1` -> `pkg`.
pub(crate) fn requirement_name(requirement: &str) -> &str {
    let end = requirement
        .find(|character: char| {
            !(character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.'))
        })
        .unwrap_or(requirement.len());
    requirement[..end].trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_names() {
        for (spec, name) in [
            ("torch>=1.7.0", "torch"),
            ("ultralytics", "ultralytics"),
            ("open_clip_torch[extra]==2", "open_clip_torch"),
            ("huggingface-hub ~= 0.2", "huggingface-hub"),
        ] {
            assert_eq!(requirement_name(spec), name);
        }
    }

    #[test]
    fn check_reports_missing_packages_and_devices() {
        let requirements: Requirements = serde_json::from_value(serde_json::json!({
            "packages": ["torch>=1.7", "numpy"],
            "cpu": {"support": false},
            "gpu": {"support": true, "packages": ["pycuda"]}
        }))
        .unwrap();
        let check = requirements.check(false, |name| name == "numpy");
        assert_eq!(check.missing_packages, vec!["torch>=1.7"]);
        assert_eq!(check.unsupported_device, Some("cpu"));
        let check = requirements.check(true, |_| true);
        assert!(check.is_satisfied());
        assert_eq!(
            requirements.packages_for(true),
            vec!["torch>=1.7", "numpy", "pycuda"]
        );
        assert_eq!(ErrorLevel::from_number(1), Some(ErrorLevel::Warn));
        assert_eq!(ErrorLevel::from_number(3), None);
    }
}
