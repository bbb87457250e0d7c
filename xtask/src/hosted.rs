//! `cargo xtask hosted-torch-check`: the model host's end-to-end tests
//! with torch models (`tests/e2e/hosted_torch.rs`), which need torch,
//! torchvision and FiftyOne 1.22.1 in the host's Python: the oracle venv
//! (`<user cache>/zoo/oracle-venv`, about 5 GB; installed when missing).
//! CI's FiftyOne venv has no torch, so `cargo xtask ci` runs these tests
//! only when the oracle venv is already there (`fixtures::torch_python`).

use anyhow::Result;
use xshell::{Shell, cmd};

use crate::fixtures;
use crate::setup;

/// Installs the oracle venv if needed, then runs the hosted torch tests
/// (and the `--workers` test beside them) with `ZOO_TEST_TORCH_PYTHON` set
/// to it; `args` go to the test binary (e.g. a name filter).
pub(crate) fn check(sh: &Shell, args: &[String]) -> Result<()> {
    let python = match fixtures::torch_python(sh) {
        Some(python) => python,
        None => {
            let python = fixtures::python(sh)?;
            fixtures::ensure_fiftyone(sh, &python)?;
            python
        }
    };
    let _env = setup::libtorch_env(sh)?;
    let _torch = sh.push_env("ZOO_TEST_TORCH_PYTHON", &python);
    // The `--workers` test beside them needs FiftyOne only: the oracle
    // venv has it, unless the caller named another.
    let _fiftyone = std::env::var_os("ZOO_TEST_FIFTYONE_PYTHON")
        .is_none()
        .then(|| sh.push_env("ZOO_TEST_FIFTYONE_PYTHON", &python));
    let filter: Vec<String> = if args.is_empty() {
        vec!["hosted_torch::".to_owned()]
    } else {
        args.to_vec()
    };
    cmd!(
        sh,
        "cargo test --locked -p zoo-cli --test e2e -- {filter...}"
    )
    .run()?;
    Ok(())
}
