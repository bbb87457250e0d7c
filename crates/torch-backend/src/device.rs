//! Which device a model runs on.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// Loads libtorch's CUDA library if it is installed and loadable.
///
/// The linker drops `libtorch_cuda.so` from the binary because no symbol of
/// it is referenced, and without it libtorch registers no CUDA kernels:
/// `tch::Cuda::is_available()` stays false even on a GPU machine. Loading it
/// by hand (once, process-wide) registers them. With the CPU-only libtorch
/// install the library's own dependencies (cuDNN, cuBLAS) are missing, the
/// load fails, and zoo runs on the CPU. Returns whether it is loaded.
pub fn load_cuda() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        let name = c"libtorch_cuda.so";
        // SAFETY: dlopen with a valid NUL-terminated name; the handle is
        // kept open for the life of the process (never dlclosed), so code
        // it registers stays valid.
        #[allow(unsafe_code)]
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        let loaded = !handle.is_null();
        tracing::debug!(loaded, "libtorch_cuda.so");
        loaded
    })
}

/// Keeps libtorch's large CPU activations on reused heap pages (glibc only;
/// once per process, from the first model loaded).
///
/// Every layer allocates its output afresh. With glibc's adaptive defaults
/// many of those multi-megabyte blocks are mapped and unmapped per forward,
/// and each fresh page costs a fault and a zeroing: measured 330k page
/// faults for 96 640x480 images with resnet18. A fixed 32 MiB mmap threshold
/// (glibc's maximum), a 512 MiB trim threshold and 64 MiB top pad cut that
/// to 94k and the run's wall time by about 6%. Memory stays bounded: blocks
/// are reused, only the heap top is kept instead of being returned.
pub fn tune_allocator() {
    static TUNED: OnceLock<bool> = OnceLock::new();
    TUNED.get_or_init(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let settings = [
                (libc::M_MMAP_THRESHOLD, 32 << 20),
                (libc::M_TRIM_THRESHOLD, 512 << 20),
                (libc::M_TOP_PAD, 64 << 20),
            ];
            for (parameter, value) in settings {
                // SAFETY: mallopt only changes allocator tuning; the values
                // are within glibc's accepted ranges (it returns 0 and
                // changes nothing otherwise).
                #[allow(unsafe_code)]
                let accepted = unsafe { libc::mallopt(parameter, value) };
                tracing::debug!(parameter, value, accepted, "mallopt");
            }
        }
        true
    });
}

/// Errors choosing a device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The string is not a device name.
    #[error("unknown device `{0}`: expected `cpu`, `cuda` or `cuda:N`")]
    Unknown(String),
    /// CUDA was asked for but libtorch sees no GPU.
    #[error(
        "device `{requested}` asked for, but libtorch sees {available} CUDA device(s); use `cpu`, or install the CUDA libtorch with `cargo xtask libtorch --cuda`"
    )]
    Unavailable {
        /// The device asked for.
        requested: DeviceSpec,
        /// How many CUDA devices libtorch sees.
        available: usize,
    },
}

/// A device as written in a model config (`device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// CUDA device 0 when available, else the CPU (FiftyOne's default).
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A CUDA device by index (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim() {
            "" | "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|index| index.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| DeviceError::Unknown(other.to_owned())),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl DeviceSpec {
    /// The tch device to use; CUDA that is not there is an error, not a
    /// silent fallback.
    pub fn resolve(self) -> Result<tch::Device, DeviceError> {
        load_cuda();
        let available = if tch::Cuda::is_available() {
            usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
        } else {
            0
        };
        match self {
            Self::Auto if available > 0 => Ok(tch::Device::Cuda(0)),
            Self::Auto | Self::Cpu => Ok(tch::Device::Cpu),
            Self::Cuda(index) if index < available => Ok(tch::Device::Cuda(index)),
            Self::Cuda(_) => Err(DeviceError::Unavailable {
                requested: self,
                available,
            }),
        }
    }
}

/// What the linked libtorch offers on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// Whether libtorch can use CUDA.
    pub cuda_available: bool,
    /// How many CUDA devices it sees.
    pub cuda_devices: usize,
    /// Whether cuDNN is usable.
    pub cudnn_available: bool,
    /// libtorch's intra-op thread count.
    pub threads: usize,
    /// Whether libtorch was built with MKL.
    pub mkl: bool,
}

impl RuntimeInfo {
    /// Asks libtorch.
    pub fn detect() -> Self {
        load_cuda();
        let cuda_available = tch::Cuda::is_available();
        Self {
            cuda_available,
            cuda_devices: if cuda_available {
                usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
            } else {
                0
            },
            cudnn_available: tch::Cuda::cudnn_is_available(),
            threads: usize::try_from(tch::get_num_threads()).unwrap_or(1),
            mkl: tch::utils::has_mkl(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_config_device_names() {
        let cases = [
            ("cpu", Some(DeviceSpec::Cpu)),
            ("cuda", Some(DeviceSpec::Cuda(0))),
            ("cuda:3", Some(DeviceSpec::Cuda(3))),
            ("", Some(DeviceSpec::Auto)),
            ("cuda:x", None),
            ("tpu", None),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<DeviceSpec>().ok(), expected, "{text}");
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn cpu_runs_a_tensor_op_and_missing_cuda_is_an_error() {
        let device = DeviceSpec::Cpu.resolve().unwrap();
        let tensor = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]).to_device(device);
        assert_eq!(f64::try_from(tensor.sum(tch::Kind::Float)).unwrap(), 6.0);
        let info = RuntimeInfo::detect();
        assert!(info.threads >= 1);
        if !info.cuda_available {
            let err = DeviceSpec::Cuda(0).resolve().unwrap_err();
            assert!(err.to_string().contains("--cuda"), "{err}");
            assert_eq!(DeviceSpec::Auto.resolve().unwrap(), tch::Device::Cpu);
        }
    }
}
