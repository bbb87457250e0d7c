//! The environment interface, read in one place.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use zoo_datasets::{ImageLimits, ImportOptions};
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

/// The Python interpreter for hooks and requirement checks: `ZOO_PYTHON`,
/// else `python3`.
pub(crate) fn python() -> String {
    std::env::var("ZOO_PYTHON")
        .ok()
        .map(|python| python.trim().to_owned())
        .filter(|python| !python.is_empty())
        .unwrap_or_else(|| "python3".to_owned())
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

/// `ZOO_MAX_IMPORT_BYTES`: the largest `samples.json` that `zoo datasets
/// import` reads (default 1 GiB).
pub(crate) fn import_options(allow_outside_paths: bool) -> Result<ImportOptions> {
    let options = ImportOptions::allow_outside_paths(allow_outside_paths);
    Ok(match env_number("ZOO_MAX_IMPORT_BYTES")? {
        None => options,
        Some(0) => anyhow::bail!("`ZOO_MAX_IMPORT_BYTES` must be at least 1, got `0`"),
        Some(bytes) => options.with_max_samples_bytes(bytes),
    })
}

/// `ZOO_RESULTS_CHUNK`: how many samples a shard's part file holds
/// (default 1000); a retried shard redoes at most one chunk's work.
pub(crate) fn results_chunk() -> Result<usize> {
    match env_number("ZOO_RESULTS_CHUNK")? {
        None => Ok(1000),
        Some(0) => anyhow::bail!("`ZOO_RESULTS_CHUNK` must be at least 1, got `0`"),
        Some(count) => Ok(usize::try_from(count).unwrap_or(usize::MAX)),
    }
}

/// How datasets in object storage are reached: every `AWS_*`, `GOOGLE_*`
/// and `AZURE_*` variable, as the `object_store` key of the same name in
/// lower case (`AWS_ENDPOINT` -> `aws_endpoint`, `AWS_ALLOW_HTTP` for a
/// plain-HTTP endpoint), and `ZOO_STORAGE_CONCURRENCY` (fetches at once,
/// default 16), `ZOO_STORAGE_RETRIES` (retries of one request, default 10).
pub(crate) fn storage_options() -> Result<zoo_storage::StorageOptions> {
    let mut options = zoo_storage::StorageOptions::default();
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        if ["AWS_", "GOOGLE_", "AZURE_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            options
                .config
                .push((name.to_ascii_lowercase(), value.to_owned()));
        }
    }
    if let Some(count) = env_number("ZOO_STORAGE_CONCURRENCY")? {
        ensure!(
            count > 0,
            "`ZOO_STORAGE_CONCURRENCY` must be at least 1, got `0`"
        );
        options.concurrency = usize::try_from(count).unwrap_or(usize::MAX);
    }
    if let Some(retries) = env_number("ZOO_STORAGE_RETRIES")? {
        options.retries = usize::try_from(retries).unwrap_or(usize::MAX);
    }
    Ok(options)
}

/// The registry as the environment configures it.
pub(crate) fn registry() -> Result<Registry> {
    // Checked up front, so that a bad value fails every command the same
    // way, not only those that wait for a lock.
    zoo_fs::lock_timeout_from_env()?;
    let mut config = RegistryConfig::new(zoo_dir()?);
    if let Ok(url) = std::env::var("ZOO_GITHUB_API_URL")
        && !url.trim().is_empty()
    {
        config.github_api_url = url.trim().to_owned();
    }
    config.github_token = std::env::var("GITHUB_TOKEN")
        .ok()
        .filter(|token| !token.trim().is_empty());
    // The Hugging Face Hub, as `huggingface_hub` reads its endpoint and
    // token; the token reaches the endpoint's host only.
    if let Ok(url) = std::env::var("HF_ENDPOINT")
        && !url.trim().is_empty()
    {
        config.hf_endpoint = url.trim().to_owned();
    }
    config.hf_token = std::env::var("HF_TOKEN")
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
    config.python = python();
    if let Some(bytes) = env_number("ZOO_MAX_EXTRACT_BYTES")? {
        config.extract_limits.max_bytes = bytes;
    }
    if let Some(entries) = env_number("ZOO_MAX_EXTRACT_ENTRIES")? {
        config.extract_limits.max_entries = entries;
    }
    if let Some(timeout) = hook_timeout()? {
        config.hook_timeout = timeout;
    }
    // Connect, header and idle-read timeout for every request (default
    // 10 s); a download gives up after 8 times that without data.
    if let Some(seconds) = env_number("ZOO_HTTP_TIMEOUT")? {
        anyhow::ensure!(
            seconds > 0,
            "`ZOO_HTTP_TIMEOUT` must be at least 1 (seconds), got `0`"
        );
        config.transfer.timeout = Duration::from_secs(seconds);
    }
    // The most bytes one download may have when nothing tighter is known.
    if let Some(bytes) = env_number("ZOO_MAX_DOWNLOAD_BYTES")? {
        anyhow::ensure!(
            bytes > 0,
            "`ZOO_MAX_DOWNLOAD_BYTES` must be at least 1, got `0`"
        );
        config.transfer.max_bytes = bytes;
    }
    Ok(Registry::new(config))
}

/// `ZOO_HOOK_TIMEOUT`: how many seconds a source's hook may run (default
/// [`zoo_registry::DEFAULT_HOOK_TIMEOUT`]); a positive number, fractions
/// allowed.
fn hook_timeout() -> Result<Option<std::time::Duration>> {
    const NAME: &str = "ZOO_HOOK_TIMEOUT";
    match std::env::var(NAME) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds < 1e9)
            .map(|seconds| Some(std::time::Duration::from_secs_f64(seconds)))
            .with_context(|| {
                format!(
                    "`{NAME}` must be a positive number of seconds (default {}), got `{value}`",
                    zoo_registry::DEFAULT_HOOK_TIMEOUT.as_secs()
                )
            }),
        _ => Ok(None),
    }
}

/// `ZOO_CUDNN_BENCHMARK`: `1`/`true` lets cuDNN time its convolution
/// algorithms for each new batch shape on a GPU (the model config's
/// `cudnn_benchmark`); `0`/`false`/unset leaves it off, libtorch's default.
pub(crate) fn cudnn_benchmark() -> Result<bool> {
    const NAME: &str = "ZOO_CUDNN_BENCHMARK";
    match std::env::var(NAME) {
        Ok(value) => match value.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" => Ok(false),
            "1" | "true" => Ok(true),
            _ => anyhow::bail!(
                "`{NAME}` must be `1` or `0` (cuDNN's algorithm search on a GPU), got `{}`",
                crate::terminal::escape(&value)
            ),
        },
        Err(_) => Ok(false),
    }
}

/// `CUDA_VISIBLE_DEVICES`, as a list of the GPUs' names (`0,2` ->
/// `["0", "2"]`), or `None` when unset or blank: `--workers N` gives each
/// model host one of them.
pub(crate) fn visible_gpus() -> Option<Vec<String>> {
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok()?;
    let gpus: Vec<String> = visible
        .split(',')
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
        .collect();
    (!gpus.is_empty()).then_some(gpus)
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
