//! Command implementations: each turns arguments into library calls.

mod models;
mod system;

use anyhow::Result;

use crate::app::{Cli, Command};
use crate::runtime::{Runtime, hand_over};

pub(crate) fn dispatch(cli: Cli, runtime: Option<&dyn Runtime>) -> Result<()> {
    match cli.command {
        Command::System { json } => match runtime {
            Some(runtime) => system::run(runtime, json),
            None => hand_over(),
        },
        Command::Models(command) => models::run(command, cli.quiet),
    }
}
