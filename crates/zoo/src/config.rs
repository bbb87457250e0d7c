//! zoo's configuration: from the environment (what the `zoo` command reads)
//! or built in code.

use std::path::PathBuf;
use std::time::Duration;

use zoo_datasets::{ImageLimits, ImportOptions};
use zoo_registry::RegistryConfig;
use zoo_storage::StorageOptions;

use crate::error::{Error, ErrorKind, Result, bail};

/// Everything the application layer needs to know about where things are
/// and what they may cost. [`Config::from_env`] reads the `ZOO_*`
/// variables; [`Config::new`] starts from the defaults for two folders.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The registry: the zoo dir, the catalogue, sources, downloads.
    pub registry: RegistryConfig,
    /// Where datasets live (`ZOO_DATASETS_DIR`).
    pub datasets_dir: PathBuf,
    /// The Python interpreter for hooks, the model host and requirement
    /// checks (`ZOO_PYTHON`, else `python3`).
    pub python: String,
    /// What reading one image may cost.
    pub image_limits: ImageLimits,
    /// How many samples a shard's part file holds (`ZOO_RESULTS_CHUNK`).
    pub results_chunk: usize,
    /// How datasets and results in object storage are reached.
    pub storage: StorageOptions,
    /// Let cuDNN time its convolution algorithms (`ZOO_CUDNN_BENCHMARK`).
    pub cudnn_benchmark: bool,
    /// The GPUs model hosts are spread over (`CUDA_VISIBLE_DEVICES`);
    /// `None`: every GPU the runtime sees.
    pub visible_gpus: Option<Vec<String>>,
    /// The lock `zoo lock` writes and `--locked` reads (`ZOO_LOCKFILE`,
    /// else `zoo.lock` in the current directory).
    pub lockfile: PathBuf,
}

impl Config {
    /// The defaults with models in `zoo_dir` and datasets in
    /// `datasets_dir`: FiftyOne's built-in catalogue, GitHub and the
    /// Hugging Face Hub at their public addresses, `python3`, online.
    pub fn new(zoo_dir: impl Into<PathBuf>, datasets_dir: impl Into<PathBuf>) -> Self {
        let mut registry = RegistryConfig::new(zoo_dir.into());
        registry.builtin = Some(zoo_registry::builtin_manifest());
        Self {
            registry,
            datasets_dir: datasets_dir.into(),
            python: "python3".to_owned(),
            image_limits: ImageLimits::default(),
            results_chunk: 1000,
            storage: StorageOptions::default(),
            cudnn_benchmark: false,
            visible_gpus: None,
            lockfile: PathBuf::from(crate::LOCK_FILE),
        }
    }

    /// The configuration the environment sets (every variable is listed in
    /// `docs/usage.md`); a value zoo cannot use is an error naming it.
    pub fn from_env() -> Result<Self> {
        let mut config = Self::new(zoo_dir()?, datasets_dir()?);
        config.python = python();
        config.image_limits = image_limits()?;
        config.results_chunk = results_chunk()?;
        config.storage = storage_options()?;
        config.cudnn_benchmark = cudnn_benchmark()?;
        config.visible_gpus = visible_gpus();
        if let Some(path) = std::env::var_os("ZOO_LOCKFILE").filter(|path| !path.is_empty()) {
            config.lockfile = PathBuf::from(path);
        }
        registry_from_env(&mut config.registry, &config.python)?;
        Ok(config)
    }

    /// Works without the network: only what is downloaded already.
    pub fn offline(mut self, offline: bool) -> Self {
        self.registry.offline = offline;
        self
    }

    /// Adds a custom manifest (as `ZOO_MANIFEST_PATHS` does).
    pub fn with_manifest(mut self, path: impl Into<PathBuf>) -> Self {
        self.registry.extra_manifests.push(path.into());
        self
    }
}

