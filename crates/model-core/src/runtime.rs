//! The seam between the application layer and a model runtime (libtorch in
//! `zoo-torch-backend`): crates that must build without libtorch take a
//! `&dyn Runtime`.

use crate::ModelFactory;

/// What the model runtime reports about the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    /// Whether the runtime can use CUDA.
    pub cuda_available: bool,
    /// How many CUDA devices it sees.
    pub cuda_devices: usize,
    /// Whether cuDNN is usable.
    pub cudnn_available: bool,
    /// The runtime's intra-op threads.
    pub threads: usize,
    /// Whether the runtime has MKL.
    pub mkl: bool,
}

/// A model runtime: what it offers to build, and the machine it sees.
pub trait Runtime {
    /// Describes the machine as the runtime sees it.
    fn system_info(&self) -> SystemInfo;

    /// The model builders it offers.
    fn factory(&self) -> ModelFactory;
}
