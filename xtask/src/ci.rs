//! The CI gate and cargo invocations with libtorch configured.

use anyhow::Result;
use xshell::{Shell, cmd};

use crate::libtorch;

/// Formatting, lints with warnings as errors, then every test.
pub(crate) fn run(sh: &Shell) -> Result<()> {
    let install = libtorch::ensure_default(sh)?;
    let _env: Vec<_> = install
        .env()
        .into_iter()
        .map(|(key, value)| sh.push_env(key, value))
        .collect();
    let started = std::time::Instant::now();
    cmd!(sh, "cargo fmt --all -- --check").run()?;
    cmd!(
        sh,
        "cargo clippy --workspace --all-targets --locked -- -D warnings"
    )
    .run()?;
    cmd!(sh, "cargo test --workspace --locked").run()?;
    eprintln!(
        "xtask ci: all checks passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `cargo <subcommand> --workspace <args>` with libtorch set up.
pub(crate) fn cargo_with_libtorch(sh: &Shell, subcommand: &str, args: &[String]) -> Result<()> {
    let install = libtorch::ensure_default(sh)?;
    let _env: Vec<_> = install
        .env()
        .into_iter()
        .map(|(key, value)| sh.push_env(key, value))
        .collect();
    let workspace: &[&str] = if args.iter().any(|arg| arg == "-p" || arg == "--package") {
        &[]
    } else {
        &["--workspace"]
    };
    cmd!(sh, "cargo {subcommand} {workspace...} {args...}").run()?;
    Ok(())
}

/// Builds the `zoo` binary (release) and runs it with `args`.
pub(crate) fn run_zoo(sh: &Shell, args: &[String]) -> Result<()> {
    let install = libtorch::ensure_default(sh)?;
    let _env: Vec<_> = install
        .env()
        .into_iter()
        .map(|(key, value)| sh.push_env(key, value))
        .collect();
    cmd!(
        sh,
        "cargo run --quiet --release --package zoo-cli -- {args...}"
    )
    .run()?;
    Ok(())
}