/// Whether `ZOO_OFFLINE` asks for offline mode.
pub fn offline() -> bool {
    std::env::var("ZOO_OFFLINE").is_ok_and(|value| {
        matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

/// The licence policy `ZOO_ALLOWED_LICENSES`: SPDX ids separated by commas
/// (`MIT,Apache-2.0,BSD-3-Clause`); unset or empty, no policy. A value with
/// no id in it is an error, not a policy that allows nothing.
pub(crate) fn allowed_licenses() -> Result<Option<Vec<String>>> {
    let Some(value) = std::env::var_os("ZOO_ALLOWED_LICENSES") else {
        return Ok(None);
    };
    let value = value.to_string_lossy();
    if value.trim().is_empty() {
        return Ok(None);
    }
    let ids: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        bail!(
            Config,
            "`ZOO_ALLOWED_LICENSES` is `{value}`, which names no license: give SPDX ids separated by commas, such as `MIT,Apache-2.0`"
        );
    }
    Ok(Some(ids))
}

/// The zoo dir: `ZOO_MODEL_ZOO_DIR`, else `<user data dir>/zoo/models`.
pub fn zoo_dir() -> Result<PathBuf> {
    data_dir("ZOO_MODEL_ZOO_DIR", "models", "the zoo")
}

/// The datasets dir: `ZOO_DATASETS_DIR`, else `<user data dir>/zoo/datasets`.
pub fn datasets_dir() -> Result<PathBuf> {
    data_dir("ZOO_DATASETS_DIR", "datasets", "datasets")
}

fn data_dir(variable: &str, folder: &str, what: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(variable).filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let data = dirs::data_dir()
        .or_else(|| dirs::home_dir().map(|home| home.join(".local/share")))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("cannot find a data directory for {what}; set `{variable}`"),
            )
        })?;
    Ok(data.join("zoo").join(folder))
}

/// The Python interpreter for hooks and requirement checks: `ZOO_PYTHON`,
/// else `python3`.
pub fn python() -> String {
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
fn image_limits() -> Result<ImageLimits> {
    let mut limits = ImageLimits::default();
    for (name, value) in [
        ("ZOO_MAX_IMAGE_PIXELS", &mut limits.max_pixels),
        ("ZOO_MAX_IMAGE_BYTES", &mut limits.max_bytes),
    ] {
        if let Some(number) = env_number(name)? {
            if number == 0 {
                bail!(Config, "`{name}` must be at least 1, got `0`");
            }
            *value = number;
        }
    }
    Ok(limits)
}

/// `ZOO_MAX_IMPORT_BYTES`: the largest `samples.json` that `zoo datasets
/// import` reads (default 1 GiB).
pub fn import_options(allow_outside_paths: bool) -> Result<ImportOptions> {
    let options = ImportOptions::allow_outside_paths(allow_outside_paths);
    Ok(match env_number("ZOO_MAX_IMPORT_BYTES")? {
        None => options,
        Some(0) => bail!(Config, "`ZOO_MAX_IMPORT_BYTES` must be at least 1, got `0`"),
        Some(bytes) => options.with_max_samples_bytes(bytes),
    })
}

/// `ZOO_RESULTS_CHUNK`: how many samples a shard's part file holds
/// (default 1000); a retried shard redoes at most one chunk's work.
fn results_chunk() -> Result<usize> {
    match env_number("ZOO_RESULTS_CHUNK")? {
        None => Ok(1000),
        Some(0) => bail!(Config, "`ZOO_RESULTS_CHUNK` must be at least 1, got `0`"),
        Some(count) => Ok(usize::try_from(count).unwrap_or(usize::MAX)),
    }
}

/// How datasets in object storage are reached: every `AWS_*`, `GOOGLE_*`
/// and `AZURE_*` variable, as the `object_store` key of the same name in
/// lower case (`AWS_ENDPOINT` -> `aws_endpoint`, `AWS_ALLOW_HTTP` for a
/// plain-HTTP endpoint), and `ZOO_STORAGE_CONCURRENCY` (fetches at once,
/// default 16), `ZOO_STORAGE_RETRIES` (retries of one request, default 10).
fn storage_options() -> Result<StorageOptions> {
    let mut options = StorageOptions::default();
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
        if count == 0 {
            bail!(
                Config,
                "`ZOO_STORAGE_CONCURRENCY` must be at least 1, got `0`"
            );
        }
        options.concurrency = usize::try_from(count).unwrap_or(usize::MAX);
    }
    if let Some(retries) = env_number("ZOO_STORAGE_RETRIES")? {
        options.retries = usize::try_from(retries).unwrap_or(usize::MAX);
    }
    Ok(options)
}

