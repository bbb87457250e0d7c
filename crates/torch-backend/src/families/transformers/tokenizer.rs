//! A repo's text tokenizer, as transformers' fast tokenizers run it:
//! `tokenizer.json` through Hugging Face's own `tokenizers` crate (the
//! library transformers itself calls), with the special tokens and
//! `model_max_length` of `tokenizer_config.json`, and the padding and
//! truncation a call asks for (transformers sets both per call, replacing
//! whatever `tokenizer.json` keeps).
//!
//! `tokenizer.json` is hostile input: read under a byte cap, parsed by the
//! crate (an unknown component is an error naming the file), and every
//! encoding call guarded so that a panic in the crate is an error.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use super::{HfError, repo};

/// The largest `tokenizer.json` zoo reads (Gemma's, for SigLIP 2, is about
/// 34 MB).
const MAX_TOKENIZER_BYTES: u64 = 128 << 20;

/// The longest sequence zoo pads or truncates to.
const MAX_LENGTH: usize = 1 << 16;

/// transformers' `VERY_LARGE_INTEGER`: a `model_max_length` meaning none.
const NO_MAX_LENGTH: f64 = 1e29;

/// How a batch is padded (transformers' `padding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Padding {
    /// `False`: each text as long as it is.
    None,
    /// `True` / `"longest"`: to the batch's longest.
    Longest,
    /// `"max_length"`: to this length.
    MaxLength(usize),
}

/// The padding and truncation of a tokenizer call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TextOptions {
    pub(crate) padding: Padding,
    /// Cut to this many tokens (special tokens included).
    pub(crate) truncation: Option<usize>,
}

/// Token ids and attention masks, one row per text.
pub(crate) type Encoded = (Vec<Vec<i64>>, Vec<Vec<i64>>);

/// `tokenizer_config.json`'s fields zoo reads.
#[derive(Debug, Default, Deserialize)]
struct TokenizerConfig {
    #[serde(default)]
    pad_token: Option<Value>,
    #[serde(default)]
    model_max_length: Option<f64>,
    #[serde(default)]
    padding_side: Option<String>,
    #[serde(default)]
    truncation_side: Option<String>,
    #[serde(default)]
    tokenizer_class: Option<String>,
}

/// The tokenizer classes of transformers 5.25 that pad on the left unless
/// `tokenizer_config.json` says otherwise (their class's `padding_side`).
const LEFT_PADDING: &[&str] = &[
    "CodeLlamaTokenizer",
    "CohereTokenizer",
    "ErgoTokenizer",
    "GemmaTokenizer",
    "LlamaTokenizer",
    "Siglip2Tokenizer",
    "XLNetTokenizer",
];

/// A special token as `tokenizer_config.json` writes it: the text, or an
/// `AddedToken` object with `content`.
fn token_text(value: &Value) -> Option<&str> {
    match value {
        Value::String(text) => Some(text),
        Value::Object(map) => map.get("content").and_then(Value::as_str),
        _ => None,
    }
}

/// A repo's tokenizer (see the module docs).
pub(crate) struct HfTokenizer {
    tokenizer: Tokenizer,
    /// The padding token and its id, if the repo has one.
    pad: Option<(String, u32)>,
    /// `model_max_length`, if finite.
    model_max_length: Option<usize>,
    pad_left: bool,
    truncate_left: bool,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("pad", &self.pad)
            .field("model_max_length", &self.model_max_length)
            .finish_non_exhaustive()
    }
}

