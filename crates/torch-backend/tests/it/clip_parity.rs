//! CLIP parity with FiftyOne 1.22.1's CLIP code: `tests/fixtures/clip_oracle.json`
//! and `tests/fixtures/clip/tiny_clip.pt` were written by
//! `cargo xtask clip-oracle` (`xtask/fixtures/clip_oracle.py`): a tiny CLIP
//! built with `fiftyone.utils.clip.model.CLIP` (ViT image encoder at
//! 224x224 with 32-pixel patches, widths 64, two blocks per encoder, 512
//! tokens), formula weights cast to half precision as OpenAI's are, saved as
//! a TorchScript archive like `ViT-B-32.pt`; the expected values are what
//! `TorchCLIPModel` runs on it: `build_model(torch.jit.load(...).state_dict())
//! .float()`, the `clip-vit-base32-torch` preprocessing (`image_size` [224,
//! 224], CLIP's mean and std), `encode_image`, `encode_text` and
//! `_get_class_logits`.

use serde_json::Value;
use sha2::{Digest, Sha256};
use zoo_model_core::{Input, Preprocess};
use zoo_torch_backend::{ClipModel, Preprocessing};

use crate::fixtures;

fn oracle() -> Value {
    serde_json::from_slice(&fs_err::read(fixtures().join("clip_oracle.json")).unwrap()).unwrap()
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn max_difference(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// The `clip-vit-base32-torch` config's preprocessing.
fn preprocessing(oracle: &Value) -> Preprocessing {
    let config = &oracle["deployment"];
    let three = |key: &str| {
        let values = floats(&config[key]);
        [values[0], values[1], values[2]]
    };
    assert_eq!(config["image_size"], serde_json::json!([224, 224]));
    Preprocessing {
        size: Some((224, 224)),
        mean: three("image_mean"),
        std: three("image_std"),
        ..Preprocessing::default()
    }
}

fn inputs(oracle: &Value) -> Vec<Input> {
    let preprocessing = preprocessing(oracle);
    oracle["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let file = entry["file"].as_str().unwrap();
            let image = zoo_datasets::decode_image(&fixtures().join("clip").join(file)).unwrap();
            let input = preprocessing.preprocess(image).unwrap();
            let bytes: Vec<u8> = input
                .data
                .values()
                .unwrap()
                .iter()
                .flat_map(|value| value.to_le_bytes())
                .collect();
            let digest: String = Sha256::digest(&bytes)
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            assert_eq!(
                digest,
                entry["input_sha256"].as_str().unwrap(),
                "{file}: the input differs from FiftyOne's"
            );
            input
        })
        .collect()
}

/// OpenAI's TorchScript archive format (half-precision tensors as module
/// attributes) is read by zoo's own unpickler, and the sizes are inferred
/// as `build_model` infers them.
#[test]
fn clip_reads_an_openai_style_torchscript_archive() {
    let oracle = oracle();
    let model = ClipModel::load(&fixtures().join("clip/tiny_clip.pt")).unwrap();
    let config = &oracle["config"];
    assert_eq!(
        model.context_length() as u64,
        config["context_length"].as_u64().unwrap()
    );
    assert_eq!(
        model.vocab_size() as u64,
        config["vocab_size"].as_u64().unwrap()
    );
    assert_eq!(
        u64::from(model.image_resolution()),
        config["image_resolution"].as_u64().unwrap()
    );
    assert!(
        oracle["state_dict"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry[2] == "torch.float16"),
        "the archive holds half-precision tensors, as OpenAI's do"
    );
}

/// Image embeddings (`embeddings_layer: visual`) on PNGs of three sizes
/// resized to 224x224, text embeddings of three token rows (the longest
/// fills the context) and the zero-shot logits, all within 1e-4 of
/// FiftyOne's CLIP.
#[test]
fn clip_image_text_embeddings_and_logits_match_fiftyone() {
    let oracle = oracle();
    let model = ClipModel::load(&fixtures().join("clip/tiny_clip.pt")).unwrap();
    let inputs = inputs(&oracle);
    let images = model.embed_images(&inputs).unwrap();
    for (ours, entry) in images.iter().zip(oracle["images"].as_array().unwrap()) {
        let difference = max_difference(ours, &floats(&entry["embedding"]));
        println!(
            "clip image embedding of {}: max |diff| {difference:.3e}",
            entry["file"]
        );
        assert!(difference <= 1e-4, "{}: {difference}", entry["file"]);
    }
    let rows: Vec<Vec<i64>> = oracle["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_i64().unwrap())
                .collect()
        })
        .collect();
    let texts = model.embed_token_rows(&rows).unwrap();
    for (ours, theirs) in texts
        .iter()
        .zip(oracle["text_embeddings"].as_array().unwrap())
    {
        let difference = max_difference(ours, &floats(theirs));
        println!("clip text embedding: max |diff| {difference:.3e}");
        assert!(difference <= 1e-4, "{difference}");
    }
    let logits = model.logits(&images, &texts).unwrap();
    for (ours, theirs) in logits.iter().zip(oracle["logits"].as_array().unwrap()) {
        let difference = max_difference(ours, &floats(theirs));
        println!("clip logits: max |diff| {difference:.3e}");
        assert!(difference <= 1e-4, "{difference}");
    }
}

