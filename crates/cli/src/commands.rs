//! Command implementations.

use std::io::Write;

use anyhow::Result;
use zoo_torch_backend::RuntimeInfo;

use crate::app::{Cli, Command};

pub(crate) fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::System { json } => system(json),
    }
}

fn system(json: bool) -> Result<()> {
    let info = RuntimeInfo::detect();
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "zoo_version": env!("CARGO_PKG_VERSION"),
            "cuda_available": info.cuda_available,
            "cuda_devices": info.cuda_devices,
            "cudnn_available": info.cudnn_available,
            "threads": info.threads,
            "mkl": info.mkl,
        });
        writeln!(out, "{value:#}")?;
    } else {
        writeln!(out, "zoo {}", env!("CARGO_PKG_VERSION"))?;
        writeln!(
            out,
            "cuda: {} ({} device(s), cudnn: {})",
            yes_no(info.cuda_available),
            info.cuda_devices,
            yes_no(info.cudnn_available)
        )?;
        writeln!(out, "threads: {}", info.threads)?;
        writeln!(out, "mkl: {}", yes_no(info.mkl))?;
    }
    Ok(())
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}
