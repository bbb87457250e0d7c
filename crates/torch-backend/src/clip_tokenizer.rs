//! CLIP's byte-level BPE tokenizer, as FiftyOne's vendored
//! `fiftyone/utils/clip/tokenizer.py` (OpenAI's `SimpleTokenizer`) encodes
//! text, from the same vocabulary file (`bpe_simple_vocab_16e6.txt.gz`).
//!
//! Text is cleaned as `basic_clean` does: `ftfy.fix_text` (by the
//! `plsfix` crate, a Rust port of ftfy: mojibake repair, HTML entities,
//! quotes, ligatures, fullwidth forms, control characters, NFC), then
//! `html.unescape` twice (Python's algorithm and HTML5's entity table),
//! then `strip()`. Then whitespace runs become one space, the text is
//! lower-cased and split by OpenAI's pattern, each piece's UTF-8 bytes are
//! mapped to printable characters and merged by rank.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// The most bytes the decompressed vocabulary may have (OpenAI's is
/// 1.6 MB).
const MAX_VOCABULARY_BYTES: u64 = 64 << 20;

/// The merges `SimpleTokenizer` reads: lines `1 .. 49152 - 256 - 2 + 1`.
const MERGES: usize = 49152 - 256 - 2;

/// Why a vocabulary could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// The file could not be read or decompressed.
    #[error("cannot read the CLIP vocabulary `{path}`")]
    Read {
        /// The vocabulary file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a BPE merges list.
    #[error("the CLIP vocabulary `{path}` is invalid: {reason}")]
    Invalid {
        /// The vocabulary file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// CLIP's tokenizer: the encoder and the merge ranks.
pub struct ClipTokenizer {
    encoder: HashMap<String, i64>,
    ranks: HashMap<(String, String), usize>,
    byte_chars: [char; 256],
    pattern: regex::Regex,
    whitespace: regex::Regex,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocabulary", &self.encoder.len())
            .finish()
    }
}

/// `bytes_to_unicode`: printable bytes map to themselves, the others to
/// `256 + n` in byte order.
fn bytes_to_unicode() -> [char; 256] {
    let printable = |byte: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&byte)
            || (0xA1..=0xAC).contains(&byte)
            || (0xAE..=0xFF).contains(&byte)
    };
    let mut chars = ['\0'; 256];
    let mut next = 0;
    for (byte, slot) in chars.iter_mut().enumerate() {
        let byte = byte as u32;
        let code = if printable(byte) {
            byte
        } else {
            next += 1;
            255 + next
        };
        *slot = char::from_u32(code).unwrap_or('\u{FFFD}');
    }
    chars
}

