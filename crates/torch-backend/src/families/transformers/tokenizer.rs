//! A repo's text tokenizer, as transformers' fast tokenizers run it:
//! `tokenizer.json` through Hugging Face's own `tokenizers` crate (the
//! library transformers itself calls), with the special tokens and
//! `model_max_length` of `tokenizer_config.json`, and the padding and
//! truncation a call asks for (transformers sets both per call, replacing
//! whatever `tokenizer.json` keeps).
//!
//! A CLIP repo saved without `tokenizer.json` (`tokenizer_class`
//! `CLIPTokenizer`, `vocab.json` and `merges.txt`) gets the tokenizer
//! `CLIPTokenizer`'s constructor builds from those files.
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
    #[serde(default)]
    bos_token: Option<Value>,
    #[serde(default)]
    eos_token: Option<Value>,
    #[serde(default)]
    unk_token: Option<Value>,
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

/// The special tokens of a CLIP tokenizer: `tokenizer_config.json`'s, else
/// `CLIPTokenizer`'s defaults.
fn special(value: &Option<Value>, default: &str) -> String {
    value
        .as_ref()
        .and_then(token_text)
        .unwrap_or(default)
        .to_owned()
}

/// transformers' `CLIPTokenizer` built from `vocab.json` and `merges.txt`
/// (repos saved without `tokenizer.json`), as its constructor builds it:
/// byte-level BPE with `</w>` word ends, NFC, runs of whitespace to one
/// space, lowercase, CLIP's word split, and the start and end tokens around
/// each text.
fn clip_from_vocabulary(dir: &Path, config: &TokenizerConfig) -> Result<Tokenizer, HfError> {
    use tokenizers::models::bpe::{BPE, Vocab};
    use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as Normalizers};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizers;
    use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
    use tokenizers::processors::roberta::RobertaProcessing;
    use tokenizers::{AddedToken, SplitDelimiterBehavior};

    let failed = |name: &str, message: String| HfError::Config {
        path: dir.join(name),
        message,
    };
    let vocab: std::collections::HashMap<String, u32> = repo::read_json(dir, "vocab.json")?;
    let text = repo::read_file(dir, "merges.txt", MAX_TOKENIZER_BYTES)?;
    let text =
        String::from_utf8(text).map_err(|_| failed("merges.txt", "not UTF-8 text".to_owned()))?;
    let mut merges = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || (number == 0 && line.starts_with("#version")) {
            continue;
        }
        let mut parts = line.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(left), Some(right), None) if !left.is_empty() && !right.is_empty() => {
                merges.push((left.to_owned(), right.to_owned()))
            }
            _ => {
                return Err(failed(
                    "merges.txt",
                    format!("line {} is not two tokens: `{line}`", number + 1),
                ));
            }
        }
    }
    let bos = special(&config.bos_token, "<|startoftext|>");
    let eos = special(&config.eos_token, "<|endoftext|>");
    let unk = special(&config.unk_token, "<|endoftext|>");
    let id = |token: &str| {
        vocab.get(token).copied().ok_or_else(|| {
            failed(
                "vocab.json",
                format!("the special token `{token}` is not in the vocabulary"),
            )
        })
    };
    let (bos_id, eos_id) = (id(&bos)?, id(&eos)?);
    let model = BPE::builder()
        .vocab_and_merges(vocab.into_iter().collect::<Vocab>(), merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix("</w>".to_owned())
        .fuse_unk(false)
        .unk_token(unk.clone())
        .build()
        .map_err(|err| failed("merges.txt", format!("not a BPE vocabulary: {err}")))?;
    let built = || -> tokenizers::Result<Tokenizer> {
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_normalizer(Some(Normalizers::new(vec![
            NFC.into(),
            Replace::new(
                tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".to_owned()),
                " ",
            )?
            .into(),
            Lowercase.into(),
        ])))?;
        tokenizer.with_pre_tokenizer(Some(PreTokenizers::new(vec![
            Split::new(
                SplitPattern::Regex(
                    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
                        .to_owned(),
                ),
                SplitDelimiterBehavior::Removed,
                true,
            )?
            .into(),
            ByteLevel::new(false, true, true).into(),
        ])));
        tokenizer.with_post_processor(Some(
            RobertaProcessing::new((eos.clone(), eos_id), (bos.clone(), bos_id))
                .trim_offsets(false)
                .add_prefix_space(false),
        ));
        let mut specials = vec![bos.clone(), eos.clone(), unk.clone()];
        if let Some(pad) = config.pad_token.as_ref().and_then(token_text) {
            specials.push(pad.to_owned());
        }
        specials.dedup();
        tokenizer.add_special_tokens(
            specials
                .into_iter()
                .map(|token| AddedToken::from(token, true)),
        )?;
        Ok(tokenizer)
    };
    built().map_err(|err| {
        failed(
            "vocab.json",
            format!("the CLIP tokenizer could not be built: {err}"),
        )
    })
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
        let config: TokenizerConfig = if repo::has_file(dir, "tokenizer_config.json") {
            repo::read_json(dir, "tokenizer_config.json")?
        } else {
            TokenizerConfig::default()
        };
        let class = config.tokenizer_class.as_deref().unwrap_or_default();
        let class = class.strip_suffix("Fast").unwrap_or(class);
        let path = dir.join("tokenizer.json");
        if !repo::has_file(dir, "tokenizer.json")
            && class == "CLIPTokenizer"
            && repo::has_file(dir, "vocab.json")
            && repo::has_file(dir, "merges.txt")
        {
            let tokenizer = clip_from_vocabulary(dir, &config)?;
            return Self::with_config(tokenizer, config, dir);
        }
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
        Self::with_config(tokenizer, config, dir)
    }

    /// `tokenizer` with `tokenizer_config.json`'s special tokens and sizes.
    fn with_config(
        tokenizer: Tokenizer,
        config: TokenizerConfig,
        dir: &Path,
    ) -> Result<HfTokenizer, HfError> {
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

    /// A CLIP repo saved without `tokenizer.json` (`vocab.json` and
    /// `merges.txt`, written here from the fixture's `tokenizer.json`):
    /// zoo builds the tokenizer as `CLIPTokenizer` does, and its ids are
    /// transformers' own.
    #[test]
    fn a_clip_vocabulary_without_tokenizer_json_tokenizes_as_transformers() {
        let oracle: Value = serde_json::from_str(
            &fs_err::read_to_string(fixtures().join("zero_shot_oracle.json")).unwrap(),
        )
        .unwrap();
        let tokens = &oracle["tokens"];
        let dir = tempfile::tempdir().unwrap();
        let source = fixtures().join("clip");
        let saved: Value =
            serde_json::from_slice(&fs_err::read(source.join("tokenizer.json")).unwrap()).unwrap();
        fs_err::write(
            dir.path().join("vocab.json"),
            saved["model"]["vocab"].to_string(),
        )
        .unwrap();
        let mut merges = String::from("#version: 0.2\n");
        for merge in saved["model"]["merges"].as_array().unwrap() {
            let line = match merge {
                Value::String(line) => line.clone(),
                pair => format!(
                    "{} {}",
                    pair[0].as_str().unwrap(),
                    pair[1].as_str().unwrap()
                ),
            };
            merges.push_str(&line);
            merges.push('\n');
        }
        fs_err::write(dir.path().join("merges.txt"), merges).unwrap();
        fs_err::copy(
            source.join("tokenizer_config.json"),
            dir.path().join("tokenizer_config.json"),
        )
        .unwrap();
        let tokenizer = HfTokenizer::load(dir.path()).unwrap();
        let strings: Vec<String> = serde_json::from_value(tokens["strings"].clone()).unwrap();
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
            let (ids, _) = tokenizer.encode(&strings, options).unwrap();
            let expected: Vec<Vec<i64>> = serde_json::from_value(tokens[key].clone()).unwrap();
            assert_eq!(ids, expected, "{key}");
        }
        // A malformed merges file is an error naming it.
        fs_err::write(dir.path().join("merges.txt"), "#version: 0.2\na b c\n").unwrap();
        let error = HfTokenizer::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("merges.txt"), "{error}");
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
