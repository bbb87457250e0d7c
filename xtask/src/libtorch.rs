//! libtorch from PyPI wheels, cached outside the build tree.
//!
//! pytorch.org is unreachable from our machines but PyPI is not, and the
//! `torch` wheel carries a complete libtorch (`torch/include`, `torch/lib`).
//! The cache layout:
//!
//! ```text
//! $ZOO_LIBTORCH_CACHE (default: <user cache dir>/zoo/libtorch)
//! ├── 2.13.0-cpu/            three wheels, ~1.2 GB: torch, cudart, cupti
//! │   ├── .zoo-installed     written last: the install is complete
//! │   ├── torch/{include,lib}
//! │   └── nvidia/cu13/lib    found by libtorch through its $ORIGIN rpath
//! ├── 2.13.0-cuda/           `--cuda`: torch with every CUDA dependency
//! └── 2.11.0-device/         `device-build`: the libtorch of the GPU machine's
//!                            PyTorch (same three wheels as `-cpu`)
//! ```
//!
//! An install goes to `<variant>.partial` and is renamed when pip succeeds,
//! so an interrupted install is redone, never half-used.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

/// The torch version tch 0.26 is built against.
pub(crate) const TORCH_VERSION: &str = "2.13.0";
/// The torch version of the GPU machine's PyTorch (`cargo xtask
/// device-build` builds against it).
pub(crate) const DEVICE_TORCH_VERSION: &str = "2.11.0";
/// The CUDA runtime and CUPTI wheels `libtorch_cpu` links: the versions
/// torch 2.11.0 and 2.13.0 both pin (through `cuda-toolkit==13.0.2`).
const CUDA_RUNTIME_WHEELS: [&str; 2] =
    ["nvidia-cuda-runtime==13.0.96", "nvidia-cuda-cupti==13.0.85"];
const MARKER: &str = ".zoo-installed";

/// Which libtorch build to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// CPU kernels only (plus the two CUDA libraries libtorch_cpu links).
    Cpu,
    /// The full CUDA set, for GPU machines.
    Cuda,
    /// Torch [`DEVICE_TORCH_VERSION`] with the same two CUDA libraries as
    /// [`Variant::Cpu`]: headers and libraries to build binaries for the
    /// GPU machine, which brings its own CUDA libraries.
    Device,
}

impl Variant {
    pub(crate) fn from_flag(cuda: bool) -> Self {
        if cuda { Self::Cuda } else { Self::Cpu }
    }

    /// The torch version this variant installs.
    pub(crate) fn version(self) -> &'static str {
        match self {
            Self::Cpu | Self::Cuda => TORCH_VERSION,
            Self::Device => DEVICE_TORCH_VERSION,
        }
    }

    fn dir_name(self) -> String {
        let version = self.version();
        match self {
            Self::Cpu => format!("{version}-cpu"),
            Self::Cuda => format!("{version}-cuda"),
            Self::Device => format!("{version}-device"),
        }
    }

    fn pip_args(self) -> Vec<String> {
        let torch = format!("torch=={}", self.version());
        match self {
            Self::Cpu | Self::Device => ["--no-deps", &torch]
                .into_iter()
                .chain(CUDA_RUNTIME_WHEELS)
                .map(str::to_owned)
                .collect(),
            Self::Cuda => vec![torch],
        }
    }
}

/// A complete libtorch install.
#[derive(Debug, Clone)]
pub(crate) struct Install {
    root: PathBuf,
}

impl Install {
    /// The directory to give as `LIBTORCH`.
    pub(crate) fn libtorch(&self) -> PathBuf {
        self.root.join("torch")
    }

    /// The environment cargo and the binaries need.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        let lib = self.libtorch().join("lib");
        let mut loader = lib.display().to_string();
        if let Ok(existing) = std::env::var("LD_LIBRARY_PATH")
            && !existing.is_empty()
        {
            loader = format!("{loader}:{existing}");
        }
        vec![
            ("LIBTORCH", self.libtorch().display().to_string()),
            ("LD_LIBRARY_PATH", loader),
        ]
    }
}

fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ZOO_LIBTORCH_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    let base = dirs::cache_dir().context("no user cache directory; set ZOO_LIBTORCH_CACHE")?;
    Ok(base.join("zoo").join("libtorch"))
}

/// The install to use for builds: the CUDA one when it exists, else CPU,
/// installing CPU if neither is there.
pub(crate) fn ensure_default(sh: &Shell) -> Result<Install> {
    let root = cache_root()?;
    let cuda = root.join(Variant::Cuda.dir_name());
    if cuda.join(MARKER).exists() {
        return Ok(Install { root: cuda });
    }
    ensure(sh, Variant::Cpu)
}

/// Installs `variant` unless it is already complete; idempotent and fast when
/// it is.
pub(crate) fn ensure(sh: &Shell, variant: Variant) -> Result<Install> {
    let root = cache_root()?;
    let target = root.join(variant.dir_name());
    if target.join(MARKER).exists() {
        return Ok(Install { root: target });
    }
    eprintln!(
        "xtask: installing libtorch {} ({variant:?}) from PyPI into {}",
        variant.version(),
        target.display()
    );
    fs_err::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let partial = root.join(format!("{}.partial", variant.dir_name()));
    remove_if_exists(&partial)?;
    remove_if_exists(&target)?;
    let python = python();
    let pip_args = variant.pip_args();
    cmd!(
        sh,
        "{python} -m pip install --quiet --disable-pip-version-check --no-cache-dir --target {partial} {pip_args...}"
    )
    .run()
    .with_context(|| {
        format!("pip could not install libtorch; is `{python} -m pip` working and PyPI reachable?")
    })?;
    if !partial.join("torch/lib").is_dir() || !partial.join("torch/include").is_dir() {
        bail!(
            "the torch wheel in {} has no torch/lib or torch/include",
            partial.display()
        );
    }
    fs_err::rename(&partial, &target)
        .with_context(|| format!("renaming {} to {}", partial.display(), target.display()))?;
    fs_err::write(target.join(MARKER), variant.pip_args().join(" ") + "\n")
        .with_context(|| format!("writing the install marker in {}", target.display()))?;
    Ok(Install { root: target })
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn remove_if_exists(path: &Path) -> Result<()> {
    if path.exists() {
        fs_err::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}
