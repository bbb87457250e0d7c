//! The fake Hub against the real client: `huggingface_hub.snapshot_download`
//! (the test venv's, `ZOO_TEST_PYTHON`) downloads a repo from [`FakeHub`]
//! and gets every file, byte for byte, at the commit the fake states; a
//! private repo needs the token; a tampered LFS file is refused by the
//! client as it is by zoo. Without the test venv the test says it is
//! skipped, and fails in CI.

use std::path::Path;

use serde_json::Value;
use zoo_test_support::{FakeHub, HubRepo, safetensors_bytes, sha256_hex};

#[allow(clippy::print_stderr)]
fn python() -> Option<String> {
    match std::env::var("ZOO_TEST_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ if std::env::var_os("ZOO_CI").is_some() || std::env::var_os("CI").is_some() => {
            panic!("ZOO_TEST_PYTHON is not set: the Hub test needs huggingface_hub in CI")
        }
        _ => {
            eprintln!("SKIPPED: fake Hub against huggingface_hub (set ZOO_TEST_PYTHON)");
            None
        }
    }
}

/// Runs `snapshot_download` against `endpoint`; returns what it printed
/// (the snapshot's files with their sha256, and the folder's commit), or
/// the exception's type name.
const SNAPSHOT: &str = r#"
import hashlib, json, os, sys
endpoint, repo, revision, cache, token = sys.argv[1:6]
os.environ["HF_ENDPOINT"] = endpoint
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)
from huggingface_hub import snapshot_download
try:
    path = snapshot_download(repo, revision=revision, cache_dir=cache, token=token or False)
except Exception as error:
    import traceback
    cause = error
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__
    print(json.dumps({"error": type(error).__name__, "cause": "%s: %s" % (type(cause).__name__, cause)}))
    sys.exit(0)
files = {}
for root, _, names in os.walk(path):
    for name in names:
        full = os.path.join(root, name)
        with open(full, "rb") as f:
            files[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
print(json.dumps({"files": files, "commit": os.path.basename(os.path.realpath(path))}))
"#;

fn snapshot(
    python: &str,
    hub: &FakeHub,
    repo: &str,
    revision: &str,
    cache: &Path,
    token: &str,
) -> Value {
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(SNAPSHOT)
        .args([
            &hub.endpoint(),
            repo,
            revision,
            cache.to_str().unwrap(),
            token,
        ])
        .env_remove("HF_TOKEN")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn snapshot_download_reads_the_fake_hub_as_the_real_one() {
    let Some(python) = python() else { return };
    let hub = FakeHub::start();
    let weights = safetensors_bytes(&[("w", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])]);
    let big = vec![7u8; 300_000];
    let repo = HubRepo::new("acme/tiny-vit", "v1")
        .file("config.json", br#"{"model_type": "vit"}"#.to_vec())
        .file("nested/preprocessor_config.json", b"{}".to_vec())
        .lfs_file("model.safetensors", weights.clone())
        .lfs_file("big.bin", big.clone());
    let commit = repo.commit().to_owned();
    hub.add_repo(repo);
    let cache = tempfile::tempdir().unwrap();
    let got = snapshot(&python, &hub, "acme/tiny-vit", "main", cache.path(), "");
    assert_eq!(got["commit"], commit.as_str(), "{got}");
    let files = got["files"].as_object().unwrap();
    let expected = [
        ("config.json", sha256_hex(br#"{"model_type": "vit"}"#)),
        ("nested/preprocessor_config.json", sha256_hex(b"{}")),
        ("model.safetensors", sha256_hex(&weights)),
        ("big.bin", sha256_hex(&big)),
    ];
    assert_eq!(files.len(), expected.len(), "{got}");
    for (path, sha) in expected {
        assert_eq!(files[path], sha.as_str(), "{path}");
    }
    // The commit itself is a revision too.
    let cache = tempfile::tempdir().unwrap();
    let again = snapshot(&python, &hub, "acme/tiny-vit", &commit, cache.path(), "");
    assert_eq!(again["files"], got["files"]);

    // A private repo: refused without the token, read with it.
    hub.add_repo(
        HubRepo::new("acme/secret", "v1")
            .private()
            .lfs_file("model.safetensors", weights.clone()),
    );
    hub.set_token(Some("hf_test_token"));
    let cache = tempfile::tempdir().unwrap();
    let refused = snapshot(&python, &hub, "acme/secret", "main", cache.path(), "");
    assert!(refused["error"].is_string(), "{refused}");
    let read = snapshot(
        &python,
        &hub,
        "acme/secret",
        "main",
        cache.path(),
        "hf_test_token",
    );
    assert_eq!(
        read["files"]["model.safetensors"],
        sha256_hex(&weights).as_str(),
        "{read}"
    );
}