/// A token row longer than the context, or an id outside the vocabulary,
/// is an error naming it, not a libtorch crash.
#[test]
fn clip_token_rows_out_of_range_are_errors() {
    let model = ClipModel::load(&fixtures().join("clip/tiny_clip.pt")).unwrap();
    let long = vec![1i64; model.context_length() + 1];
    let err = model.embed_token_rows(&[long]).unwrap_err().to_string();
    assert!(err.contains("longer than CLIP's context"), "{err}");
    let err = model
        .embed_token_rows(&[vec![1, 100_000]])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`100000`"), "{err}");
}

fn tokenizer() -> zoo_torch_backend::ClipTokenizer {
    zoo_torch_backend::ClipTokenizer::from_gz(&fixtures().join("clip/bpe_simple_vocab_16e6.txt.gz"))
        .unwrap()
}

/// FiftyOne's `SimpleTokenizer.encode` ids, exactly, on awkward strings:
/// case, whitespace runs, punctuation, digits, contractions, accented
/// letters composed and decomposed, sharp s and final sigma, emoji, CJK and
/// Hangul (byte-level pieces), curly quotes, ligatures, fullwidth forms,
/// HTML entities unescaped twice, the special tokens, empty and blank text,
/// long words and a text longer than the context.
#[test]
fn clip_tokenizer_ids_equal_fiftyones_on_awkward_strings() {
    let oracle = oracle();
    let tokenizer = tokenizer();
    assert_eq!(tokenizer.start_token(), 49406);
    assert_eq!(tokenizer.end_token(), 49407);
    let cases = oracle["tokenizer"]["texts"].as_array().unwrap();
    assert!(cases.len() >= 15);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<i64> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_i64().unwrap())
            .collect();
        assert_eq!(tokenizer.encode(text), want, "{text:?}");
    }
}