impl ClipTokenizer {
    /// Reads a gzipped merges file (`bpe_simple_vocab_16e6.txt.gz`).
    pub fn from_gz(path: &Path) -> Result<ClipTokenizer, TokenizerError> {
        let read = |source| TokenizerError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = fs_err::File::open(path).map_err(read)?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(file)
            .take(MAX_VOCABULARY_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read)?;
        if text.len() as u64 > MAX_VOCABULARY_BYTES {
            return Err(TokenizerError::Invalid {
                path: path.to_path_buf(),
                reason: format!("it decompresses beyond {MAX_VOCABULARY_BYTES} bytes"),
            });
        }
        Self::from_merges(&text).map_err(|reason| TokenizerError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The tokenizer of a merges file's text.
    fn from_merges(text: &str) -> Result<ClipTokenizer, String> {
        let byte_chars = bytes_to_unicode();
        let lines: Vec<&str> = text.split('\n').collect();
        let end = lines.len().min(MERGES + 1);
        let merges: Vec<(String, String)> = lines
            .get(1..end)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(index, line)| {
                let mut parts = line.split_whitespace();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(first), Some(second), None) => Ok((first.to_owned(), second.to_owned())),
                    _ => Err(format!(
                        "line {} is `{line}`, not a merge of two symbols",
                        index + 2
                    )),
                }
            })
            .collect::<Result<_, _>>()?;
        // `bytes_to_unicode().values()` in the dict's insertion order: the
        // printable bytes first, then the others, each in byte order.
        let mut ordered: Vec<char> = byte_chars
            .iter()
            .copied()
            .filter(|c| (*c as u32) < 256)
            .collect();
        ordered.extend(byte_chars.iter().copied().filter(|c| (*c as u32) >= 256));
        let mut vocabulary: Vec<String> = ordered.iter().map(char::to_string).collect();
        vocabulary.extend(ordered.iter().map(|c| format!("{c}</w>")));
        vocabulary.extend(
            merges
                .iter()
                .map(|(first, second)| format!("{first}{second}")),
        );
        vocabulary.push("<|startoftext|>".into());
        vocabulary.push("<|endoftext|>".into());
        let encoder = vocabulary
            .into_iter()
            .enumerate()
            .map(|(id, token)| (token, id as i64))
            .collect();
        let ranks = merges
            .into_iter()
            .enumerate()
            .map(|(rank, pair)| (pair, rank))
            .collect();
        let pattern = regex::Regex::new(
            r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        )
        .map_err(|err| err.to_string())?;
        let whitespace = regex::Regex::new(r"\s+").map_err(|err| err.to_string())?;
        Ok(ClipTokenizer {
            encoder,
            ranks,
            byte_chars,
            pattern,
            whitespace,
        })
    }

    /// `<|startoftext|>`'s id.
    pub fn start_token(&self) -> i64 {
        self.encoder.get("<|startoftext|>").copied().unwrap_or(0)
    }

    /// `<|endoftext|>`'s id.
    pub fn end_token(&self) -> i64 {
        self.encoder.get("<|endoftext|>").copied().unwrap_or(0)
    }

    /// `SimpleTokenizer.encode`: the ids of `text`, without start and end
    /// tokens.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let cleaned = basic_clean(text);
        let cleaned = self.whitespace.replace_all(&cleaned, " ");
        let cleaned = cleaned.trim().to_lowercase();
        let mut ids = Vec::new();
        for piece in self.pattern.find_iter(&cleaned) {
            let token: String = piece
                .as_str()
                .bytes()
                .map(|byte| self.byte_chars[usize::from(byte)])
                .collect();
            if let Some(id) = self.special(&token) {
                ids.push(id);
                continue;
            }
            for symbol in self.bpe(&token) {
                // Every symbol is a byte character or a merge of them, so
                // it is in the vocabulary.
                if let Some(id) = self.encoder.get(&symbol) {
                    ids.push(*id);
                }
            }
        }
        ids
    }

    /// The special tokens `bpe` returns unchanged (its cache).
    fn special(&self, token: &str) -> Option<i64> {
        matches!(token, "<|startoftext|>" | "<|endoftext|>")
            .then(|| self.encoder.get(token).copied())
            .flatten()
    }

    /// `SimpleTokenizer.bpe`: merges the lowest-ranked adjacent pair until
    /// none is in the merges list.
    fn bpe(&self, token: &str) -> Vec<String> {
        let mut word: Vec<String> = token.chars().map(String::from).collect();
        let Some(last) = word.last_mut() else {
            return Vec::new();
        };
        last.push_str("</w>");
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|pair| {
                    self.ranks
                        .get(&(pair[0].clone(), pair[1].clone()))
                        .map(|rank| (*rank, pair[0].clone(), pair[1].clone()))
                })
                .min();
            let Some((_, first, second)) = best else {
                break;
            };
            let mut merged = Vec::with_capacity(word.len());
            let mut index = 0;
            while index < word.len() {
                if index + 1 < word.len() && word[index] == first && word[index + 1] == second {
                    merged.push(format!("{first}{second}"));
                    index += 2;
                } else {
                    merged.push(word[index].clone());
                    index += 1;
                }
            }
            word = merged;
        }
        word
    }

    /// The token rows FiftyOne's `TorchCLIPModel._embed_prompts` builds:
    /// start, the prompt's ids, end; a row longer than `context` is cut to
    /// it with its last id replaced by the end token.
    pub fn prompt_rows(&self, prompts: &[String], context: usize) -> Vec<Vec<i64>> {
        prompts
            .iter()
            .map(|prompt| {
                let mut row = vec![self.start_token()];
                row.extend(self.encode(prompt));
                row.push(self.end_token());
                if row.len() > context && context > 0 {
                    row.truncate(context);
                    row[context - 1] = self.end_token();
                }
                row
            })
            .collect()
    }
}

