//! Command implementations: each turns arguments into library calls.

mod apply;
mod bundle;
mod datasets;
mod lock;
mod models;
mod scale;

mod system;

use anyhow::Result;

use crate::app::{BundleCommand, Cli, Command, ModelsCommand};
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
            with_golden,
            tolerance,
            json,
        } => {
            let golden = with_golden.then_some(tolerance);
            match (golden, runtime) {
                (Some(_), None) => hand_over(),
                _ => lock::run(&models, fresh, golden, runtime, json, cli.quiet),
            }
        }
        Command::Models(ModelsCommand::Verify {
            name,
            tolerance,
            json,
        }) => match runtime {
            Some(runtime) => lock::verify(&name, tolerance, runtime, json, cli.quiet),
            None => hand_over(),
        },
        Command::Bundle(BundleCommand::Install {
            no_verify: false, ..
        }) if runtime.is_none() => hand_over(),
        Command::Bundle(command) => bundle::run(command, runtime, cli.quiet),
        Command::Models(command) => models::run(command, cli.quiet),
        Command::Datasets(command) => datasets::run(command),
    }
}
