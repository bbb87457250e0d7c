//! The environment interface (SPEC section 9), read in one place.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use zoo_datasets::ImageLimits;
use zoo_registry::{Registry, RegistryConfig};

/// Whether `ZOO_OFFLINE` asks for offline mode.
pub(crate) fn offline() -> bool {
    std::env::var("ZOO_OFFLINE").is_ok_and(|value| {
        matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// The zoo dir: `ZOO_MODEL_ZOO_DIR`, else `<user data dir>/zoo/models`.
pub(crate) fn zoo_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ZOO_MODEL_ZOO_DIR").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let data = dirs::data_dir()
        .or_else(|| dirs::home_dir().map(|home| home.join(".local/share")))
        .context("cannot find a data directory for the zoo; set `ZOO_MODEL_ZOO_DIR`")?;
    Ok(data.join("zoo").join("models"))
}

/// The datasets dir: `ZOO_DATASETS_DIR`, else `<user data dir>/zoo/datasets`.
pub(crate) fn datasets_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ZOO_DATASETS_DIR").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let data = dirs::data_dir()
        .or_else(|| dirs::home_dir().map(|home| home.join(".local/share")))
        .context("cannot find a data directory for datasets; set `ZOO_DATASETS_DIR`")?;
    Ok(data.join("zoo").join("datasets"))
}

/// What reading one image may cost: `ZOO_MAX_IMAGE_PIXELS` (Pillow's
/// `MAX_IMAGE_PIXELS`: a warning above it, the sample fails above twice it;
/// default 89,478,485) and `ZOO_MAX_IMAGE_BYTES` (the largest image file
/// read; default 1 GiB).
pub(crate) fn image_limits() -> Result<ImageLimits> {
    let mut limits = ImageLimits::default();
    for (name, value) in [
        ("ZOO_MAX_IMAGE_PIXELS", &mut limits.max_pixels),
        ("ZOO_MAX_IMAGE_BYTES", &mut limits.max_bytes),
    ] {
        if let Some(number) = env_number(name)? {
            ensure!(number > 0, "`{name}` must be at least 1, got `0`");
            *value = number;
        }
    }
    Ok(limits)
}

/// The registry as the environment configures it.
pub(crate) fn registry() -> Result<Registry> {
    let mut config = RegistryConfig::new(zoo_dir()?);
    if let Ok(url) = std::env::var("ZOO_GITHUB_API_URL")
        && !url.trim().is_empty()
    {
        config.github_api_url = url.trim().to_owned();
    }
    config.github_token = std::env::var("GITHUB_TOKEN")
        .ok()
        .filter(|token| !token.trim().is_empty());
    config.offline = offline();
    config.extra_manifests = std::env::var("ZOO_MANIFEST_PATHS")
        .map(|paths| {
            paths
                .split(':')
                .filter(|path| !path.trim().is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    config.builtin = Some(zoo_registry::builtin_manifest());
    config.mirrors = std::env::var("ZOO_DOWNLOAD_MIRRORS")
        .unwrap_or_default()
        .split([';', '\n'])
        .filter_map(|pair| pair.split_once('='))
        .map(|(prefix, replacement)| (prefix.trim().to_owned(), replacement.trim().to_owned()))
        .filter(|(prefix, _)| !prefix.is_empty())
        .collect();
    if let Ok(url) = std::env::var("ZOO_GOOGLE_DRIVE_URL")
        && !url.trim().is_empty()
    {
        config.google_drive_url = url.trim().to_owned();
    }
    if let Ok(python) = std::env::var("ZOO_PYTHON")
        && !python.trim().is_empty()
    {
        config.python = python.trim().to_owned();
    }
    if let Some(bytes) = env_number("ZOO_MAX_EXTRACT_BYTES")? {
        config.extract_limits.max_bytes = bytes;
    }
    if let Some(entries) = env_number("ZOO_MAX_EXTRACT_ENTRIES")? {
        config.extract_limits.max_entries = entries;
    }
    Ok(Registry::new(config))
}

fn env_number(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("`{name}` must be a whole number, got `{value}`")),
        _ => Ok(None),
    }
}
