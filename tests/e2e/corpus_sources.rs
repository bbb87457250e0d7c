//! Real remote sources from the corpus, run end to end: the source's own
//! `__init__.py` and `zoo.py` (kept unmodified under
//! `tests/corpus/sources/`), registered from a loopback GitHub, its
//! `download_model` hook's `snapshot_download` reaching a loopback Hugging
//! Face Hub through `HF_ENDPOINT`, against FiftyOne running the same source
//! on the same files.
//!
//! These need a Python with torch, FiftyOne 1.22.1, `accelerate` and a
//! `transformers` the source works with (`ZOO_TEST_CORPUS_PYTHON`).
//! harpreetsahota204/medsiglip needs transformers 4: with transformers 5
//! `get_text_features` returns a model output, not a tensor, and the
//! source's own `embed_prompts` raises (`'BaseModelOutputWithPooling'
//! object has no attribute 'detach'`), in FiftyOne as in zoo. One way to
//! make that Python beside the oracle venv (`cargo xtask fixtures`):
//! `python3 -m venv V`, a `.pth` file in `V`'s site-packages naming the
//! oracle venv's site-packages, then `V/bin/pip install "transformers<5"
//! "tokenizers<0.23" "huggingface_hub<1.0"` (and `accelerate --no-deps` in
//! the oracle venv). Without it they say they are skipped, in CI too (its
//! venvs hold no torch).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use zoo_test_support::{Archive, FakeGitHub, FakeHub, FiftyOne, HubRepo, RepoSpec, seed};

use crate::hosted::{exported, pictures};
use crate::util::{Sandbox, floats};

#[allow(clippy::print_stderr)]
fn corpus_python() -> Option<String> {
    match std::env::var("ZOO_TEST_CORPUS_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            eprintln!(
                "SKIPPED: corpus sources against FiftyOne (set ZOO_TEST_CORPUS_PYTHON to a Python with torch, transformers 4, accelerate and fiftyone)"
            );
            None
        }
    }
}

/// The kept copy of a corpus source's repository.
fn source_dir(stem: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/corpus/sources")
        .join(stem)
}

/// A tiny `SiglipModel` (two layers per tower, 32x32 inputs in 8x8
/// patches, 24-feature projections) with a `SiglipImageProcessor` and a
/// word-level fast tokenizer, saved by transformers' own `save_pretrained`
/// into `argv[1]`: the layout of `google/medsiglip-448`, seeded.
const SEED_SIGLIP: &str = r#"
import sys, torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (PreTrainedTokenizerFast, SiglipConfig, SiglipImageProcessor,
                          SiglipModel, SiglipProcessor)
words = ["<pad>", "</s>", "<unk>", "a", "photo", "of", "cat", "dog", "chest", "x-ray", "scan"]
backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
backend.pre_tokenizer = pre_tokenizers.Whitespace()
tokenizer = PreTrainedTokenizerFast(
    tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
    model_max_length=16, model_input_names=["input_ids", "attention_mask"])
torch.manual_seed(7)
config = SiglipConfig(
    text_config=dict(vocab_size=len(words), hidden_size=32, intermediate_size=37,
                     num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
                     projection_size=24, pad_token_id=0, eos_token_id=1),
    vision_config=dict(hidden_size=24, intermediate_size=37, num_hidden_layers=2,
                       num_attention_heads=2, image_size=32, patch_size=8),
)
SiglipModel(config).eval().save_pretrained(sys.argv[1])
SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}),
                tokenizer=tokenizer).save_pretrained(sys.argv[1])
"#;

/// FiftyOne running the kept source as its remote-source loader does
/// (`__init__.py` imported as a package, `download_model` into a fresh
/// folder, then `load_model`): `compute_embeddings` on the pictures and
/// `embed_prompts` on the prompts.
const FIFTYONE_RUNS_THE_SOURCE: &str = r#"
import importlib, importlib.util, os, sys
# The loopback Hub, as zoo's host sees it (`huggingface_hub` reads it when
# its constants load).
os.environ["HF_ENDPOINT"] = args["endpoint"]
if "huggingface_hub.constants" in sys.modules:
    importlib.reload(sys.modules["huggingface_hub.constants"])
spec = importlib.util.spec_from_file_location(
    "corpus_medsiglip", args["init"], submodule_search_locations=[args["folder"]])
source = importlib.util.module_from_spec(spec)
sys.modules["corpus_medsiglip"] = source
spec.loader.exec_module(source)
source.download_model(args["name"], args["path"])
model = source.load_model(args["name"], args["path"])
dataset = fo.Dataset()
dataset.add_samples([fo.Sample(filepath=p) for p in args["images"]])
dataset.compute_embeddings(model, embeddings_field="emb")
result = {
    "embeddings": {s.filepath.rsplit("/", 1)[-1]: np.asarray(s.emb).tolist() for s in dataset},
    "prompts": np.asarray(model.embed_prompts(args["prompts"])).tolist(),
}
dataset.delete()
"#;

