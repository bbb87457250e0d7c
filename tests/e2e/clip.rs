//! Issue 15: FiftyOne's `clip-vit-base32-torch` built-in through `zoo`:
//! image embeddings, text embeddings (`zoo models embed-text`) and
//! zero-shot classification with `--classes`.
//!
//! Oracle: `crates/torch-backend/tests/fixtures/clip_oracle.json`
//! (`zero_shot`), written by `cargo xtask clip-oracle`
//! (`xtask/fixtures/clip_oracle.py`): FiftyOne 1.22.1's own `TorchCLIPModel`
//! with the built-in's config on a tiny OpenAI-style TorchScript archive
//! and a three-merge vocabulary, which this test serves as the built-in's
//! weights and tokenizer from loopback mirrors of their hosts.

use std::path::Path;

use serde_json::Value;
use zoo_test_support::TestServer;

use crate::util::{Sandbox, fixtures, floats, max_difference};

/// `zoo models embed`, `zoo models apply --classes dog,cat,bird -l` and
/// Where the built-in CLIP's weights file is served (its path on OpenAI's
/// host).
pub(crate) const CLIP_WEIGHTS: &str =
    "/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt";
/// Where its tokenizer's vocabulary is served (its path on GitHub).
pub(crate) const CLIP_VOCABULARY: &str = "/openai/CLIP/raw/main/clip/bpe_simple_vocab_16e6.txt.gz";

/// A loopback server holding the tiny CLIP fixture as the built-in's weights
/// and vocabulary, and a sandbox whose downloads from OpenAI's and GitHub's
/// hosts go to it.
pub(crate) fn tiny_clip_mirror() -> (TestServer, Sandbox) {
    let server = TestServer::start();
    server.file(
        CLIP_WEIGHTS,
        fs_err::read(fixtures().join("clip/tiny_clip.pt")).unwrap(),
    );
    server.file(
        CLIP_VOCABULARY,
        fs_err::read(fixtures().join("clip/tiny_vocab.txt.gz")).unwrap(),
    );
    let mut sandbox = Sandbox::new();
    sandbox.env.push((
        "ZOO_DOWNLOAD_MIRRORS".into(),
        format!(
            "https://openaipublic.azureedge.net/={};https://github.com/={}",
            server.url("/"),
            server.url("/")
        ),
    ));
    (server, sandbox)
}

/// `zoo models embed-text` on `clip-vit-base32-torch`: the weights file
/// and the tokenizer's vocabulary (`tokenizer_base_url`, stored beside the
/// weights as `tokenizer_base_filename`) are fetched once each, and the
/// embeddings, labels, logits and prompt embeddings are FiftyOne's (1e-4).
#[test]
fn clip_builtin_embeds_classifies_and_embeds_text_like_fiftyone() {
    let oracle: Value =
        serde_json::from_slice(&fs_err::read(fixtures().join("clip_oracle.json")).unwrap())
            .unwrap();
    let zero_shot = &oracle["zero_shot"];
    let (server, sandbox) = tiny_clip_mirror();
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    let entries = zero_shot["images"].as_array().unwrap();
    for entry in entries {
        let file = entry["file"].as_str().unwrap();
        fs_err::copy(fixtures().join("clip").join(file), images.join(file)).unwrap();
    }
    let dir = images.to_str().unwrap();
    let summary = sandbox
        .ok(&[
            "models",
            "embed",
            "clip-vit-base32-torch",
            dir,
            "emb",
            "--json",
        ])
        .json();
    assert_eq!(summary["succeeded"], entries.len());
    assert_eq!(summary["dimension"], 32);
    let summary = sandbox
        .ok(&[
            "models",
            "apply",
            "clip-vit-base32-torch",
            dir,
            "pred",
            "--classes",
            "dog,cat,bird",
            "-l",
            "--json",
        ])
        .json();
    assert_eq!(summary["succeeded"], entries.len());
    assert_eq!(server.requests_to(CLIP_WEIGHTS).len(), 1);
    assert_eq!(server.requests_to(CLIP_VOCABULARY).len(), 1);
    assert!(
        sandbox
            .zoo_dir()
            .join("clip_bpe_simple_vocab_16e6.txt.gz")
            .is_file()
    );
    let dataset = summary["dataset"].as_str().unwrap().to_owned();
    let export = sandbox.dir.path().join("out.jsonl");
    sandbox.ok(&["datasets", "export", &dataset, export.to_str().unwrap()]);
    for line in fs_err::read_to_string(&export).unwrap().lines() {
        let sample: Value = serde_json::from_str(line).unwrap();
        let file = Path::new(sample["filepath"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let expected = entries.iter().find(|e| e["file"] == file.as_str()).unwrap();
        assert_eq!(sample["pred"]["label"], expected["label"], "{file}");
        let logits = zoo_model_core::array_from_json(&sample["pred"]["logits"])
            .unwrap()
            .to_f32()
            .unwrap();
        let logits: Vec<f64> = logits.into_iter().map(f64::from).collect();
        assert!(
            max_difference(&logits, &floats(&expected["logits"])) <= 1e-4,
            "{file}"
        );
        assert!(
            max_difference(&floats(&sample["emb"]), &floats(&expected["embedding"])) <= 1e-4,
            "{file}"
        );
    }
    let text = sandbox
        .ok(&[
            "models",
            "embed-text",
            "clip-vit-base32-torch",
            "A photo of dog",
            "dog cat",
        ])
        .lines();
    assert_eq!(text.len(), 2);
    for (line, theirs) in text
        .iter()
        .zip(zero_shot["prompt_embeddings"].as_array().unwrap())
    {
        let row: Value = serde_json::from_str(line).unwrap();
        assert!(max_difference(&floats(&row["embedding"]), &floats(theirs)) <= 1e-4);
    }
    assert_eq!(server.requests_to(CLIP_WEIGHTS).len(), 1);
    assert_eq!(server.requests_to(CLIP_VOCABULARY).len(), 1);
}
