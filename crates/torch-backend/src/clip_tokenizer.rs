//! CLIP's byte-level BPE tokenizer, as FiftyOne's vendored
//! `fiftyone/utils/clip/tokenizer.py` (OpenAI's `SimpleTokenizer`) encodes
//! text, from the same vocabulary file (`bpe_simple_vocab_16e6.txt.gz`).
//!
//! Text is cleaned as `basic_clean` does (`ftfy.fix_text`, then
//! `html.unescape` twice) as far as that changes tokens for ordinary text:
//! NFC normalisation, curly quotes uncurled, Latin ligatures and fullwidth
//! characters replaced, C0 control characters dropped, numeric and the
//! common named HTML entities decoded. ftfy's mojibake repair
//! (`fix_encoding`, e.g. `Ã©` back to `é`) and the rest of HTML5's named
//! entities are not reproduced. Then whitespace runs become one space, the
//! text is lower-cased and split by OpenAI's pattern, each piece's UTF-8
//! bytes are mapped to printable characters and merged by rank.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use unicode_normalization::UnicodeNormalization;

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

/// The parts of `ftfy.fix_text` and `html.unescape(html.unescape(...))`
/// reproduced (see the module docs), then `strip()`.
fn basic_clean(text: &str) -> String {
    let mut fixed = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            // fix_latin_ligatures
            '\u{FB00}' => fixed.push_str("ff"),
            '\u{FB01}' => fixed.push_str("fi"),
            '\u{FB02}' => fixed.push_str("fl"),
            '\u{FB03}' => fixed.push_str("ffi"),
            '\u{FB04}' => fixed.push_str("ffl"),
            '\u{FB05}' => fixed.push_str("\u{17F}t"),
            '\u{FB06}' => fixed.push_str("st"),
            '\u{0132}' => fixed.push_str("IJ"),
            '\u{0133}' => fixed.push_str("ij"),
            // fix_character_width: fullwidth ASCII and the ideographic space
            '\u{FF01}'..='\u{FF5E}' => {
                fixed.push(char::from_u32(c as u32 - 0xFEE0).unwrap_or(c));
            }
            '\u{3000}' => fixed.push(' '),
            // uncurl_quotes
            '\u{02BC}' | '\u{2018}'..='\u{201B}' => fixed.push('\''),
            '\u{201C}'..='\u{201F}' => fixed.push('"'),
            // remove_control_chars (C0 controls but tab, line feed,
            // form feed and carriage return; DEL)
            '\u{0000}'..='\u{0008}' | '\u{000B}' | '\u{000E}'..='\u{001F}' | '\u{007F}' => {}
            other => fixed.push(other),
        }
    }
    let normalised: String = fixed.nfc().collect();
    let unescaped = unescape_html(&unescape_html(&normalised));
    unescaped.trim().to_owned()
}

/// `html.unescape` for `&#N;`, `&#xH;` and the named entities `amp`,
/// `lt`, `gt`, `quot`, `apos` and `nbsp` (with their `;`).
fn unescape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let decoded = tail.find(';').filter(|end| *end <= 12).and_then(|end| {
            let entity = &tail[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{A0}'),
                _ => {
                    let number = entity.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse::<u32>().ok()?,
                    };
                    Some(
                        char::from_u32(code)
                            .filter(|c| *c != '\0')
                            .unwrap_or('\u{FFFD}'),
                    )
                }
            }?;
            Some((c, end + 1))
        });
        match decoded {
            Some((c, used)) => {
                out.push(c);
                rest = &tail[used..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{basic_clean, bytes_to_unicode, unescape_html};

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
    }
}