fn assert_close(ours: &[f64], theirs: &[f64], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths differ");
    for (index, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "{what}[{index}]: zoo {a}, FiftyOne {b}"
        );
    }
}

/// harpreetsahota204/medsiglip: registered from (loopback) GitHub, its
/// weights fetched by its own `download_model` (`snapshot_download`) from
/// the loopback Hub into the source's own folder, then `zoo models embed`
/// and `zoo models embed-text` give FiftyOne's vectors on the same source.
#[test]
fn medsiglip_source_embeds_images_and_text_as_fiftyone_runs_it() {
    let Some(python) = corpus_python() else {
        return;
    };
    let stem = "harpreetsahota204__medsiglip";
    let folder = source_dir(stem);
    let mut tree = Archive::new();
    for file in ["__init__.py", "zoo.py", "manifest.json", "LICENSE"] {
        tree = tree.file(file, fs_err::read(folder.join(file)).unwrap());
    }
    let github = FakeGitHub::start();
    github.add_repo(RepoSpec::new("harpreetsahota204", "medsiglip").git_ref("main", tree));

    let mut sandbox = Sandbox::with_github(&github.api_url());
    let seeded = sandbox.dir.path().join("seeded");
    seed(
        &python,
        SEED_SIGLIP,
        &[seeded.to_str().unwrap()],
        &sandbox.dir.path().join("home"),
    );
    let name = "google/medsiglip-448";
    let mut repo = HubRepo::new(name, "medsiglip seeded");
    let mut files: Vec<_> = fs_err::read_dir(&seeded)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for path in &files {
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        let bytes = fs_err::read(path).unwrap();
        repo = if file.ends_with(".safetensors") {
            repo.lfs_file(&file, bytes)
        } else {
            repo.file(&file, bytes)
        };
    }
    let hub = FakeHub::start();
    hub.add_repo(repo);
    sandbox.env.extend([
        ("ZOO_PYTHON".to_owned(), python.clone()),
        ("HF_ENDPOINT".to_owned(), hub.endpoint()),
        ("HF_HUB_DISABLE_TELEMETRY".to_owned(), "1".to_owned()),
        ("OMP_NUM_THREADS".to_owned(), "1".to_owned()),
    ]);

    // Its code runs in the host: zoo runs it only once trusted.
    sandbox.ok(&[
        "models",
        "register-source",
        "harpreetsahota204/medsiglip",
        "--trust",
    ]);
    assert!(sandbox.models(&[]).contains(&name.to_owned()));
    sandbox.ok(&["models", "download", name]);
    // The source's own folder holds its model (FiftyOne's layout).
    let info = sandbox.ok(&["models", "info", name, "--json"]).json();
    assert_eq!(info["downloaded"], true, "{info}");
    assert_eq!(info["runs_in"], "python host", "{info}");
    let path = info["model_path"]
        .as_str()
        .unwrap_or_else(|| panic!("no model path in {info}"));
    assert!(
        Path::new(path).join("model.safetensors").is_file(),
        "{info}"
    );

    let pics = sandbox.dir.path().join("pics");
    let images = pictures(&pics, 3);
    let summary = sandbox
        .ok(&[
            "models",
            "embed",
            name,
            pics.to_str().unwrap(),
            "emb",
            "--json",
        ])
        .json();
    assert_eq!(summary["succeeded"], images.len(), "{summary}");
    assert_eq!(summary["dimension"], 24, "{summary}");
    let prompts = ["a photo of a cat", "chest x-ray"];
    let text = sandbox.ok(&["models", "embed-text", name, prompts[0], prompts[1]]);
    let lines: Vec<Value> = text
        .stdout()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", text.stdout());

    let mut fiftyone = FiftyOne::start(&python);
    let theirs = fiftyone.run(
        FIFTYONE_RUNS_THE_SOURCE,
        json!({
            "init": folder.join("__init__.py"),
            "folder": folder,
            "name": name,
            "path": sandbox.dir.path().join("fiftyone-model"),
            "images": images,
            "prompts": prompts,
            "endpoint": hub.endpoint(),
        }),
    );
    let samples = exported(&sandbox, summary["dataset"].as_str().unwrap());
    assert_eq!(samples.len(), images.len());
    for (file, sample) in &samples {
        assert_close(
            &floats(&sample["emb"]),
            &floats(&theirs["embeddings"][file]),
            file,
        );
    }
    for (index, line) in lines.iter().enumerate() {
        assert_eq!(line["prompt"], prompts[index]);
        assert_close(
            &floats(&line["embedding"]),
            &floats(&theirs["prompts"][index]),
            prompts[index],
        );
    }
}
