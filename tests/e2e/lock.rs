//! `zoo lock` and `--locked` (issue: runs you can reproduce): a lock pins a
//! model's files, its source's commit and tree and its config; a changed
//! byte in any of them is refused by `--locked` naming the file and both
//! digests, and nothing runs.

use zoo_test_support::{Archive, FakeHub, HOSTED_SOURCE, HubRepo, Response, TestServer};

use crate::apply::{classifier_source, pictures};
use crate::util::{Sandbox, fixtures};

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

/// Each sample's fields but `filepath`, ids left out, by file name.
fn fields_by_file(sandbox: &Sandbox, dataset: &str) -> Vec<(String, serde_json::Value)> {
    let path = sandbox.dir.path().join("fields.jsonl");
    sandbox.ok(&["datasets", "export", dataset, path.to_str().unwrap()]);
    let mut found: Vec<(String, serde_json::Value)> = fs_err::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            let object = value.as_object_mut().unwrap();
            let file = std::path::Path::new(object.remove("filepath").unwrap().as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            for field in object.values_mut() {
                if let Some(label) = field.as_object_mut() {
                    label.remove("_id");
                }
            }
            (file, value)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Issue "runs you can reproduce", end to end on a mix: a remote source's
/// native model (`acme/tiny-classifier`), a built-in whose files come from
/// the loopback Hugging Face Hub (`convnext-tiny-224-torch`, a tiny ConvNeXt
/// saved by transformers) and a hosted model (`zoo-test/colour`, FiftyOne's
/// `Model` in the model host). One lock with golden outputs; `verify`
/// passes; a changed Hub file is refused by `--locked`; two bundles are the
/// same bytes; the bundle installs into an empty zoo dir offline, with
/// every server gone, and gives the same labels and embeddings; `verify`
/// passes there and fails, naming the worst difference, once one bit of the
/// ConvNeXt's weights is flipped.
#[test]
fn a_mix_of_models_locks_verifies_bundles_and_installs_offline_with_the_same_outputs() {
    let Some(python) = crate::hosted::fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let root = fixtures().join("transformers");
    let read = |name: &str| fs_err::read(root.join("convnext").join(name)).unwrap();
    let hub = FakeHub::start();
    hub.add_repo(
        HubRepo::new("facebook/convnext-tiny-224", "seeded")
            .file("config.json", read("config.json"))
            .file("preprocessor_config.json", read("preprocessor_config.json"))
            .lfs_file("model.safetensors", read("model.safetensors")),
    );
    let mut online = Sandbox::new();
    let lockfile = online.dir.path().join("zoo.lock");
    for (key, value) in [
        ("HF_ENDPOINT", hub.endpoint()),
        ("ZOO_PYTHON", python.clone()),
        ("ZOO_LOCKFILE", lockfile.to_str().unwrap().to_owned()),
    ] {
        online.env.push((key.to_owned(), value));
    }
    online.ok(&["models", "register-source", &classifier_source(&server)]);
    let archive = Archive::new()
        .file(
            "manifest.json",
            zoo_test_support::hosted_manifest().to_string(),
        )
        .file("__init__.py", HOSTED_SOURCE);
    server.route("/hosted.tar.gz", Response::ok(archive.to_tar_gz()));
    let hosted_url = server.url("/hosted.tar.gz");
    online.ok(&["models", "register-source", &hosted_url, "--trust"]);
    let models = [
        "acme/tiny-classifier",
        "convnext-tiny-224-torch",
        "zoo-test/colour",
    ];

    let mut lock = vec!["lock", "--with-golden"];
    lock.extend(models);
    lock.push("--json");
    let locked = online.ok(&lock).json();
    let runs: Vec<(&str, &str, u64)> = locked
        .as_array()
        .unwrap()
        .iter()
        .map(|model| {
            (
                model["name"].as_str().unwrap(),
                model["runs"].as_str().unwrap(),
                model["golden"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        [
            ("acme/tiny-classifier", "native", 3),
            ("convnext-tiny-224-torch", "native", 3),
            ("zoo-test/colour", "python host", 3)
        ],
        "{locked}"
    );
    let text = fs_err::read_to_string(&lockfile).unwrap();
    for needle in [
        "hub_repo = \"facebook/convnext-tiny-224\"",
        "hub_commit = ",
        "\"fiftyone==1.22.1\"",
        "[model.golden]",
        "[[model.golden.output]]",
        "probe = \"probe-2.png\"",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    for model in models {
        let report = online.ok(&["models", "verify", model, "--json"]).json();
        assert_eq!(report["passed"], true, "{report}");
        assert_eq!(report["worst"], 0.0, "{report}");
        assert!(report["numbers"].as_u64().unwrap() > 6, "{report}");
    }
    let text = online
        .ok(&["models", "verify", "convnext-tiny-224-torch"])
        .stdout();
    assert!(text.starts_with("PASS convnext-tiny-224-torch: "), "{text}");

    let pics = online.dir.path().join("pics");
    pictures(&pics, 3);
    let pics = pics.to_str().unwrap();
    for (index, model) in models.iter().enumerate() {
        online.ok(&[
            "models",
            "apply",
            model,
            pics,
            &format!("pred{index}"),
            "-q",
            "--locked",
        ]);
        online.ok(&[
            "models",
            "embed",
            model,
            pics,
            &format!("emb{index}"),
            "-q",
            "--locked",
        ]);
    }
    let before = fields_by_file(&online, pics);
    // Three pictures and a corrupt file, which has no results.
    let complete = before
        .iter()
        .filter(|(_, fields)| {
            (0..3).all(|index| {
                fields[format!("pred{index}")].is_object()
                    && fields[format!("emb{index}")].is_array()
            })
        })
        .count();
    assert_eq!(complete, 3, "{before:?}");

    // The Hub's repo moves on (one byte of its config): a fresh download
    // differs from the lock, and `--locked` names the file.
    let repo = online
        .ok(&["models", "find", "convnext-tiny-224-torch"])
        .stdout()
        .trim()
        .to_owned();
    let config = std::path::Path::new(&repo).join("config.json");
    let original = fs_err::read(&config).unwrap();
    let mut changed = original.clone();
    let at = changed.iter().position(|byte| *byte == b'1').unwrap();
    changed[at] = b'2';
    fs_err::write(&config, &changed).unwrap();
    let refused = online
        .fails(&["models", "download", "convnext-tiny-224-torch", "--locked"])
        .stderr();
    assert!(refused.contains("config.json"), "{refused}");
    assert!(refused.contains("differs from the lock"), "{refused}");
    fs_err::write(&config, &original).unwrap();

    let outputs = tempfile::tempdir().unwrap();
    let bundle = outputs.path().join("mix.tar.zst");
    let again = outputs.path().join("again.tar.zst");
    for out in [&bundle, &again] {
        let mut create = vec!["bundle", "create", out.to_str().unwrap()];
        create.extend(models);
        online.ok(&create);
    }
    assert_eq!(
        fs_err::read(&bundle).unwrap(),
        fs_err::read(&again).unwrap(),
        "two bundles of the same models differ"
    );

    // Every server gone; an empty zoo dir, offline.
    drop(server);
    drop(hub);
    let mut offline = Sandbox::new();
    // Where the machine allows, in a network namespace with no interface up:
    // nothing the install or the runs need can come from a network.
    offline.no_network = crate::util::network_namespaces_work();
    #[allow(clippy::print_stderr)]
    if !offline.no_network {
        eprintln!(
            "NOTE: no network namespaces here; the offline half runs with ZOO_OFFLINE=1 only"
        );
    }
    let offline_lock = offline.dir.path().join("zoo.lock");
    for (key, value) in [
        ("ZOO_OFFLINE", "1".to_owned()),
        ("ZOO_PYTHON", python),
        ("ZOO_LOCKFILE", offline_lock.to_str().unwrap().to_owned()),
    ] {
        offline.env.push((key.to_owned(), value));
    }
    let installed = offline
        .ok(&["bundle", "install", bundle.to_str().unwrap(), "--json"])
        .json();
    let verified: Vec<(&str, bool)> = installed["verified"]
        .as_array()
        .unwrap()
        .iter()
        .map(|report| {
            (
                report["model"].as_str().unwrap(),
                report["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    // The hosted model's source came in untrusted: its Python does not run
    // until the user trusts it.
    assert_eq!(
        verified,
        [
            ("acme/tiny-classifier", true),
            ("convnext-tiny-224-torch", true)
        ],
        "{installed}"
    );
    assert_eq!(
        installed["not_verified"][0]["model"], "zoo-test/colour",
        "{installed}"
    );
    let reason = installed["not_verified"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("not trusted"), "{reason}");
    offline.ok(&["models", "trust-source", &hosted_url]);
    let report = offline
        .ok(&["models", "verify", "zoo-test/colour", "--json"])
        .json();
    assert_eq!(report["passed"], true, "{report}");

    let offline_pics = offline.dir.path().join("pics");
    pictures(&offline_pics, 3);
    let offline_pics = offline_pics.to_str().unwrap();
    for (index, model) in models.iter().enumerate() {
        offline.ok(&[
            "models",
            "apply",
            model,
            offline_pics,
            &format!("pred{index}"),
            "-q",
            "--locked",
        ]);
        offline.ok(&[
            "models",
            "embed",
            model,
            offline_pics,
            &format!("emb{index}"),
            "-q",
            "--locked",
        ]);
    }
    assert_eq!(fields_by_file(&offline, offline_pics), before);

    // One bit of the ConvNeXt's weights flipped (an exponent bit of a float
    // in the middle of the safetensors data): verify fails, naming where.
    let repo = offline
        .ok(&["models", "find", "convnext-tiny-224-torch"])
        .stdout()
        .trim()
        .to_owned();
    let weights = std::path::Path::new(&repo).join("model.safetensors");
    let mut bytes = fs_err::read(&weights).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let data = 8 + header;
    let float = data + ((bytes.len() - data) / 2) / 4 * 4;
    bytes[float + 3] ^= 0x40;
    fs_err::write(&weights, &bytes).unwrap();
    let failed = offline.fails(&["models", "verify", "convnext-tiny-224-torch"]);
    let (stdout, stderr) = (failed.stdout(), failed.stderr());
    assert!(
        stdout.starts_with("FAIL convnext-tiny-224-torch: "),
        "{stdout}"
    );
    assert!(stdout.contains("worst difference"), "{stdout}");
    assert!(stderr.contains("golden outputs"), "{stderr}");
    assert!(stderr.contains("probe-"), "{stderr}");
}

/// A venv (with pip) made by `python` at `dir`; its interpreter.
fn venv(python: &str, dir: &std::path::Path) -> String {
    let status = std::process::Command::new(python)
        .args(["-m", "venv"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success(), "making a venv at {}", dir.display());
    dir.join("bin/python").to_str().unwrap().to_owned()
}

/// A pure-Python wheel of package `zoo_wheel_probe` 0.1.0, written by
/// Python's `zipfile` in the layout pip installs, into `dir`.
fn write_wheel(python: &str, dir: &std::path::Path) {
    let script = r#"
import base64, hashlib, sys, zipfile
files = {
    "zoo_wheel_probe/__init__.py": b"VERSION = '0.1.0'\n",
    "zoo_wheel_probe-0.1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: zoo_wheel_probe\nVersion: 0.1.0\n",
    "zoo_wheel_probe-0.1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: zoo-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = ""
for name, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += f"{name},sha256={digest},{len(data)}\n"
record += "zoo_wheel_probe-0.1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile(sys.argv[1] + "/zoo_wheel_probe-0.1.0-py3-none-any.whl", "w") as wheel:
    for name, data in files.items():
        wheel.writestr(name, data)
    wheel.writestr("zoo_wheel_probe-0.1.0.dist-info/RECORD", record)
"#;
    fs_err::create_dir_all(dir).unwrap();
    let status = std::process::Command::new(python)
        .args(["-c", script, dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `bundle create --with-python` carries the wheels of a hosted model's
/// pinned packages (pip downloads them from the index pip is configured
/// with: here a local folder, `PIP_FIND_LINKS`), each in the bundle's lock;
/// `bundle install` on an offline machine installs them into its own
/// `ZOO_PYTHON` from the bundle alone, and `--locked` then finds the
/// versions it pins. A wheel with one changed byte is refused, naming it,
/// before anything is installed.
#[test]
fn a_bundle_with_python_carries_the_hosted_models_wheels_and_installs_them_offline() {
    let Ok(python) = std::env::var("ZOO_TEST_PYTHON") else {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("SKIPPED: bundle --with-python (set ZOO_TEST_PYTHON)");
        }
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let wheelhouse = work.path().join("wheelhouse");
    write_wheel(&python, &wheelhouse);
    let online_python = venv(&python, &work.path().join("online-venv"));
    let status = std::process::Command::new(&online_python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
        ])
        .arg(&wheelhouse)
        .arg("zoo_wheel_probe==0.1.0")
        .status()
        .unwrap();
    assert!(status.success());

    let server = TestServer::start();
    let manifest = serde_json::json!({"name": "zoo-test/wheels", "models": [{
        "base_name": "zoo-test/wheel-model",
        "base_filename": "wheel-model.txt",
        "tags": ["classification"],
        "requirements": {"packages": ["zoo_wheel_probe"]},
    }]});
    let init = "def download_model(model_name, model_path):\n    with open(model_path, 'w') as f:\n        f.write('weights of ' + model_name)\n\n\ndef load_model(model_name, model_path, **kwargs):\n    raise RuntimeError('this test never loads it')\n";
    let archive = Archive::new()
        .file("manifest.json", manifest.to_string())
        .file("__init__.py", init);
    server.route("/wheels.tar.gz", Response::ok(archive.to_tar_gz()));
    let mut online = Sandbox::new();
    for (key, value) in [
        ("ZOO_PYTHON", online_python.clone()),
        ("PIP_NO_INDEX", "1".to_owned()),
        ("PIP_FIND_LINKS", wheelhouse.to_str().unwrap().to_owned()),
    ] {
        online.env.push((key.to_owned(), value));
    }
    online.ok(&[
        "models",
        "register-source",
        &server.url("/wheels.tar.gz"),
        "--trust",
    ]);
    let locked = online
        .ok(&["lock", "zoo-test/wheel-model", "--json"])
        .json();
    assert_eq!(locked[0]["runs"], "python host", "{locked}");
    assert_eq!(
        locked[0]["python"],
        serde_json::json!(["zoo_wheel_probe==0.1.0"]),
        "{locked}"
    );
    let bundle = work.path().join("hosted.tar.zst");
    online.ok(&[
        "bundle",
        "create",
        bundle.to_str().unwrap(),
        "zoo-test/wheel-model",
        "--with-python",
    ]);
    // The wheel in the bundle is the wheelhouse's, named in its lock.
    let unpacked = work.path().join("unpacked");
    zoo_sources::extract(
        &bundle,
        zoo_sources::ArchiveKind::TarZst,
        &unpacked,
        &zoo_sources::ExtractLimits::default(),
    )
    .unwrap();
    let wheel_name = "zoo_wheel_probe-0.1.0-py3-none-any.whl";
    let wheel = unpacked.join("wheels").join(wheel_name);
    assert_eq!(
        fs_err::read(&wheel).unwrap(),
        fs_err::read(wheelhouse.join(wheel_name)).unwrap()
    );
    let lock_text = fs_err::read_to_string(unpacked.join("zoo.lock")).unwrap();
    assert!(lock_text.contains("[[wheel]]"), "{lock_text}");
    assert!(lock_text.contains(&sha256_hex(&wheel)), "{lock_text}");

    drop(server);
    let offline_python = venv(&python, &work.path().join("offline-venv"));
    let mut offline = Sandbox::new();
    offline.no_network = crate::util::network_namespaces_work();
    let offline_lock = offline.dir.path().join("zoo.lock");
    for (key, value) in [
        ("ZOO_OFFLINE", "1".to_owned()),
        ("ZOO_PYTHON", offline_python.clone()),
        ("ZOO_LOCKFILE", offline_lock.to_str().unwrap().to_owned()),
    ] {
        offline.env.push((key.to_owned(), value));
    }

    // One changed byte in the wheel: refused, naming it; nothing installed.
    let mut entries: Vec<(String, std::path::PathBuf)> = ["zoo.lock", "sources.json"]
        .iter()
        .map(|name| ((*name).to_owned(), unpacked.join(name)))
        .collect();
    let mut stack = vec![unpacked.join("files"), unpacked.join("wheels")];
    while let Some(folder) = stack.pop() {
        for entry in fs_err::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(&unpacked).unwrap();
                entries.push((name.to_str().unwrap().to_owned(), path));
            }
        }
    }
    let mut bytes = fs_err::read(&wheel).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    fs_err::write(&wheel, &bytes).unwrap();
    let tampered = work.path().join("tampered.tar.zst");
    zoo_sources::write_tar_zst(&tampered, &entries).unwrap();
    let refused = offline
        .fails(&["bundle", "install", tampered.to_str().unwrap()])
        .stderr();
    assert!(
        refused.contains(&format!("wheels/{wheel_name}")),
        "{refused}"
    );
    assert!(refused.contains("nothing was installed"), "{refused}");
    let has_package = |python: &str| {
        std::process::Command::new(python)
            .args(["-c", "import zoo_wheel_probe"])
            .status()
            .unwrap()
            .success()
    };
    assert!(!has_package(&offline_python));

    let installed = offline
        .ok(&["bundle", "install", bundle.to_str().unwrap(), "--json"])
        .json();
    assert_eq!(
        installed["python_installed"],
        serde_json::json!(["zoo_wheel_probe==0.1.0"]),
        "{installed}"
    );
    assert!(has_package(&offline_python));
    offline.ok(&["models", "download", "zoo-test/wheel-model", "--locked"]);
}
