//! The model runtime, and the hand-over from `zoo` to `zoo-torch`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

pub use zoo::{Runtime, SystemInfo};

/// The runtime binary: `ZOO_TORCH_BIN`, else `zoo-torch` beside this one.
fn runtime_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ZOO_TORCH_BIN").filter(|path| !path.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("cannot locate the running `zoo` binary")?;
    Ok(exe.with_file_name(format!("zoo-torch{}", std::env::consts::EXE_SUFFIX)))
}

/// Replaces this process with `zoo-torch` and the same arguments.
pub(crate) fn hand_over() -> Result<()> {
    let binary = runtime_binary()?;
    if !binary.is_file() {
        bail!(
            "this command runs models, which needs the libtorch runtime `{}`; it is missing: build both binaries with `cargo xtask build --release` (or set `ZOO_TORCH_BIN`)",
            binary.display()
        );
    }
    let mut command = std::process::Command::new(&binary);
    command.args(std::env::args_os().skip(1));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = command.exec();
        Err(err).with_context(|| format!("cannot start `{}`", binary.display()))
    }
    #[cfg(not(unix))]
    {
        let status = command
            .status()
            .with_context(|| format!("cannot start `{}`", binary.display()))?;
        std::process::exit(status.code().unwrap_or(1));
    }
}

#[cfg(test)]
mod tests {
    /// `zoo models info` (in `zoo`, which does not link libtorch) calls a
    /// config `native` when the registry's `NATIVE_TYPES` holds its type:
    /// exactly the types the torch backend registers.
    #[test]
    fn the_registrys_native_types_are_the_ones_the_torch_backend_builds() {
        let mut factory = zoo_model_core::ModelFactory::default();
        zoo_torch_backend::register(&mut factory);
        let mut built = factory.types();
        built.sort_unstable();
        let mut native = zoo_registry::NATIVE_TYPES.to_vec();
        native.sort_unstable();
        assert_eq!(built, native);
    }
}
