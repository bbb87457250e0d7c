//! The command-line grammar (SPEC section 9).

use clap::{Parser, Subcommand};

/// A Rust model zoo compatible with FiftyOne's.
#[derive(Debug, Parser)]
#[command(name = "zoo", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show what this build of zoo can use: libtorch, CUDA, threads.
    System {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}