/// `TorchCLIPModel._embed_prompts`' rows for `"<text_prompt> <class>"`:
/// start and end tokens, and a prompt longer than the context cut to 77
/// with the end token last.
#[test]
fn clip_prompt_rows_equal_fiftyones_with_truncation() {
    let oracle = oracle();
    let tokenizer = tokenizer();
    let section = &oracle["tokenizer"];
    let prompt = section["text_prompt"].as_str().unwrap();
    let prompts: Vec<String> = section["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|class| format!("{prompt} {}", class.as_str().unwrap()))
        .collect();
    let rows = tokenizer.prompt_rows(&prompts, 77);
    let want: Vec<Vec<i64>> = section["prompt_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_i64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(rows, want);
    assert_eq!(rows.last().unwrap().len(), 77);
}

/// A vocabulary that is not gzip, or whose merges are not pairs, is an
/// error naming the file.
#[test]
fn clip_tokenizer_rejects_bad_vocabularies() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.txt.gz");
    fs_err::write(&plain, b"not gzip").unwrap();
    let err = zoo_torch_backend::ClipTokenizer::from_gz(&plain).unwrap_err();
    assert!(err.to_string().contains("plain.txt.gz"), "{err}");
    let bad = dir.path().join("bad.txt.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, b"#version\na b\nthree symbols here\n").unwrap();
    fs_err::write(&bad, encoder.finish().unwrap()).unwrap();
    let err = zoo_torch_backend::ClipTokenizer::from_gz(&bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.txt.gz") && err.contains("line 3"),
        "{err}"
    );
}

/// FiftyOne's own `TorchCLIPModel` (configured as `clip-vit-base32-torch`
/// with the tiny archive, a three-merge vocabulary found beside it as
/// `tokenizer_base_filename`, and `classes` dog, cat, bird): zoo's
/// `TorchCLIPModel` gives the same zero-shot label, the confidence within
/// 1e-6 and the logits (`store_logits`) within 1e-4 on every image, the
/// same `visual` embeddings (`embed_all`) and `embed_prompts`.
#[test]
fn clip_zero_shot_and_embeddings_match_fiftyones_torch_clip_model() {
    let oracle = oracle();
    let zero_shot = &oracle["zero_shot"];
    let mut config = zero_shot["config"].as_object().unwrap().clone();
    let archive = fixtures().join("clip/tiny_clip.pt");
    config.insert("model_path".into(), archive.display().to_string().into());
    let spec = zoo_model_core::ModelSpec {
        kind: "fiftyone.utils.clip.TorchCLIPModel".into(),
        config,
        model_path: None,
    };
    let mut factory = zoo_model_core::ModelFactory::new();
    zoo_torch_backend::register(&mut factory);
    assert!(
        factory
            .types()
            .contains(&"fiftyone.utils.clip.TorchCLIPModel")
    );
    let mut model = zoo_torch_backend::TorchClipModel::from_spec(&spec).unwrap();
    use zoo_model_core::Model;
    model.set_store_logits(true);
    assert!(!model.ragged_batches());
    for entry in zero_shot["images"].as_array().unwrap() {
        let file = entry["file"].as_str().unwrap();
        let image = zoo_datasets::decode_image(&fixtures().join("clip").join(file)).unwrap();
        let input = model.preprocessor().preprocess(image).unwrap();
        let zoo_model_core::Prediction::Label(Some(zoo_model_core::Label::Classification {
            label,
            confidence,
            logits: Some(logits),
        })) = model.predict(&input).unwrap()
        else {
            panic!("no classification for {file}");
        };
        assert_eq!(label, entry["label"].as_str().unwrap(), "{file}");
        let difference = (confidence.unwrap() - entry["confidence"].as_f64().unwrap()).abs();
        assert!(difference <= 1e-6, "{file}: confidence {difference}");
        let difference = max_difference(&logits, &floats(&entry["logits"]));
        println!("clip zero-shot logits of {file}: max |diff| {difference:.3e}");
        assert!(difference <= 1e-4, "{file}: logits {difference}");
        let embedding = model.embed_all(std::slice::from_ref(&input)).unwrap();
        let difference = max_difference(&embedding[0], &floats(&entry["embedding"]));
        assert!(difference <= 1e-4, "{file}: embedding {difference}");
    }
    assert!(model.can_embed_prompts());
    let prompts = model
        .embed_prompts(&["A photo of dog".into(), "dog cat".into()])
        .unwrap();
    for (ours, theirs) in prompts
        .iter()
        .zip(zero_shot["prompt_embeddings"].as_array().unwrap())
    {
        let difference = max_difference(ours, &floats(theirs));
        assert!(difference <= 1e-4, "prompt embedding {difference}");
    }
}

/// Without classes (the built-in's `labels_path` names a file zoo does not
/// ship), embeddings still work and zero-shot prediction is an error saying
/// to give `classes`; a vocabulary that is missing is an error naming the
/// path and the download URL.
#[test]
fn clip_without_classes_embeds_and_explains_what_predict_needs() {
    let oracle = oracle();
    let mut config = oracle["zero_shot"]["config"].as_object().unwrap().clone();
    config.remove("classes");
    config.insert(
        "labels_path".into(),
        "{{eta-resources}}/voc-labels.txt".into(),
    );
    config.insert(
        "model_path".into(),
        fixtures()
            .join("clip/tiny_clip.pt")
            .display()
            .to_string()
            .into(),
    );
    let spec = zoo_model_core::ModelSpec {
        kind: "TorchCLIPModel".into(),
        config: config.clone(),
        model_path: None,
    };
    let mut model = zoo_torch_backend::TorchClipModel::from_spec(&spec).unwrap();
    use zoo_model_core::Model;
    let image = zoo_datasets::decode_image(&fixtures().join("clip/square.png")).unwrap();
    let input = model.preprocessor().preprocess(image).unwrap();
    assert_eq!(
        model.embed_all(std::slice::from_ref(&input)).unwrap()[0].len(),
        32
    );
    let err = model.predict(&input).unwrap_err().to_string();
    assert!(err.contains("give `classes`"), "{err}");
    config.insert("tokenizer_base_filename".into(), "missing.txt.gz".into());
    let spec = zoo_model_core::ModelSpec {
        kind: "TorchCLIPModel".into(),
        config,
        model_path: None,
    };
    let err = zoo_torch_backend::TorchClipModel::from_spec(&spec)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing.txt.gz") && err.contains("bpe_simple_vocab_16e6.txt.gz"),
        "{err}"
    );
}
