//! Command implementations: each turns arguments into library calls.

mod apply;
mod bundle;
mod datasets;
mod lock;
mod models;
mod scale;

mod system;

use anyhow::Result;

use crate::app::{Cli, Command, ModelsCommand};
use crate::runtime::{Runtime, hand_over};

pub(crate) fn dispatch(cli: Cli, runtime: Option<&dyn Runtime>) -> Result<()> {
    match cli.command {
        Command::System { json } => match runtime {
            Some(runtime) => system::run(runtime, json),
            None => hand_over(),
        },
        Command::Models(ModelsCommand::Apply(args)) => match runtime {
            Some(runtime) => apply::apply(&args, runtime, cli.quiet),
            None => hand_over(),
        },
        Command::Models(ModelsCommand::Embed(args)) => match runtime {
            Some(runtime) => apply::embed(&args, runtime, cli.quiet),
            None => hand_over(),
        },
        Command::Models(ModelsCommand::EmbedText(args)) => match runtime {
            Some(runtime) => apply::embed_text(&args, runtime, cli.quiet),
            None => hand_over(),
        },
        Command::Lock {
            models,
            fresh,
            json,
        } => lock::run(&models, fresh, json, cli.quiet),
        Command::Bundle(command) => bundle::run(command, cli.quiet),
        Command::Models(command) => models::run(command, cli.quiet),
        Command::Datasets(command) => datasets::run(command),
    }
}