/// `basic_clean`: `ftfy.fix_text`, `html.unescape` twice, Python's
/// `strip()`.
fn basic_clean(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = unescape_html(&unescape_html(&fixed));
    unescaped
        .trim_matches(|c: char| c.is_whitespace() || ('\u{1C}'..='\u{1F}').contains(&c))
        .to_owned()
}

/// ftfy's longest segment (`max_decode_length`), in characters.
const MAX_DECODE_LENGTH: usize = 1_000_000;

/// ANSI terminal escapes, as ftfy's `remove_terminal_escapes` finds them.
static TERMINAL_ESCAPE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"\x1B\[((?:\d|;)*)([a-zA-Z])").expect("a valid pattern"));

/// `ftfy.fix_text` with its default configuration, by `plsfix`. The text is
/// cut into ftfy's segments here (each line, at most
/// [`MAX_DECODE_LENGTH`] characters), as plsfix would cut long lines by
/// bytes, which can fall inside a character. ftfy's
/// `remove_terminal_escapes` runs here first: plsfix's pattern for it
/// never matches.
fn fix_text(text: &str) -> String {
    let config = plsfix::TextFixerConfig {
        max_decode_length: i32::MAX,
        ..plsfix::TextFixerConfig::default()
    };
    let text = TERMINAL_ESCAPE.replace_all(text, "");
    let mut fixed = String::with_capacity(text.len());
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let line = rest.find('\n').map_or(rest.len(), |end| end + 1);
        let end = rest
            .char_indices()
            .nth(MAX_DECODE_LENGTH)
            .map_or(line, |(limit, _)| line.min(limit));
        fixed.push_str(&plsfix::fix_text(&rest[..end], Some(&config)));
        rest = &rest[end..];
    }
    fixed
}

/// HTML5's named character references without their `&` (`amp;`, and the
/// legacy `amp` that needs no `;`), as Python's `html.entities.html5`.
static ENTITIES: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| {
    entities::ENTITIES
        .iter()
        .map(|entity| (entity.entity.trim_start_matches('&'), entity.characters))
        .collect()
});

/// The references `html.unescape` replaces.
static CHARACTER_REFERENCE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0C <&#;]{1,32};?)")
        .expect("a valid pattern")
});

/// What numeric references to 0x80..=0x9F stand for (HTML5's table:
/// windows-1252, the five codes it leaves undefined as themselves).
const C1_REFERENCES: [char; 32] = [
    '\u{20AC}', '\u{81}', '\u{201A}', '\u{192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{2C6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8D}', '\u{17D}', '\u{8F}',
    '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{2DC}', '\u{2122}', '\u{161}', '\u{203A}', '\u{153}', '\u{9D}', '\u{17E}', '\u{178}',
];

/// Python's `html.unescape`: numeric references (HTML5's replacements for
/// NUL, CR and the C1 codes, U+FFFD for surrogates and beyond U+10FFFF,
/// nothing for the other invalid code points) and named ones (exact, or
/// the longest legacy name that starts the reference).
fn unescape_html(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    CHARACTER_REFERENCE
        .replace_all(text, |captures: &regex::Captures<'_>| {
            let reference = &captures[1];
            match reference.strip_prefix('#') {
                Some(number) => numeric_reference(number),
                None => named_reference(reference),
            }
        })
        .into_owned()
}

