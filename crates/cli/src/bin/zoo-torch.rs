//! `zoo-torch`: the `zoo` command with the libtorch runtime linked in.
//!
//! `zoo` itself never links libtorch (its start-up would cost a third of a
//! second of static initialisers); it hands commands that run models to this
//! binary, installed beside it.

use zoo_cli::{Runtime, SystemInfo};
use zoo_torch_backend::RuntimeInfo;

struct Torch;

impl Runtime for Torch {
    fn system_info(&self) -> SystemInfo {
        let info = RuntimeInfo::detect();
        SystemInfo {
            cuda_available: info.cuda_available,
            cuda_devices: info.cuda_devices,
            cudnn_available: info.cudnn_available,
            threads: info.threads,
            mkl: info.mkl,
        }
    }

    fn factory(&self) -> zoo_model_core::ModelFactory {
        let mut factory = zoo_model_core::ModelFactory::new();
        zoo_torch_backend::register(&mut factory);
        factory
    }
}

fn main() -> std::process::ExitCode {
    zoo_cli::main_with_runtime(&Torch)
}
