//! `cargo xtask bench`: benchmarks that print figures and ratios measured in
//! one run. Never timed assertions.

use anyhow::{Result, bail};
use xshell::{Shell, cmd};

use crate::ci;

/// Runs the benchmarks named in `args` (all when none).
pub(crate) fn run(sh: &Shell, args: &[String]) -> Result<()> {
    let known = ["list", "download", "apply"];
    let selected: Vec<&str> = if args.is_empty() {
        known.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    let zoo = ci::build_release(sh)?;
    let _env = ci::libtorch_env(sh)?;
    for name in selected {
        match name {
            "list" => {
                cmd!(
                    sh,
                    "cargo run --quiet --release --locked -p zoo-cli --example bench_list -- {zoo}"
                )
                .run()?;
            }
            "download" => {
                cmd!(sh, "cargo run --quiet --release --locked -p zoo-cli --example bench_download -- {zoo}").run()?;
            }
            "apply" => {
                // The fixtures venv has torch: use it for the eager column.
                let oracle = dirs::cache_dir().map(|dir| dir.join("zoo/oracle-venv/bin/python"));
                let _python = oracle
                    .filter(|python| {
                        python.exists() && std::env::var_os("ZOO_BENCH_PYTHON").is_none()
                    })
                    .map(|python| sh.push_env("ZOO_BENCH_PYTHON", python));
                cmd!(
                    sh,
                    "cargo run --quiet --release --locked -p zoo-cli --example bench_apply -- {zoo}"
                )
                .run()?;
            }
            other => bail!("unknown benchmark `{other}`; known: {}", known.join(", ")),
        }
    }
    Ok(())
}
