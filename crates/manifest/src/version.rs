//! Loose version ordering (Python's `distutils.version.LooseVersion`).

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Number(u128),
    Text(String),
}

impl Ord for Part {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Number(a), Self::Number(b)) => a.cmp(b),
            (Self::Text(a), Self::Text(b)) => a.cmp(b),
            // Python 3 cannot compare these; a release number outranks a tag
            // (`1.0.rc1` < `1.0.1`).
            (Self::Number(_), Self::Text(_)) => Ordering::Greater,
            (Self::Text(_), Self::Number(_)) => Ordering::Less,
        }
    }
}

impl PartialOrd for Part {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A version compared part by part, numbers as numbers: `1.10` > `1.9`,
/// `2.0b1` < `2.0b2`. A model without a version counts as `0.0.0`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LooseVersion {
    parts: Vec<Part>,
    text: String,
}

impl LooseVersion {
    /// Parses any string; there are no invalid loose versions.
    pub fn new(text: &str) -> Self {
        let mut parts = Vec::new();
        let mut chars = text.char_indices().peekable();
        let mut other_start: Option<usize> = None;
        let flush = |parts: &mut Vec<Part>, start: &mut Option<usize>, end: usize| {
            if let Some(begin) = start.take() {
                parts.push(Part::Text(text[begin..end].to_owned()));
            }
        };
        while let Some(&(index, character)) = chars.peek() {
            if character.is_ascii_digit() || character.is_ascii_lowercase() || character == '.' {
                flush(&mut parts, &mut other_start, index);
                let digits = character.is_ascii_digit();
                let mut end = index;
                while let Some(&(next_index, next)) = chars.peek() {
                    let same = if character == '.' {
                        next_index == index
                    } else if digits {
                        next.is_ascii_digit()
                    } else {
                        next.is_ascii_lowercase()
                    };
                    if !same {
                        break;
                    }
                    end = next_index + next.len_utf8();
                    chars.next();
                }
                let run = &text[index..end];
                if digits {
                    parts.push(
                        run.parse()
                            .map_or_else(|_| Part::Text(run.to_owned()), Part::Number),
                    );
                } else if character != '.' {
                    parts.push(Part::Text(run.to_owned()));
                }
            } else {
                other_start.get_or_insert(index);
                chars.next();
            }
        }
        flush(&mut parts, &mut other_start, text.len());
        Self {
            parts,
            text: text.to_owned(),
        }
    }

    /// The version of a model: its `version`, or `0.0.0` when it has none.
    pub fn of_model(version: Option<&str>) -> Self {
        Self::new(version.unwrap_or("0.0.0"))
    }
}

impl fmt::Display for LooseVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_like_loose_version() {
        let ascending = [
            "0.0.0", "0.9", "1", "1.0", "1.0.rc1", "1.0.1", "1.2", "1.9", "1.10", "1.10a", "2.0b1",
            "2.0b2", "10",
        ];
        for pair in ascending.windows(2) {
            assert!(
                LooseVersion::new(pair[0]) < LooseVersion::new(pair[1]),
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(LooseVersion::of_model(None), LooseVersion::new("0.0.0"));
        assert_eq!(LooseVersion::new("1.0-rc1").to_string(), "1.0-rc1");
    }
}
