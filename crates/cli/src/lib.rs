//! The `zoo` command line: parses arguments, calls the library crates, and
//! prints tables for people or JSON for scripts.
//!
//! Environment: `ZOO_MODEL_ZOO_DIR`, `ZOO_MANIFEST_PATHS`,
//! `ZOO_GITHUB_API_URL`, `GITHUB_TOKEN`, `ZOO_OFFLINE`. Errors are printed
//! once, as a chain (`what failed: why`), with exit code 1; a closed stdout
//! pipe counts as success. Warnings from the libraries go to stderr. Text from
//! manifests, servers and file names is shown with control characters
//! escaped (`terminal`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod app;
mod commands;
mod config;
mod output;
mod progress;
#[cfg(test)]
mod reference;
mod runtime;
mod terminal;

use std::process::ExitCode;

use clap::Parser;

pub use runtime::{Runtime, SystemInfo};

/// The `zoo` binary: commands that run models are handed to `zoo-torch`.
pub fn main() -> ExitCode {
    run(None)
}

/// A binary with a model runtime linked in.
pub fn main_with_runtime(runtime: &dyn Runtime) -> ExitCode {
    run(Some(runtime))
}

fn run(runtime: Option<&dyn Runtime>) -> ExitCode {
    let cli = app::Cli::parse();
    init_logging();
    terminal::install_panic_hook();
    match commands::dispatch(cli, runtime) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            terminal::write_paragraph(&format!("error: {err:#}"));
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZOO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Log events carry names from manifests: each is escaped as one
        // paragraph (no colours, which would be escape sequences too).
        .with_writer(|| terminal::EscapingWriter(std::io::stderr()))
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .try_init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .is_some_and(|json| json.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}
