//! `zoo system`.

use crate::output;
use crate::runtime::Runtime;
use anyhow::Result;

pub(crate) fn run(runtime: &dyn Runtime, json: bool) -> Result<()> {
    let info = runtime.system_info();
    let mut out = output::Printer::stdout();
    if json {
        return out.json(&serde_json::json!({
            "zoo_version": env!("CARGO_PKG_VERSION"),
            "cuda_available": info.cuda_available,
            "cuda_devices": info.cuda_devices,
            "cudnn_available": info.cudnn_available,
            "threads": info.threads,
            "mkl": info.mkl,
        }));
    }
    out.line(&format!("zoo {}", env!("CARGO_PKG_VERSION")))?;
    out.line(&format!(
        "cuda: {} ({} device(s), cudnn: {})",
        yes_no(info.cuda_available),
        info.cuda_devices,
        yes_no(info.cudnn_available)
    ))?;
    out.line(&format!("threads: {}", info.threads))?;
    out.line(&format!("mkl: {}", yes_no(info.mkl)))?;
    Ok(())
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}
