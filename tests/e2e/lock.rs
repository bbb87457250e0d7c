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

/// The labels of `field` by file name, as `zoo datasets export` writes them.
fn labels(sandbox: &Sandbox, dataset: &str, field: &str) -> Vec<(String, serde_json::Value)> {
    let path = sandbox.dir.path().join("export.jsonl");
    sandbox.ok(&["datasets", "export", dataset, path.to_str().unwrap()]);
    let mut found: Vec<(String, serde_json::Value)> = fs_err::read_to_string(&path)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            // The corrupt picture has no label.
            let mut label = value.get(field).filter(|label| label.is_object())?.clone();
            // Label ids are new in every run.
            label.as_object_mut().unwrap().remove("_id");
            Some((value["filepath"].as_str().unwrap().to_owned(), label))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

#[test]
fn a_bundle_is_reproducible_installs_offline_with_the_same_labels_and_refuses_tampering() {
    let server = TestServer::start();
    let online = Sandbox::new();
    online.ok(&["models", "register-source", &classifier_source(&server)]);
    let pics = online.dir.path().join("pics");
    pictures(&pics, 4);
    let pics = pics.to_str().unwrap();
    online.ok(&[
        "models",
        "apply",
        "acme/tiny-classifier",
        pics,
        "pred",
        "-q",
    ]);
    let before = labels(&online, pics, "pred");
    assert_eq!(before.len(), 4);

    let outputs = tempfile::tempdir().unwrap();
    let first = outputs.path().join("one.tar.zst");
    let second = outputs.path().join("two.tar.zst");
    let report = online
        .ok(&[
            "bundle",
            "create",
            first.to_str().unwrap(),
            "acme/tiny-classifier",
            "--json",
        ])
        .json();
    assert_eq!(
        report["models"],
        serde_json::json!(["acme/tiny-classifier"])
    );
    online.ok(&[
        "bundle",
        "create",
        second.to_str().unwrap(),
        "acme/tiny-classifier",
    ]);
    assert_eq!(
        fs_err::read(&first).unwrap(),
        fs_err::read(&second).unwrap(),
        "two bundles of the same models differ"
    );

    // An empty zoo dir, offline, the source's server gone.
    drop(server);
    let mut offline = Sandbox::new();
    offline.env.push(("ZOO_OFFLINE".into(), "1".into()));
    let lockfile = offline.dir.path().join("zoo.lock");
    offline
        .env
        .push(("ZOO_LOCKFILE".into(), lockfile.to_str().unwrap().to_owned()));

    // A tampered bundle (one byte of the weights changed, or a file its
    // lock does not name) is refused naming the file, and installs nothing.
    let unpacked = outputs.path().join("unpacked");
    zoo_sources::extract(
        &first,
        zoo_sources::ArchiveKind::TarZst,
        &unpacked,
        &zoo_sources::ExtractLimits::default(),
    )
    .unwrap();
    let mut entries: Vec<(String, std::path::PathBuf)> = Vec::new();
    let mut stack = vec![unpacked.clone()];
    while let Some(folder) = stack.pop() {
        for entry in fs_err::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path
                    .strip_prefix(&unpacked)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                entries.push((name, path));
            }
        }
    }
    let weights = entries
        .iter()
        .find(|(name, _)| name.ends_with("/tiny.pt"))
        .unwrap()
        .clone();
    let mut bytes = fs_err::read(&weights.1).unwrap();
    bytes[100] ^= 0x10;
    fs_err::write(&weights.1, &bytes).unwrap();
    let tampered = outputs.path().join("tampered.tar.zst");
    zoo_sources::write_tar_zst(&tampered, &entries).unwrap();
    let refused = offline
        .fails(&["bundle", "install", tampered.to_str().unwrap()])
        .stderr();
    assert!(refused.contains(&weights.0["files/".len()..]), "{refused}");
    assert!(refused.contains("nothing was installed"), "{refused}");
    bytes[100] ^= 0x10;
    fs_err::write(&weights.1, &bytes).unwrap();
    let extra = unpacked.join("files/acme/tiny/__init__.py");
    fs_err::create_dir_all(extra.parent().unwrap()).unwrap();
    fs_err::write(&extra, b"import os").unwrap();
    entries.push(("files/acme/tiny/__init__.py".into(), extra));
    zoo_sources::write_tar_zst(&tampered, &entries).unwrap();
    let refused = offline
        .fails(&["bundle", "install", tampered.to_str().unwrap()])
        .stderr();
    assert!(refused.contains("acme/tiny/__init__.py"), "{refused}");
    assert!(
        offline.models(&[]).is_empty(),
        "a refused bundle registered a source"
    );

    // The real bundle installs offline; the same labels come out, `--locked`.
    let installed = offline
        .ok(&["bundle", "install", first.to_str().unwrap(), "--json"])
        .json();
    assert_eq!(
        installed["models_installed"],
        serde_json::json!(["acme/tiny-classifier"])
    );
    assert!(lockfile.is_file());
    offline.ok(&[
        "models",
        "apply",
        "acme/tiny-classifier",
        pics,
        "pred",
        "-q",
        "--locked",
    ]);
    assert_eq!(labels(&offline, pics, "pred"), before);
    // Its source is registered, untrusted.
    let sources = offline.ok(&["models", "list-sources", "--json"]).json();
    assert_eq!(sources[0]["trusted"], false, "{sources}");
}
