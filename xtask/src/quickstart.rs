//! The README's main job: set up libtorch, build zoo, and apply the built-in
//! resnet18 to real photos through the registry.
//!
//! The photos are scikit-image's sample data: the `scikit-image` wheel is
//! fetched from PyPI (never installed) and its `skimage/data` pictures are
//! unpacked into the cache. Nothing is committed and nothing comes from the
//! wider internet.

use anyhow::{Context, Result};
use xshell::{Shell, cmd};

use crate::setup;

/// Builds release binaries, fetches photos, and runs the quickstart example.
pub(crate) fn run(sh: &Shell) -> Result<()> {
    let zoo = setup::build_release(sh)?;
    let cache = dirs::cache_dir()
        .context("no user cache directory")?
        .join("zoo")
        .join("quickstart");
    let photos = cache.join("photos");
    if !photos.is_dir() {
        let wheels = cache.join("wheels");
        cmd!(sh, "python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: scikit-image==0.25.2 -d {wheels}")
            .run()
            .context("fetching scikit-image's sample photos from PyPI failed")?;
        let script = "import sys, zipfile, pathlib\nout = pathlib.Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)\nfor wheel in pathlib.Path(sys.argv[1]).glob('scikit_image-*.whl'):\n    z = zipfile.ZipFile(wheel)\n    for name in z.namelist():\n        if name.startswith('skimage/data/') and name.endswith(('.png', '.jpg')) and z.getinfo(name).file_size > 30000:\n            (out / pathlib.Path(name).name).write_bytes(z.read(name))\n";
        cmd!(sh, "python3 -c {script} {wheels} {photos}").run()?;
    }
    let _env = setup::libtorch_env(sh)?;
    let work = cache.join("run");
    cmd!(sh, "cargo run --quiet --release --locked -p zoo-cli --example quickstart -- {zoo} {photos} {work}").run()?;
    Ok(())
}
