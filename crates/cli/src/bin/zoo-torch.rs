//! `zoo-torch`: the `zoo` command with the libtorch runtime linked in.
//!
//! `zoo` itself never links libtorch (its start-up would cost a third of a
//! second of static initialisers); it hands commands that run models to this
//! binary, installed beside it.

fn main() -> std::process::ExitCode {
    zoo_cli::main_with_runtime(&zoo_torch_backend::TorchRuntime)
}
