//! Commands printed for a person to paste into a shell.

use std::fmt::Write as _;

/// `words` quoted for a POSIX shell, so that a command printed for the user
/// to paste runs exactly those words whatever they contain.
pub fn shell_words<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    words
        .into_iter()
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One word quoted for a POSIX shell: left bare when it holds only safe
/// characters, otherwise in single quotes with each `'` written as `'\''`.
/// Control characters are escaped first (they cannot be pasted faithfully
/// anyway).
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word.chars().all(|character| {
            character.is_ascii_alphanumeric()
                || matches!(
                    character,
                    '-' | '_' | '.' | '/' | ',' | ':' | '=' | '+' | '@' | '%'
                )
        });
    if safe {
        return word.to_owned();
    }
    let word = escape_controls(word);
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `word` with control characters (and the Unicode bidirectional controls)
/// written as escapes, so a printed command cannot redraw the terminal.
fn escape_controls(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for character in word.chars() {
        match character {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            other
                if other.is_control()
                    || matches!(other, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(other));
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes_and_metacharacters() {
        assert_eq!(shell_quote("torch>=2.0"), "'torch>=2.0'");
        assert_eq!(shell_quote("numpy"), "numpy");
        assert_eq!(
            shell_quote("a'; rm -rf ~; echo '"),
            r"'a'\''; rm -rf ~; echo '\'''"
        );
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("x\ny"), "'x\\ny'");
        assert_eq!(
            shell_words(["python3", "-m", "pip", "install", "it's"]),
            r"python3 -m pip install 'it'\''s'"
        );
    }

    /// The quoting is checked by a real shell: `sh` receives exactly the
    /// words that were quoted.
    #[test]
    fn sh_reads_back_the_quoted_words() {
        let words = [
            "plain",
            "with space",
            "it's",
            "$(touch /tmp/zoo-pwned)",
            "`id`",
            "a\"b",
            "back\\slash",
            "semi;colon|pipe&amp",
            "*glob?",
            "",
        ];
        let script = format!("printf '%s\\0' {}", shell_words(words));
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        let printed: Vec<String> = output
            .stdout
            .split(|byte| *byte == 0)
            .map(|word| String::from_utf8_lossy(word).into_owned())
            .collect();
        let mut expected: Vec<String> = words.iter().map(|word| (*word).to_owned()).collect();
        expected.push(String::new()); // after the last NUL
        assert_eq!(printed, expected, "{script}");
    }
}
