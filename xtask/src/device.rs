//! `cargo xtask device-build`: zoo's binaries for the GPU machine.
//!
//! That machine has one NVIDIA GPU, PyTorch 2.11.0 (+cu130, with its CUDA
//! libraries) in a venv, no Rust toolchain and no network; a command there
//! runs in a copy of the working tree plus at most 64 MiB of named ignored
//! paths. So the binaries are built here, against the libtorch of the PyPI
//! `torch==2.11.0` wheel (cache variant [`Variant::Device`]: headers and
//! libraries, plus the CUDA runtime and CUPTI that `libtorch_cpu` links),
//! with the tch 0.26 zoo pins (made for 2.13) into `target/device`, and run there
//! against the venv's `torch/lib` through `LD_LIBRARY_PATH`. CUDA itself is
//! never linked: zoo `dlopen`s `libtorch_cuda.so` at start (see
//! `zoo_torch_backend::load_cuda`), which finds cuDNN and cuBLAS through
//! the wheel's own `$ORIGIN` rpath.
//!
//! tch 0.26 against 2.11: its version check is bypassed
//! (`LIBTORCH_BYPASS_VERSION_CHECK`), and its generated C++ shim calls 14
//! operators 2.11 does not have and one with an argument 2.11 lacks (RNG
//! keys, Lanczos resampling, flash and MPS attention); so the shim is
//! compiled with `xtask/device/tch_2_11_compat.h` forced in (`CXXFLAGS`),
//! which declares those as functions that throw. zoo calls none of them;
//! everything else, and all of zoo, is the code that ships. (tch 0.24 is
//! the release made for 2.11, but building with it would need a second
//! `Cargo.toml` and lock file for one build, and would test other code.)
//!
//! The bundle, one ignored folder to carry:
//!
//! ```text
//! target/device/bundle/
//! ├── zoo-torch          the CLI with the libtorch runtime (every command)
//! ├── it                 torch-backend's parity tests (ZOO_TEST_DEVICE)
//! ├── device_probe       torch-backend example: model-only rate, logits
//! ├── fixtures/          the parity fixtures (ZOO_TEST_FIXTURES)
//! └── build-info.json    versions and commit
//! ```
//!
//! `xtask/device/gpu_check.sh` (tracked, so it is in the copy) runs it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use xshell::{Shell, cmd};

use crate::libtorch::{self, Variant};

/// What a run may carry, all paths together.
const CARRY_LIMIT_BYTES: u64 = 64 << 20;
/// Where the device build goes, under the workspace root.
const TARGET: &str = "target/device";
/// Forced into tch's C++ shim, under the workspace root.
const COMPAT_HEADER: &str = "xtask/device/tch_2_11_compat.h";
/// The bundle, under the workspace root.
pub(crate) const BUNDLE: &str = "target/device/bundle";

/// The binaries to bundle: (cargo target kind, target name, file name in
/// the bundle).
const ARTEFACTS: [(&str, &str, &str); 3] = [
    ("bin", "zoo-torch", "zoo-torch"),
    ("test", "it", "it"),
    ("example", "device_probe", "device_probe"),
];

/// Builds, strips and bundles; with `--check`, also runs the bundled
/// parity tests here on the CPU against libtorch 2.11.
pub(crate) fn run(sh: &Shell, args: &[String]) -> Result<()> {
    let check = args.iter().any(|arg| arg == "--check");
    if let Some(unknown) = args.iter().find(|arg| *arg != "--check") {
        bail!("unknown argument `{unknown}`; device-build takes only `--check`");
    }
    let install = libtorch::ensure(sh, Variant::Device)?;
    let root = sh.current_dir();
    let executables = build(sh, &install.libtorch())?;
    let bundle = root.join(BUNDLE);
    if bundle.exists() {
        fs_err::remove_dir_all(&bundle)?;
    }
    fs_err::create_dir_all(&bundle)?;
    for (_, name, file) in ARTEFACTS {
        let built = executables
            .iter()
            .find(|(target, _)| target == name)
            .map(|(_, path)| path)
            .with_context(|| format!("cargo built no `{name}`"))?;
        let bundled = bundle.join(file);
        fs_err::copy(built, &bundled)?;
        cmd!(sh, "strip --strip-all {bundled}")
            .run()
            .context("strip failed (binutils)")?;
    }
    copy_dir(
        &root.join("crates/torch-backend/tests/fixtures"),
        &bundle.join("fixtures"),
    )?;
    let commit = cmd!(sh, "git rev-parse HEAD")
        .read()
        .unwrap_or_else(|_| "unknown".into());
    let dirty = !cmd!(sh, "git status --porcelain --untracked-files=no")
        .read()
        .unwrap_or_default()
        .is_empty();
    let info = json!({
        "torch": libtorch::DEVICE_TORCH_VERSION,
        "tch": "0.26 (LIBTORCH_BYPASS_VERSION_CHECK=1)",
        "tch_shim": format!("compiled with {COMPAT_HEADER} forced in"),
        "commit": commit,
        "dirty": dirty,
        "profile": "release, stripped",
    });
    fs_err::write(
        bundle.join("build-info.json"),
        serde_json::to_string_pretty(&info)? + "\n",
    )?;

    let loader = install.libtorch().join("lib");
    let _loader = sh.push_env("LD_LIBRARY_PATH", &loader);
    let zoo_torch = bundle.join("zoo-torch");
    let linked = cmd!(sh, "ldd {zoo_torch}").read()?;
    let missing: Vec<&str> = linked
        .lines()
        .filter(|line| line.contains("not found"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "zoo-torch has unresolved libraries with LD_LIBRARY_PATH={}:\n{}",
            loader.display(),
            missing.join("\n")
        );
    }
    let system = cmd!(sh, "{zoo_torch} system --json").read()?;
    println!("smoke: `zoo-torch system --json` against libtorch 2.11 here: {system}");
    if check {
        let fixtures = bundle.join("fixtures");
        let _fixtures = sh.push_env("ZOO_TEST_FIXTURES", &fixtures);
        let it = bundle.join("it");
        cmd!(sh, "{it} --test-threads=1")
            .run()
            .context("the bundled parity tests failed on the CPU")?;
    }

    let size = dir_size(&bundle)?;
    println!("bundle: {} ({:.1} MiB)", bundle.display(), mib(size));
    for entry in fs_err::read_dir(&bundle)? {
        let entry = entry?;
        let bytes = dir_size(&entry.path())?;
        println!(
            "  {:<16} {:>7.1} MiB",
            entry.file_name().to_string_lossy(),
            mib(bytes)
        );
    }
    if size > CARRY_LIMIT_BYTES {
        bail!(
            "the bundle is {:.1} MiB, over the {} MiB a run may carry",
            mib(size),
            CARRY_LIMIT_BYTES >> 20
        );
    }
    println!("on the GPU machine (the `run` tool; gpu_check.py keeps to a 510 s budget):");
    println!("  carry:     [\"{BUNDLE}\"]");
    println!("  command:   bash xtask/device/gpu_check.sh {BUNDLE}");
    println!("  timeout_s: 600");
    Ok(())
}

