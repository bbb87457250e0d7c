//! The `zoo` binary; everything lives in the `zoo_cli` library.

fn main() -> std::process::ExitCode {
    zoo_cli::main()
}
