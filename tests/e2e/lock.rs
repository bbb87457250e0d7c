//! `zoo lock` and `--locked` (issue: runs you can reproduce): a lock pins a
//! model's files, its source's commit and tree and its config; a changed
//! byte in any of them is refused by `--locked` naming the file and both
//! digests, and nothing runs.

use zoo_test_support::TestServer;

use crate::apply::{classifier_source, pictures};
use crate::util::Sandbox;

fn sha256_hex(path: &std::path::Path) -> String {
    zoo_sources::sha256_file(path).unwrap()
}

#[test]
fn a_locked_run_refuses_a_changed_weights_byte_or_source_file_and_names_it() {
    let server = TestServer::start();
    let mut sandbox = Sandbox::new();
    let lockfile = sandbox.dir.path().join("project").join("zoo.lock");
    fs_err::create_dir_all(lockfile.parent().unwrap()).unwrap();
    sandbox
        .env
        .push(("ZOO_LOCKFILE".into(), lockfile.to_str().unwrap().to_owned()));
    sandbox.ok(&["models", "register-source", &classifier_source(&server)]);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 3);
    let pics = pics.to_str().unwrap();

    // Nothing is locked yet: `--locked` refuses, naming the lock to write.
    let refused = sandbox
        .fails(&["models", "download", "acme/tiny-classifier", "--locked"])
        .stderr();
    assert!(refused.contains("zoo.lock"), "{refused}");

    let locked = sandbox
        .ok(&["lock", "acme/tiny-classifier", "--json"])
        .json();
    assert_eq!(locked[0]["name"], "acme/tiny-classifier", "{locked}");
    assert_eq!(locked[0]["runs"], "native", "{locked}");
    let model_path = sandbox
        .ok(&["models", "find", "acme/tiny-classifier"])
        .stdout()
        .trim()
        .to_owned();
    let model_path = std::path::PathBuf::from(model_path);
    let lock_text = fs_err::read_to_string(&lockfile).unwrap();
    let weights_sha = sha256_hex(&model_path);
    assert!(lock_text.contains(&weights_sha), "{lock_text}");
    assert!(lock_text.contains("[[source]]"), "{lock_text}");
    assert!(lock_text.contains("manifest.json"), "{lock_text}");

    // As locked: download and apply pass.
    sandbox.ok(&["models", "download", "acme/tiny-classifier", "--locked"]);
    sandbox.ok(&[
        "models",
        "apply",
        "acme/tiny-classifier",
        pics,
        "pred",
        "--locked",
        "-q",
    ]);

    // One flipped bit in the weights: refused, naming the file and both digests.
    // Its size and modification time are kept, as bit rot keeps them: the
    // lock check reads every byte, never a cached digest.
    let mut bytes = fs_err::read(&model_path).unwrap();
    let modified = fs_err::metadata(&model_path).unwrap().modified().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs_err::write(&model_path, &bytes).unwrap();
    fs_err::File::options()
        .write(true)
        .open(&model_path)
        .unwrap()
        .file()
        .set_modified(modified)
        .unwrap();
    let flipped_sha = sha256_hex(&model_path);
    let refused = sandbox
        .fails(&[
            "models",
            "apply",
            "acme/tiny-classifier",
            pics,
            "pred2",
            "--locked",
        ])
        .stderr();
    assert!(refused.contains("differs from the lock"), "{refused}");
    assert!(refused.contains("tiny.pt"), "{refused}");
    assert!(refused.contains(&weights_sha), "{refused}");
    assert!(refused.contains(&flipped_sha), "{refused}");
    let info = sandbox.ok(&["datasets", "info", pics, "--json"]).json();
    assert!(info["label_fields"].get("pred2").is_none(), "{info}");
    bytes[last] ^= 1;
    fs_err::write(&model_path, &bytes).unwrap();
    sandbox.ok(&["models", "download", "acme/tiny-classifier", "--locked"]);

    // A file added to the source's tree: refused, naming it.
    let source_dir = model_path.parent().unwrap();
    fs_err::write(source_dir.join("extra.py"), b"print('new code')").unwrap();
    let refused = sandbox
        .fails(&["models", "download", "acme/tiny-classifier", "--locked"])
        .stderr();
    assert!(refused.contains("extra.py"), "{refused}");
    assert!(refused.contains("its source"), "{refused}");

    // Locking again accepts the change; a lock of another version is refused.
    sandbox.ok(&["lock", "acme/tiny-classifier"]);
    sandbox.ok(&["models", "download", "acme/tiny-classifier", "--locked"]);
    let text = fs_err::read_to_string(&lockfile).unwrap();
    fs_err::write(&lockfile, text.replace("version = 1", "version = 2")).unwrap();
    let refused = sandbox
        .fails(&["models", "download", "acme/tiny-classifier", "--locked"])
        .stderr();
    assert!(refused.contains("version 2"), "{refused}");
}
