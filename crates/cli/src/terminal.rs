//! Text that reaches the terminal: what manifests, servers, hooks and file
//! names say is shown with its control characters escaped, so a model name
//! cannot move the cursor, recolour the screen or print a line of its own.
//!
//! Two forms: [`escape`] for one value in a table or a line (every control
//! character, newlines included, becomes `\n`, `\u{1b}`, ...), and
//! [`paragraph`] for messages zoo writes to stderr, which may span lines
//! (hook stderr in an error): control characters other than `\n` are
//! escaped, and every line after the first is indented with `  | `, so no
//! text can start a line of its own that looks like zoo's.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

/// Whether `character` must not reach a terminal raw: C0 and C1 controls,
/// DEL, and the Unicode bidirectional overrides and isolates (which reorder
/// how the rest of a line is shown).
fn is_unsafe(character: char) -> bool {
    character.is_control()
        || matches!(character, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_escaped(out: &mut String, character: char) {
    match character {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        other => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(other));
        }
    }
}

/// `text` with every control character (newlines included) written as an
/// escape: `a\nb` becomes the four characters `a\nb`.
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        if is_unsafe(character) {
            push_escaped(&mut out, character);
        } else {
            out.push(character);
        }
    }
    Cow::Owned(out)
}

/// A message for stderr: control characters other than `\n` escaped, a final
/// newline dropped, and every further line indented with `  | `.
pub(crate) fn paragraph(text: &str) -> String {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let mut out = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        if character == '\n' {
            out.push_str("\n  | ");
        } else if is_unsafe(character) {
            push_escaped(&mut out, character);
        } else {
            out.push(character);
        }
    }
    out
}

/// Writes `text` to stderr as one [`paragraph`].
pub(crate) fn write_paragraph(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{}", paragraph(text));
}

/// `eprintln!` for messages that may carry outside text: goes through
/// [`paragraph`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::terminal::write_paragraph(&format!($($arg)*))
    };
}
pub(crate) use say;

/// Replaces Rust's panic message (a raw `thread ... panicked at` line with
/// whatever text the panic carried) with one escaped paragraph. The engine
/// turns a panic inside a batch into that batch's failures, so the run may
/// go on after this is printed; a panic anywhere else still ends the process
/// with this message, never a backtrace.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        write_paragraph(&panic_message(info));
    }));
}

fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    let place = info
        .location()
        .map(|location| format!(" at {}:{}", location.file(), location.line()))
        .unwrap_or_default();
    format!("internal error (a bug in zoo; please report it): {message}{place}")
}

/// A writer for log events that passes each write through [`paragraph`].
/// `tracing`'s formatter writes one event per call, so an event is one
/// paragraph.
pub(crate) struct EscapingWriter<W>(pub(crate) W);

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let ends_line = text.ends_with('\n');
        let mut out = paragraph(&text);
        if ends_line {
            out.push('\n');
        }
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_writes_control_characters_as_escapes() {
        let cases = [
            ("plain-name@1.0", "plain-name@1.0"),
            ("a\nb", "a\\nb"),
            ("\u{1b}[2J\u{1b}[31mred", "\\u{1b}[2J\\u{1b}[31mred"),
            ("tab\there\r", "tab\\there\\r"),
            ("nul\0del\u{7f}c1\u{9b}", "nul\\u{0}del\\u{7f}c1\\u{9b}"),
            ("bidi\u{202e}txt", "bidi\\u{202e}txt"),
            ("ünïcödé 模型", "ünïcödé 模型"),
        ];
        for (input, expected) in cases {
            assert_eq!(escape(input), expected, "{input:?}");
        }
    }

    #[test]
    fn paragraphs_indent_their_further_lines() {
        assert_eq!(paragraph("one line\n"), "one line");
        assert_eq!(
            paragraph("error: hook failed\nTraceback\n\u{1b}[1mboom"),
            "error: hook failed\n  | Traceback\n  | \\u{1b}[1mboom"
        );
        // No line of the output starts at column 0 but the first.
        let forged = paragraph("name\nerror: fake\rwarning: fake");
        assert!(
            forged.lines().skip(1).all(|line| line.starts_with("  | ")),
            "{forged}"
        );
        assert!(!forged.contains('\r'));
    }

    #[test]
    fn the_escaping_writer_keeps_one_event_per_line() {
        let mut out = Vec::new();
        let mut writer = EscapingWriter(&mut out);
        writer
            .write_all(b"WARN skipped model `a\nWARN forged`\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "WARN skipped model `a\n  | WARN forged`\n"
        );
    }

    #[test]
    fn panic_messages_are_one_escaped_paragraph() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = seen.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            *sink.lock().unwrap() = paragraph(&panic_message(info));
        }));
        let _ = std::panic::catch_unwind(|| {
            std::panic::panic_any(String::from("bad \u{1b}[2J\nforged line"));
        });
        std::panic::set_hook(previous);
        let text = seen.lock().unwrap().clone();
        assert!(text.starts_with("internal error (a bug in zoo"), "{text}");
        assert!(
            text.contains("bad \\u{1b}[2J\n  | forged line at "),
            "{text}"
        );
        assert!(!text.contains("panicked"), "{text}");
    }
}
