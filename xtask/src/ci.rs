//! The CI gate: formatting, lints, every test, every benchmark in smoke mode.

use anyhow::Result;
use xshell::{Shell, cmd};

use crate::setup::{fiftyone_python, libtorch_env, test_python};

/// Formatting, lints with warnings as errors, then every test.
pub(crate) fn run(sh: &Shell) -> Result<()> {
    let _env = libtorch_env(sh)?;
    let _python = sh.push_env("ZOO_TEST_PYTHON", test_python(sh)?);
    let _fiftyone = sh.push_env("ZOO_TEST_FIFTYONE_PYTHON", fiftyone_python(sh)?);
    // The hosted torch tests run when a Python with torch is here (the
    // oracle venv); CI's own venvs have no torch, and they skip then.
    let _torch = crate::fixtures::torch_python(sh).map(|python| {
        eprintln!("xtask ci: hosted torch tests with {}", python.display());
        sh.push_env("ZOO_TEST_TORCH_PYTHON", python)
    });
    // Tests that need one of these fail in CI instead of skipping.
    let _ci = sh.push_env("ZOO_CI", "1");
    // Incremental caches double a build's size and a CI build is built once.
    let _incremental = sh.push_env("CARGO_INCREMENTAL", "0");
    let started = std::time::Instant::now();
    cmd!(sh, "cargo fmt --all -- --check").run()?;
    cmd!(
        sh,
        "cargo clippy --workspace --all-targets --locked -- -D warnings"
    )
    .run()?;
    cmd!(sh, "cargo test --workspace --locked").run()?;
    // Every benchmark on tiny inputs (no figures asserted), so none rots.
    crate::bench::run(sh, &["--smoke".to_owned()])?;
    eprintln!(
        "xtask ci: all checks passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