impl HfTokenizer {
    /// Reads `tokenizer.json` and `tokenizer_config.json` (if there) in
    /// `dir`.
    pub(crate) fn load(dir: &Path) -> Result<HfTokenizer, HfError> {
        let path = dir.join("tokenizer.json");
        let bytes = repo::read_file(dir, "tokenizer.json", MAX_TOKENIZER_BYTES)?;
        let parsed = std::panic::catch_unwind(|| Tokenizer::from_bytes(&bytes));
        let tokenizer = match parsed {
            Ok(Ok(tokenizer)) => tokenizer,
            Ok(Err(err)) => {
                return Err(HfError::Config {
                    path,
                    message: format!("not a tokenizer `tokenizers` reads: {err}"),
                });
            }
            Err(_) => {
                return Err(HfError::Config {
                    path,
                    message: "the `tokenizers` crate failed on it".to_owned(),
                });
            }
        };
        let config: TokenizerConfig = if repo::has_file(dir, "tokenizer_config.json") {
            repo::read_json(dir, "tokenizer_config.json")?
        } else {
            TokenizerConfig::default()
        };
        let config_path = dir.join("tokenizer_config.json");
        let config_error = |message: String| HfError::Config {
            path: config_path.clone(),
            message,
        };
        let pad = match &config.pad_token {
            None | Some(Value::Null) => None,
            Some(value) => {
                let text = token_text(value).ok_or_else(|| {
                    config_error(format!("`pad_token` must be a token, got `{value}`"))
                })?;
                let id = tokenizer.token_to_id(text).ok_or_else(|| {
                    config_error(format!(
                        "`pad_token` `{text}` is not in `tokenizer.json`'s vocabulary"
                    ))
                })?;
                Some((text.to_owned(), id))
            }
        };
        let model_max_length = match config.model_max_length {
            None => None,
            Some(length) if length >= NO_MAX_LENGTH => None,
            Some(length)
                if length.fract() == 0.0 && (1.0..=MAX_LENGTH as f64).contains(&length) =>
            {
                Some(length as usize)
            }
            Some(length) => {
                return Err(config_error(format!(
                    "`model_max_length` must be a whole number from 1 to {MAX_LENGTH}, got `{length}`"
                )));
            }
        };
        let class = config.tokenizer_class.as_deref().unwrap_or_default();
        let left_by_class = LEFT_PADDING.contains(&class.strip_suffix("Fast").unwrap_or(class));
        let side = |value: &Option<String>, field: &str, left: bool| match value.as_deref() {
            None => Ok(left),
            Some("right") => Ok(false),
            Some("left") => Ok(true),
            Some(other) => Err(config_error(format!(
                "`{field}` must be `left` or `right`, got `{other}`"
            ))),
        };
        Ok(HfTokenizer {
            pad_left: side(&config.padding_side, "padding_side", left_by_class)?,
            truncate_left: side(&config.truncation_side, "truncation_side", false)?,
            tokenizer,
            pad,
            model_max_length,
        })
    }

