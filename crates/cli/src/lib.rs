//! The `zoo` command line: parses arguments, calls the library crates, and
//! prints tables for people or JSON for scripts.
//!
//! Errors are printed once, as a chain (`what failed: why: cause`), with a
//! non-zero exit code; a closed stdout pipe counts as success.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod app;
mod commands;

use std::process::ExitCode;

use clap::Parser;

/// Parses the process arguments, runs the command, and reports errors.
pub fn main() -> ExitCode {
    let cli = app::Cli::parse();
    match commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