/// Builds the three artefacts in release mode against `libtorch`, into
/// [`TARGET`]; returns (target name, executable) pairs.
fn build(sh: &Shell, libtorch: &Path) -> Result<Vec<(String, PathBuf)>> {
    let _env = [
        sh.push_env("LIBTORCH", libtorch),
        // tch 0.26 expects 2.13; the API zoo uses compiles against 2.11.
        sh.push_env("LIBTORCH_BYPASS_VERSION_CHECK", "1"),
        sh.push_env("CARGO_TARGET_DIR", sh.current_dir().join(TARGET)),
        // Symbols stripped afterwards; no debug info to build.
        sh.push_env("CARGO_PROFILE_RELEASE_DEBUG", "false"),
        // The shim's operators that 2.11 lacks (see the module docs); only
        // torch-sys compiles C++ in this build.
        sh.push_env(
            "CXXFLAGS",
            format!(
                "-include {}",
                sh.current_dir().join(COMPAT_HEADER).display()
            ),
        ),
    ];
    let json = "--message-format=json-render-diagnostics";
    let mut messages = cmd!(
        sh,
        "cargo build --release --locked {json} -p zoo-cli --bin zoo-torch -p zoo-torch-backend --example device_probe"
    )
    .read()
    .context("building zoo-torch and device_probe against libtorch 2.11 failed")?;
    messages.push('\n');
    messages.push_str(
        &cmd!(
            sh,
            "cargo test --release --locked --no-run {json} -p zoo-torch-backend --test it"
        )
        .read()
        .context("building the parity tests against libtorch 2.11 failed")?,
    );
    Ok(executables(&messages))
}

/// The (target name, executable) of every artefact in cargo's JSON
/// messages.
fn executables(messages: &str) -> Vec<(String, PathBuf)> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter_map(|message| {
            let name = message["target"]["name"].as_str()?.to_owned();
            let executable = message["executable"].as_str()?;
            Some((name, PathBuf::from(executable)))
        })
        .filter(|(name, _)| ARTEFACTS.iter().any(|(_, wanted, _)| wanted == name))
        .collect()
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs_err::create_dir_all(to)?;
    for entry in fs_err::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs_err::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn dir_size(path: &Path) -> Result<u64> {
    let metadata = fs_err::metadata(path)?;
    if !metadata.is_dir() {
        return Ok(metadata.len());
    }
    let mut total = 0;
    for entry in fs_err::read_dir(path)? {
        total += dir_size(&entry?.path())?;
    }
    Ok(total)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_come_from_compiler_artifact_messages() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"name":"zoo-torch","kind":["bin"]},"executable":"/t/release/zoo-torch"}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"zoo_cli","kind":["lib"]},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"zoo","kind":["bin"]},"executable":"/t/release/zoo"}"#,
            r#"{"reason":"build-finished","success":true}"#,
            "not json",
            r#"{"reason":"compiler-artifact","target":{"name":"it","kind":["test"]},"executable":"/t/release/deps/it-0123"}"#,
        ]
        .join("\n");
        assert_eq!(
            executables(&messages),
            vec![
                (
                    "zoo-torch".to_owned(),
                    PathBuf::from("/t/release/zoo-torch")
                ),
                ("it".to_owned(), PathBuf::from("/t/release/deps/it-0123")),
            ]
        );
    }
}