/// The registry's settings from the environment.
fn registry_from_env(config: &mut RegistryConfig, python: &str) -> Result<()> {
    // Checked up front, so that a bad value fails every command the same
    // way, not only those that wait for a lock.
    zoo_fs::lock_timeout_from_env()?;
    if let Some(url) = env_text("ZOO_GITHUB_API_URL") {
        config.github_api_url = url;
    }
    config.github_token = env_text("GITHUB_TOKEN");
    // The Hugging Face Hub, as `huggingface_hub` reads its endpoint and
    // token; the token reaches the endpoint's host only.
    if let Some(url) = env_text("HF_ENDPOINT") {
        config.hf_endpoint = url;
    }
    config.hf_token = env_text("HF_TOKEN");
    config.offline = offline();
    config.allowed_licenses = allowed_licenses()?;
    config.extra_manifests = std::env::var("ZOO_MANIFEST_PATHS")
        .map(|paths| {
            paths
                .split(':')
                .filter(|path| !path.trim().is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    config.mirrors = std::env::var("ZOO_DOWNLOAD_MIRRORS")
        .unwrap_or_default()
        .split([';', '\n'])
        .filter_map(|pair| pair.split_once('='))
        .map(|(prefix, replacement)| (prefix.trim().to_owned(), replacement.trim().to_owned()))
        .filter(|(prefix, _)| !prefix.is_empty())
        .collect();
    if let Some(url) = env_text("ZOO_GOOGLE_DRIVE_URL") {
        config.google_drive_url = url;
    }
    python.clone_into(&mut config.python);
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
        if seconds == 0 {
            bail!(
                Config,
                "`ZOO_HTTP_TIMEOUT` must be at least 1 (seconds), got `0`"
            );
        }
        config.transfer.timeout = Duration::from_secs(seconds);
    }
    // The most bytes one download may have when nothing tighter is known.
    if let Some(bytes) = env_number("ZOO_MAX_DOWNLOAD_BYTES")? {
        if bytes == 0 {
            bail!(
                Config,
                "`ZOO_MAX_DOWNLOAD_BYTES` must be at least 1, got `0`"
            );
        }
        config.transfer.max_bytes = bytes;
    }
    Ok(())
}

/// `ZOO_HOOK_TIMEOUT`: how many seconds a source's hook may run (default
/// [`zoo_registry::DEFAULT_HOOK_TIMEOUT`]); a positive number, fractions
/// allowed.
fn hook_timeout() -> Result<Option<Duration>> {
    const NAME: &str = "ZOO_HOOK_TIMEOUT";
    match std::env::var(NAME) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds < 1e9)
            .map(|seconds| Some(Duration::from_secs_f64(seconds)))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "`{NAME}` must be a positive number of seconds (default {}), got `{}`",
                        zoo_registry::DEFAULT_HOOK_TIMEOUT.as_secs(),
                        value.escape_debug()
                    ),
                )
            }),
        _ => Ok(None),
    }
}

/// `ZOO_CUDNN_BENCHMARK`: `1`/`true` lets cuDNN time its convolution
/// algorithms for each new batch shape on a GPU (the model config's
/// `cudnn_benchmark`); `0`/`false`/unset leaves it off, libtorch's default.
fn cudnn_benchmark() -> Result<bool> {
    const NAME: &str = "ZOO_CUDNN_BENCHMARK";
    match std::env::var(NAME) {
        Ok(value) => match value.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" => Ok(false),
            "1" | "true" => Ok(true),
            _ => bail!(
                Config,
                "`{NAME}` must be `1` or `0` (cuDNN's algorithm search on a GPU), got `{}`",
                value.escape_debug()
            ),
        },
        Err(_) => Ok(false),
    }
}

/// `CUDA_VISIBLE_DEVICES`, as a list of the GPUs' names (`0,2` ->
/// `["0", "2"]`), or `None` when unset or blank: `--workers N` gives each
/// model host one of them.
fn visible_gpus() -> Option<Vec<String>> {
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok()?;
    let gpus: Vec<String> = visible
        .split(',')
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
        .collect();
    (!gpus.is_empty()).then_some(gpus)
}

fn env_text(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

fn env_number(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value.trim().parse().map(Some).map_err(|_| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "`{name}` must be a whole number, got `{}`",
                    value.escape_debug()
                ),
            )
        }),
        _ => Ok(None),
    }
}
