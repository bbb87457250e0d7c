//! The README's main job: set up libtorch, build zoo, and run it.

use anyhow::Result;
use xshell::Shell;

use crate::ci;

/// Builds the release `zoo` and shows what it can run on.
pub(crate) fn run(sh: &Shell) -> Result<()> {
    ci::run_zoo(sh, &["system".to_owned()])
}
