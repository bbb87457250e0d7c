//! The CLI reference (`docs/cli.md`), rendered from clap's own definition of
//! every command, so the document cannot drift from the binary: the test
//! below fails when it does, and `cargo xtask cli-reference` rewrites it.

use clap::CommandFactory;

use crate::app::Cli;

/// Markdown for every command and subcommand: its path as a heading and its
/// long help (usage, arguments, options) as text.
pub(crate) fn render() -> String {
    let mut out = String::from(
        "# CLI reference\n\n\
         Generated from the `zoo` binary's own argument definitions by \
         `cargo xtask cli-reference`; a test fails when this page and the \
         binary disagree.\n",
    );
    let mut root = Cli::command().term_width(100);
    root.build();
    walk(&mut root, "", &mut out);
    out
}

fn walk(command: &mut clap::Command, parent: &str, out: &mut String) {
    let path = if parent.is_empty() {
        command.get_name().to_owned()
    } else {
        format!("{parent} {}", command.get_name())
    };
    let help = command.render_long_help().to_string();
    out.push_str(&format!(
        "\n## `{path}`\n\n```text\n{}\n```\n",
        help.trim_end()
    ));
    for sub in command.get_subcommands_mut() {
        if sub.get_name() != "help" {
            walk(sub, &path, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// `docs/cli.md` is what the binary says; `ZOO_BLESS=1` rewrites it
    /// (`cargo xtask cli-reference`).
    #[test]
    fn cli_reference_in_docs_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli.md");
        let rendered = super::render();
        if std::env::var_os("ZOO_BLESS").is_some() {
            fs_err::write(&path, &rendered).unwrap();
            return;
        }
        let committed = fs_err::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == rendered,
            "docs/cli.md differs from the binary's commands: run `cargo xtask cli-reference`"
        );
    }

    #[test]
    fn every_command_is_in_the_reference() {
        let rendered = super::render();
        for command in [
            "## `zoo models apply`",
            "## `zoo datasets merge-results`",
            "## `zoo system`",
        ] {
            assert!(rendered.contains(command), "{command} missing");
        }
    }
}