    /// The options of a processor call's `padding`, `truncation` and
    /// `max_length` (transformers' names and values), as transformers
    /// resolves them: `max_length` alone pads nothing and cuts nothing;
    /// `"max_length"` padding or truncation without one takes
    /// `model_max_length`.
    pub(crate) fn options(
        &self,
        padding: &Value,
        truncation: &Value,
        max_length: Option<&Value>,
    ) -> Result<TextOptions, String> {
        let max_length = match max_length {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .filter(|length| (1..=MAX_LENGTH as u64).contains(length))
                    .ok_or_else(|| {
                        format!("`max_length` must be a whole number from 1 to {MAX_LENGTH}, got `{value}`")
                    })? as usize,
            ),
        };
        let limit = |what: &str| {
            max_length.or(self.model_max_length).ok_or_else(|| {
                format!("{what} needs `max_length`: the tokenizer has no `model_max_length`")
            })
        };
        let padding = match padding {
            Value::Null | Value::Bool(false) => Padding::None,
            Value::Bool(true) => Padding::Longest,
            Value::String(text) => match text.as_str() {
                "longest" => Padding::Longest,
                "do_not_pad" => Padding::None,
                "max_length" => Padding::MaxLength(limit("`padding` `max_length`")?),
                other => {
                    return Err(format!(
                        "`padding` `{other}` is not one transformers takes (true, false, `longest`, `max_length`, `do_not_pad`)"
                    ));
                }
            },
            other => {
                return Err(format!(
                    "`padding` must be true, false or a strategy, got `{other}`"
                ));
            }
        };
        let truncation = match truncation {
            Value::Null | Value::Bool(false) => None,
            Value::Bool(true) => Some(limit("`truncation`")?),
            Value::String(text) => match text.as_str() {
                "longest_first" | "only_first" => Some(limit("`truncation`")?),
                "do_not_truncate" => None,
                other => {
                    return Err(format!(
                        "`truncation` `{other}` is not one zoo runs for single texts (true, false, `longest_first`, `only_first`, `do_not_truncate`)"
                    ));
                }
            },
            other => {
                return Err(format!(
                    "`truncation` must be true, false or a strategy, got `{other}`"
                ));
            }
        };
        if padding != Padding::None && self.pad.is_none() {
            return Err(
                "padding needs a `pad_token`, which the repo's `tokenizer_config.json` does not name".to_owned(),
            );
        }
        Ok(TextOptions {
            padding,
            truncation,
        })
    }

    /// The token ids of `texts` (special tokens added), padded and cut as
    /// `options` say, and their attention masks (`1` for a token, `0` for
    /// padding).
    pub(crate) fn encode(&self, texts: &[String], options: TextOptions) -> Result<Encoded, String> {
        let mut tokenizer = self.tokenizer.clone();
        let truncation = options.truncation.map(|max_length| TruncationParams {
            direction: if self.truncate_left {
                TruncationDirection::Left
            } else {
                TruncationDirection::Right
            },
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        });
        tokenizer
            .with_truncation(truncation)
            .map_err(|err| format!("the tokenizer refuses the truncation: {err}"))?;
        let padding = match (options.padding, &self.pad) {
            (Padding::None, _) | (_, None) => None,
            (padding, Some((token, id))) => Some(PaddingParams {
                strategy: match padding {
                    Padding::MaxLength(length) => PaddingStrategy::Fixed(length),
                    _ => PaddingStrategy::BatchLongest,
                },
                direction: if self.pad_left {
                    PaddingDirection::Left
                } else {
                    PaddingDirection::Right
                },
                pad_to_multiple_of: None,
                pad_id: *id,
                pad_type_id: 0,
                pad_token: token.clone(),
            }),
        };
        tokenizer.with_padding(padding);
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tokenizer.encode_batch(inputs, true)
        }))
        .map_err(|_| "the `tokenizers` crate failed on the texts".to_owned())?
        .map_err(|err| format!("the texts could not be tokenized: {err}"))?;
        let column = |values: &[u32]| values.iter().map(|value| i64::from(*value)).collect();
        Ok((
            encoded
                .iter()
                .map(|encoding| column(encoding.get_ids()))
                .collect(),
            encoded
                .iter()
                .map(|encoding| column(encoding.get_attention_mask()))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fixtures() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zero_shot")
    }

    /// transformers 5.25's own tokenizers (`AutoTokenizer` of the CLIP and
    /// SigLIP fixture repos, `cargo xtask zero-shot-oracle`: a byte-level
    /// BPE and a Gemma byte-fallback BPE that pads on the left) on awkward
    /// strings: unicode, empty and blank texts, special tokens in the text,
    /// a text beyond 77 tokens; unpadded, padded to the longest (with the
    /// attention mask), truncated to 77, and padded and truncated to 64 as
    /// SigLIP's entry asks.
    #[test]
    fn token_ids_equal_transformers_own() {
        let oracle: Value = serde_json::from_str(
            &fs_err::read_to_string(fixtures().join("zero_shot_oracle.json")).unwrap(),
        )
        .unwrap();
        for (repo, key, model_max_length) in
            [("clip", "tokens", 77), ("siglip", "siglip_tokens", 64)]
        {
            let tokens = &oracle[key];
            let strings: Vec<String> = tokens["strings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|text| text.as_str().unwrap().to_owned())
                .collect();
            let tokenizer = HfTokenizer::load(&fixtures().join(repo)).unwrap();
            let expected = |key: &str| -> Vec<Vec<i64>> {
                serde_json::from_value(tokens[key].clone()).unwrap()
            };
            for (key, padding, truncation, max_length) in [
                ("plain", json!(false), json!(false), None),
                ("longest", json!(true), json!(false), None),
                ("truncated", json!(false), json!(true), Some(json!(77))),
                (
                    "max_length_64",
                    json!("max_length"),
                    json!(true),
                    Some(json!(64)),
                ),
            ] {
                let options = tokenizer
                    .options(&padding, &truncation, max_length.as_ref())
                    .unwrap();
                let (ids, attention) = tokenizer.encode(&strings, options).unwrap();
                assert_eq!(ids, expected(key), "{repo} {key}");
                if key == "longest" {
                    assert_eq!(attention, expected("attention_longest"), "{repo}");
                }
            }
            // Truncation without `max_length` takes `model_max_length`.
            let options = tokenizer
                .options(&json!(false), &json!(true), None)
                .unwrap();
            let (ids, _) = tokenizer.encode(&strings, options).unwrap();
            assert!(
                ids.iter().all(|row| row.len() <= model_max_length),
                "{repo}"
            );
            assert!(
                ids.iter().any(|row| row.len() == model_max_length),
                "{repo}"
            );
        }
    }

    #[test]
    fn hostile_tokenizer_files_are_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let error = HfTokenizer::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("tokenizer.json"), "{error}");
        for text in ["{", "{\"model\": {\"type\": \"NoSuchModel\"}}", "[]"] {
            fs_err::write(dir.path().join("tokenizer.json"), text).unwrap();
            let error = HfTokenizer::load(dir.path()).unwrap_err().to_string();
            assert!(error.contains("tokenizer.json"), "{text}: {error}");
        }
        fs_err::copy(
            fixtures().join("clip/tokenizer.json"),
            dir.path().join("tokenizer.json"),
        )
        .unwrap();
        fs_err::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"pad_token": "<|no such token|>"}"#,
        )
        .unwrap();
        let error = HfTokenizer::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("<|no such token|>"), "{error}");
        fs_err::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"model_max_length": -3}"#,
        )
        .unwrap();
        let error = HfTokenizer::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("model_max_length"), "{error}");
        // No pad token: padding is refused, not silently skipped.
        fs_err::write(dir.path().join("tokenizer_config.json"), "{}").unwrap();
        let tokenizer = HfTokenizer::load(dir.path()).unwrap();
        let error = tokenizer
            .options(&json!(true), &json!(false), None)
            .unwrap_err();
        assert!(error.contains("pad_token"), "{error}");
        let error = tokenizer
            .options(&json!(false), &json!(true), None)
            .unwrap_err();
        assert!(error.contains("max_length"), "{error}");
    }
}