/// `&#...` (without `&#`): decimal, or hexadecimal after `x`.
fn numeric_reference(number: &str) -> String {
    let number = number.trim_end_matches(';');
    // Digits beyond u64 are beyond U+10FFFF too.
    let code = match number.strip_prefix(['x', 'X']) {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap_or(u64::MAX),
        None => number.parse::<u64>().unwrap_or(u64::MAX),
    };
    match code {
        0x00 => "\u{FFFD}".to_owned(),
        0x0D => "\r".to_owned(),
        0x80..=0x9F => C1_REFERENCES[(code - 0x80) as usize].to_string(),
        0xD800..=0xDFFF => "\u{FFFD}".to_owned(),
        code if code > 0x10FFFF => "\u{FFFD}".to_owned(),
        0x01..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F | 0xFDD0..=0xFDEF => String::new(),
        code if code & 0xFFFE == 0xFFFE => String::new(),
        code => char::from_u32(code as u32).map_or_else(String::new, String::from),
    }
}

/// `&name` (without `&`, with its `;` if it had one).
fn named_reference(reference: &str) -> String {
    if let Some(characters) = ENTITIES.get(reference) {
        return (*characters).to_owned();
    }
    // The longest prefix of at least two characters that is a name.
    let ends: Vec<usize> = reference.char_indices().map(|(at, _)| at).skip(2).collect();
    for &end in ends.iter().rev() {
        if let Some(characters) = ENTITIES.get(&reference[..end]) {
            return format!("{characters}{}", &reference[end..]);
        }
    }
    format!("&{reference}")
}

#[cfg(test)]
mod tests {
    use super::{MAX_DECODE_LENGTH, basic_clean, bytes_to_unicode, fix_text, unescape_html};

    #[test]
    fn bytes_map_to_distinct_printable_characters() {
        let chars = bytes_to_unicode();
        assert_eq!(chars[usize::from(b'a')], 'a');
        assert_eq!(chars[0], '\u{100}');
        assert_eq!(chars[usize::from(b' ')], '\u{120}');
        let distinct: std::collections::BTreeSet<char> = chars.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn cleaning_follows_ftfy_and_html_unescape() {
        let cases = [
            ("  “quoted” ‘x’ ", "\"quoted\" 'x'"),
            ("ﬁne ﬂow", "fine flow"),
            ("ｆｕｌｌ\u{3000}width", "full width"),
            ("Cafe\u{301}", "Caf\u{e9}"),
            ("&amp;lt;b&amp;gt; &#39;a&#x27;", "<b> 'a'"),
            ("a &bogus; b & c", "a &bogus; b & c"),
            ("bell\u{7}", "bell"),
        ];
        for (text, want) in cases {
            assert_eq!(basic_clean(text), want, "{text:?}");
        }
        assert_eq!(unescape_html("&#0;"), "\u{FFFD}");
        assert_eq!(
            unescape_html("&notit; &amp &#x110000;"),
            "\u{AC}it; & \u{FFFD}"
        );
    }

    /// A line longer than ftfy's segment of 1,000,000 characters, of
    /// three-byte characters, is cut between characters (plsfix's own cut
    /// at byte 1,000,000 would fall inside one and panic), and is left as
    /// it is.
    #[test]
    fn long_lines_are_cut_between_characters() {
        let line = "\u{4E2D}".repeat(MAX_DECODE_LENGTH + 3);
        assert_eq!(fix_text(&line), line);
        let text = format!("ab\n{line}");
        assert_eq!(fix_text(&text), text);
    }

    proptest::proptest! {
        /// Any text cleans without a panic (mojibake-like characters,
        /// references, escapes and line breaks mixed at random), into text
        /// without C0 controls other than whitespace (ftfy drops them and
        /// `html.unescape` makes none) and without whitespace at its ends.
        #[test]
        fn any_text_cleans(text in "[a1x\\x00-\\x1F\\x7F-\\u{FF}&#;<\\[\\u{2018}-\\u{2122}\\u{FB01}\\u{FF41}\\u{1F600}]{0,40}") {
            let cleaned = basic_clean(&text);
            proptest::prop_assert!(
                !cleaned.chars().any(|c| matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{E}'..='\u{1F}' | '\u{7F}')),
                "{:?} -> {:?}", text, cleaned
            );
            proptest::prop_assert_eq!(cleaned.trim(), cleaned.as_str());
        }
    }
}
