//! Tables for people, JSON for scripts, through one writer of stdout.
//!
//! [`Printer`] is the only way the CLI writes to stdout (`cargo xtask tidy`
//! fails on a `stdout()` anywhere else in `crates/cli/src`): every line it
//! prints for people has its control characters escaped, so escaping is
//! not left to each command; JSON is written as serde_json escapes it.

use std::borrow::Cow;
use std::io::Write;

use anyhow::Result;

use crate::terminal;

/// The one writer of the CLI's stdout.
pub(crate) struct Printer<W: Write = std::io::StdoutLock<'static>> {
    out: W,
}

impl Printer {
    /// A printer holding stdout's lock for as long as it lives.
    pub(crate) fn stdout() -> Self {
        Self {
            out: std::io::stdout().lock(),
        }
    }
}

impl<W: Write> Printer<W> {
    /// A printer writing to `out` (tests).
    #[cfg(test)]
    pub(crate) fn to(out: W) -> Self {
        Self { out }
    }

    /// One line for people, its control characters escaped
    /// ([`terminal::escape`]): a newline inside `text` prints as `\n`.
    pub(crate) fn line(&mut self, text: &str) -> Result<()> {
        writeln!(self.out, "{}", terminal::escape(text))?;
        Ok(())
    }

    /// `rows` under `headers`, aligned, cells escaped ([`table`]).
    pub(crate) fn table(&mut self, headers: &[&str], rows: &[Vec<String>]) -> Result<()> {
        table(&mut self.out, headers, rows)
    }

    /// `value` as pretty JSON.
    pub(crate) fn json(&mut self, value: &serde_json::Value) -> Result<()> {
        json(&mut self.out, value)
    }

    /// `value` as one line of JSON (JSON lines output).
    pub(crate) fn json_line(&mut self, value: &serde_json::Value) -> Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        writeln!(self.out)?;
        Ok(())
    }

    /// The writer, for the tests that read what was printed.
    #[cfg(test)]
    pub(crate) fn into_inner(self) -> W {
        self.out
    }
}

/// Prints `rows` under `headers` as left-aligned columns. Cells are shown
/// with control characters escaped ([`terminal::escape`]) and padded by hand:
/// `format!`'s width is limited to `u16::MAX` and panics beyond it, and a
/// manifest may hold a name of any length.
fn table(out: &mut impl Write, headers: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let rows: Vec<Vec<Cow<'_, str>>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| terminal::escape(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len().saturating_sub(1);
        let mut line = String::new();
        for (index, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if index != last {
                let pad = widths[index].saturating_sub(cell.chars().count()) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        line
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(AsRef::as_ref).collect()))?;
    }
    Ok(())
}

/// Prints `value` as pretty JSON.
fn json(out: &mut impl Write, value: &serde_json::Value) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outside text in a line cannot start a line of its own or move the
    /// cursor: the printer escapes it whatever the command wrote.
    #[test]
    fn printed_lines_are_escaped_and_json_is_as_serde_writes_it() {
        let mut printer = Printer::to(Vec::new());
        printer
            .line("name: evil\nzoo: fake line \u{1b}[2J")
            .unwrap();
        printer
            .json_line(&serde_json::json!({"prompt": "a\nb"}))
            .unwrap();
        let text = String::from_utf8(printer.into_inner()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.starts_with("name: evil\\nzoo: fake line \\u{1b}[2J\n"),
            "{text}"
        );
        assert!(text.ends_with("{\"prompt\":\"a\\nb\"}\n"), "{text}");
    }

    #[test]
    fn tables_align_columns() {
        let mut out = Vec::new();
        table(
            &mut out,
            &["NAME", "TAGS"],
            &[
                vec!["a".into(), "x,y".into()],
                vec!["longer".into(), "z".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME    TAGS\na       x,y\nlonger  z\n"
        );
    }

    /// `models list` with a 65,536-character name panicked in `format!`'s
    /// width; and names with newlines or escapes printed lines of their own.
    #[test]
    fn tables_take_huge_cells_and_escape_control_characters() {
        let huge = "m".repeat(70_000);
        let mut out = Vec::new();
        table(
            &mut out,
            &["NAME", "TAGS"],
            &[
                vec![huge.clone(), "x".into()],
                vec!["evil\nNAME  fake\u{1b}[2J".into(), "y".into()],
            ],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text:.200}");
        assert!(lines[1].starts_with(&huge) && lines[1].ends_with("  x"));
        assert_eq!(
            lines[2].trim_end_matches(" y").trim_end(),
            "evil\\nNAME  fake\\u{1b}[2J"
        );
        // Columns stay aligned: the second column starts after the widest cell.
        assert_eq!(lines[0].find("TAGS"), Some(70_002));
        assert_eq!(lines[1].rfind('x'), Some(70_002));
    }
}
