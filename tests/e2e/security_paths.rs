//! The trust boundary, paths and identity: every attack of the issue "Seal
//! the trust boundary" (paths part) through the `zoo` binary. Each attack
//! test also checks that nothing outside the zoo dir changed.

use std::time::{Duration, Instant};

use zoo_test_support::{Archive, FakeGitHub, RepoSpec, Response, TestServer};

use crate::util::{Sandbox, manifest_source, snapshot};

/// Everything in the sandbox but the zoo dir: a victim folder with files,
/// and whatever an attack might create beside it.
fn outside(sandbox: &Sandbox) -> Vec<String> {
    snapshot(sandbox.dir.path())
        .into_iter()
        .filter(|entry| !entry.starts_with("zoo/"))
        .collect()
}

/// A victim folder beside the zoo dir: `outside/x.pt` and `outside/keep/`.
fn plant_victims(sandbox: &Sandbox) {
    let outside = sandbox.dir.path().join("outside");
    fs_err::create_dir_all(outside.join("keep")).unwrap();
    fs_err::write(outside.join("x.pt"), b"victim").unwrap();
    fs_err::write(outside.join("keep/file"), b"victim").unwrap();
}

fn managed(name: &str, filename: &str, url: &str) -> serde_json::Value {
    serde_json::json!({
        "base_name": name,
        "base_filename": filename,
        "manager": {"type": "fiftyone.core.models.ModelManager", "config": {"url": url}},
    })
}

fn custom_manifest(sandbox: &mut Sandbox, models: serde_json::Value) {
    let path = sandbox.dir.path().join("custom.json");
    fs_err::write(
        &path,
        serde_json::json!({"name": "custom", "models": models}).to_string(),
    )
    .unwrap();
    sandbox
        .env
        .push(("ZOO_MANIFEST_PATHS".into(), path.display().to_string()));
}

/// An archive source holding `manifest` and `files` (name, text, mode).
fn source_with(
    server: &TestServer,
    path: &str,
    manifest: &serde_json::Value,
    files: &[(&str, &str, u32)],
) -> String {
    let mut archive = Archive::new().file("manifest.json", manifest.to_string());
    for (name, text, mode) in files {
        archive = archive.file_with_mode(name, *text, *mode);
    }
    server.route(path, Response::ok(archive.to_tar_gz()));
    server.url(path)
}

#[test]
fn version_with_parent_dirs_cannot_write_outside_zoo_dir() {
    let server = TestServer::start();
    server.file("/w/evil.pt", b"attacker bytes".to_vec());
    let mut evil = managed("acme/evil", "model.pt", &server.url("/w/evil.pt"));
    evil["version"] = "/../../../../outside/x".into();
    let manifest = serde_json::json!({"name": "acme/models", "models": [evil.clone()]});
    let url = manifest_source(&server, "/evil.zip", &manifest);
    let mut sandbox = Sandbox::new();
    plant_victims(&sandbox);
    // The same model in a custom manifest (installed in the zoo dir itself).
    let mut custom = evil.clone();
    custom["version"] = "/../../outside/x".into();
    custom_manifest(&mut sandbox, serde_json::json!([custom]));
    let before = outside(&sandbox);

    for args in [
        vec!["models", "register-source", url.as_str()],
        vec!["models", "download", url.as_str()],
    ] {
        let err = sandbox.fails(&args).stderr();
        assert!(err.contains("models[0].version"), "{err}");
        assert!(err.contains("`/../../../../outside/x`"), "{err}");
    }
    assert!(!sandbox.zoo_dir().join("acme").exists());

    let run = sandbox.fails(&["models", "download", "acme/evil"]);
    assert!(
        run.stderr().contains("models[0].version"),
        "{}",
        run.stderr()
    );
    assert!(server.requests_to("/w/evil.pt").is_empty());
    assert_eq!(outside(&sandbox), before);
    assert_eq!(
        fs_err::read(sandbox.dir.path().join("outside/x.pt")).unwrap(),
        b"victim"
    );
}

#[test]
fn version_with_parent_dirs_cannot_delete_outside_zoo_dir() {
    let mut sandbox = Sandbox::new();
    plant_victims(&sandbox);
    // `<zoo>/keep-v/../../outside/keep` and `<zoo>/x-v/../../outside/x.pt`.
    custom_manifest(
        &mut sandbox,
        serde_json::json!([
            {"base_name": "acme/dir", "base_filename": "keep", "version": "/../../outside/keep"},
            {"base_name": "acme/file", "base_filename": "x.pt", "version": "/../../outside/x"},
        ]),
    );
    // The folders an earlier download through these paths would have made
    // (the kernel resolves `keep-v/..` only when `keep-v` exists).
    for made in ["keep-v", "x-v"] {
        fs_err::create_dir_all(sandbox.zoo_dir().join(made)).unwrap();
    }
    let before = outside(&sandbox);
    for name in ["acme/dir", "acme/file", "acme/dir@/../../outside/keep"] {
        sandbox.fails(&["models", "delete", name]);
        sandbox.fails(&["models", "find", name]);
    }
    assert_eq!(outside(&sandbox), before);
}

const RECORDING_HOOK: &str = "#!/bin/sh\necho \"$1 $2\" >> hook-calls.txt\nprintf 'w' > \"$2\"\n";

#[test]
fn version_with_parent_dirs_never_reaches_a_hook() {
    let server = TestServer::start();
    let manifest = serde_json::json!({"name": "acme/hooked", "models": [
        {"base_name": "acme/good", "base_filename": "good.bin"},
    ]});
    let url = source_with(
        &server,
        "/hooked.tar.gz",
        &manifest,
        &[
            ("download_model", RECORDING_HOOK, 0o755),
            ("load_model", RECORDING_HOOK, 0o755),
        ],
    );
    let sandbox = Sandbox::new();
    plant_victims(&sandbox);
    sandbox.ok(&["models", "register-source", &url, "--trust"]);
    sandbox.ok(&["models", "download", "acme/good"]);
    let calls = sandbox.zoo_dir().join("acme/hooked/hook-calls.txt");
    assert_eq!(fs_err::read_to_string(&calls).unwrap().lines().count(), 1);

    // The installed manifest is changed behind zoo's back.
    let tampered = serde_json::json!({"name": "acme/hooked", "models": [
        {"base_name": "acme/evil", "base_filename": "x.pt", "version": "/../../../outside/x"},
    ]});
    fs_err::write(
        sandbox.zoo_dir().join("acme/hooked/manifest.json"),
        tampered.to_string(),
    )
    .unwrap();
    let before = outside(&sandbox);
    for args in [
        ["models", "download", "acme/evil"],
        ["models", "config", "acme/evil"],
    ] {
        let err = sandbox.fails(&args).stderr();
        assert!(err.contains("models[0].version"), "{err}");
    }
    assert_eq!(fs_err::read_to_string(&calls).unwrap().lines().count(), 1);
    assert_eq!(outside(&sandbox), before);
}

#[test]
fn names_that_make_the_model_path_the_zoo_dir_are_refused() {
    let server = TestServer::start();
    let good = serde_json::json!({"name": "acme/good", "models": [{"base_name": "acme/a"}]});
    let good_url = manifest_source(&server, "/good.zip", &good);
    let cases = [
        serde_json::json!({"base_name": "m", "version": "1/.."}),
        serde_json::json!({"base_name": ".."}),
        serde_json::json!({"base_name": "x/.."}),
        serde_json::json!({"base_name": "slash/"}),
    ];
    let mut sandbox = Sandbox::new();
    plant_victims(&sandbox);
    sandbox.ok(&["models", "register-source", &good_url]);
    for (index, model) in cases.iter().enumerate() {
        let manifest = serde_json::json!({"name": format!("evil/{index}"), "models": [model]});
        let url = manifest_source(&server, &format!("/evil{index}.zip"), &manifest);
        let err = sandbox.fails(&["models", "register-source", &url]).stderr();
        let field = if index == 0 { "version" } else { "base_name" };
        assert!(err.contains(&format!("models[0].{field}")), "{err}");
    }
    // In a custom manifest, such models are skipped: none counts as
    // downloaded, and deleting one cannot wipe the zoo dir.
    custom_manifest(&mut sandbox, serde_json::Value::Array(cases.to_vec()));
    let zoo_before = snapshot(&sandbox.zoo_dir());
    let before = outside(&sandbox);
    let listed = sandbox.ok(&["models", "list", "--downloaded-only", "--json"]);
    assert_eq!(listed.json(), serde_json::json!([]));
    assert!(
        listed.stderr().contains("custom.json"),
        "{}",
        listed.stderr()
    );
    for name in ["m@1/..", "..", "x/..", "slash/", "m"] {
        sandbox.fails(&["models", "delete", name]);
    }
    assert_eq!(snapshot(&sandbox.zoo_dir()), zoo_before);
    assert_eq!(outside(&sandbox), before);
    assert_eq!(sandbox.models(&[]), vec!["acme/a"]);
}

#[test]
fn sources_named_like_zoo_files_are_refused_even_with_overwrite() {
    let server = TestServer::start();
    let good = serde_json::json!({"name": "acme/good", "models": [{"base_name": "acme/a"}]});
    let good_url = manifest_source(&server, "/good.zip", &good);
    let sandbox = Sandbox::new();
    plant_victims(&sandbox);
    sandbox.ok(&["models", "register-source", &good_url]);
    let zoo_before = snapshot(&sandbox.zoo_dir());
    let before = outside(&sandbox);
    for (index, name) in [
        "sources-v1.json",
        ".registry.lock",
        ".tmp/x",
        ".locks",
        "acme/.tmp",
    ]
    .iter()
    .enumerate()
    {
        let manifest =
            serde_json::json!({"name": name, "models": [{"base_name": format!("m{index}")}]});
        let url = manifest_source(&server, &format!("/named{index}.zip"), &manifest);
        for args in [
            vec!["models", "register-source", url.as_str()],
            vec!["models", "register-source", url.as_str(), "--overwrite"],
        ] {
            let err = sandbox.fails(&args).stderr();
            assert!(err.contains("at `name`"), "{name}: {err}");
            assert!(err.contains(&format!("`{name}`")), "{name}: {err}");
        }
    }
    assert_eq!(snapshot(&sandbox.zoo_dir()), zoo_before);
    assert_eq!(outside(&sandbox), before);
    // The zoo dir still works.
    let sources = sandbox.ok(&["models", "list-sources", "--json"]).json();
    assert_eq!(sources.as_array().unwrap().len(), 1);
    assert_eq!(sandbox.models(&[]), vec!["acme/a"]);
}

#[test]
fn model_file_named_manifest_json_cannot_delete_its_sources_manifest() {
    let server = TestServer::start();
    server.file("/w/m.json", b"{}".to_vec());
    let manifest = serde_json::json!({"name": "acme/models", "models": [
        managed("acme/self", "manifest.json", &server.url("/w/m.json")),
    ]});
    let url = manifest_source(&server, "/self.zip", &manifest);
    let mut sandbox = Sandbox::new();
    plant_victims(&sandbox);
    let err = sandbox.fails(&["models", "register-source", &url]).stderr();
    assert!(err.contains("models[0].base_filename"), "{err}");
    assert!(err.contains("`manifest.json`"), "{err}");

    // In the zoo dir, the index and the lock are zoo's too.
    let good = serde_json::json!({"name": "acme/good", "models": [{"base_name": "acme/a"}]});
    sandbox.ok(&[
        "models",
        "register-source",
        &manifest_source(&server, "/good.zip", &good),
    ]);
    custom_manifest(
        &mut sandbox,
        serde_json::json!([
            managed("acme/index", "sources-v1.json", &server.url("/w/m.json")),
            managed("acme/lock", ".registry.lock", &server.url("/w/m.json")),
        ]),
    );
    let zoo_before = snapshot(&sandbox.zoo_dir());
    let before = outside(&sandbox);
    for name in ["acme/index", "acme/lock"] {
        sandbox.fails(&["models", "delete", name]);
        sandbox.fails(&["models", "download", name]);
    }
    assert_eq!(snapshot(&sandbox.zoo_dir()), zoo_before);
    assert_eq!(outside(&sandbox), before);
    assert_eq!(sandbox.models(&[]), vec!["acme/a"]);
}

#[test]
fn custom_model_named_like_a_source_folder_cannot_touch_the_source() {
    let server = TestServer::start();
    server.file("/w/acme", b"x".to_vec());
    let good = serde_json::json!({"name": "acme/good", "models": [{"base_name": "acme/a"}]});
    let mut sandbox = Sandbox::new();
    plant_victims(&sandbox);
    sandbox.ok(&[
        "models",
        "register-source",
        &manifest_source(&server, "/good.zip", &good),
    ]);
    custom_manifest(
        &mut sandbox,
        serde_json::json!([managed("collide", "acme", &server.url("/w/acme"))]),
    );
    let zoo_before = snapshot(&sandbox.zoo_dir());
    let before = outside(&sandbox);
    for args in [
        ["models", "delete", "collide"],
        ["models", "download", "collide"],
    ] {
        let err = sandbox.fails(&args).stderr();
        assert!(err.contains("is the folder of source"), "{err}");
    }
    assert!(sandbox.models(&["-d"]).is_empty());
    assert_eq!(snapshot(&sandbox.zoo_dir()), zoo_before);
    assert_eq!(outside(&sandbox), before);
}

const MARKING_HOOK: &str = "#!/bin/sh\ntouch hook-ran\nprintf 'w' > \"$2\"\n";

#[test]
fn trust_source_by_a_name_an_archive_source_claims_is_refused() {
    let server = TestServer::start();
    let manifest = serde_json::json!({"name": "acme/models", "models": [
        {"base_name": "acme/hooked", "base_filename": "w.bin"},
    ]});
    let archive_url = source_with(
        &server,
        "/claims.tar.gz",
        &manifest,
        &[("download_model", MARKING_HOOK, 0o755)],
    );
    let github = FakeGitHub::start();
    github.add_repo(
        RepoSpec::new("acme", "models").git_ref(
            "main",
            Archive::new().file(
                "manifest.json",
                serde_json::json!({"name": "acme/real", "models": [{"base_name": "acme/r"}]})
                    .to_string(),
            ),
        ),
    );
    let sandbox = Sandbox::with_github(&github.api_url());
    plant_victims(&sandbox);
    sandbox.ok(&["models", "register-source", &archive_url]);
    let before = outside(&sandbox);

    // `acme/models` is the GitHub repo's identifier; the archive only calls
    // itself that. Neither trust nor delete may pick the archive.
    for args in [
        ["models", "trust-source", "acme/models"],
        ["models", "delete-source", "acme/models"],
    ] {
        let err = sandbox.fails(&args).stderr();
        assert!(err.contains("could mean several sources"), "{err}");
        assert!(err.contains(&format!("`{archive_url}`")), "{err}");
        assert!(
            err.contains("https://github.com/acme/models (not registered)"),
            "{err}"
        );
    }
    let err = sandbox
        .fails(&["models", "download", "acme/hooked"])
        .stderr();
    assert!(err.contains("not trusted"), "{err}");
    assert!(!sandbox.zoo_dir().join("acme/models/hook-ran").exists());

    // Once the repo is registered, the identifier means it.
    sandbox.ok(&["models", "register-source", "acme/models"]);
    let run = sandbox.ok(&["models", "trust-source", "acme/models"]);
    assert!(
        run.stderr().contains("`https://github.com/acme/models`"),
        "{}",
        run.stderr()
    );
    let sources = sandbox.ok(&["models", "list-sources", "--json"]).json();
    let trusted: Vec<(&str, bool)> = sources
        .as_array()
        .unwrap()
        .iter()
        .map(|source| {
            (
                source["url"].as_str().unwrap(),
                source["trusted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        trusted,
        vec![
            (archive_url.as_str(), false),
            ("https://github.com/acme/models", true)
        ]
    );
    sandbox.fails(&["models", "download", "acme/hooked"]);
    assert!(!sandbox.zoo_dir().join("acme/models/hook-ran").exists());
    assert_eq!(outside(&sandbox), before);
}

#[test]
fn trust_by_an_unclaimed_name_says_which_source_was_trusted() {
    let server = TestServer::start();
    let manifest = serde_json::json!({"name": "Traffic Sign Models", "models": [
        {"base_name": "signs", "base_filename": "w.bin"},
    ]});
    let url = source_with(
        &server,
        "/signs.tar.gz",
        &manifest,
        &[("download_model", MARKING_HOOK, 0o755)],
    );
    let sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &url]);
    let run = sandbox.ok(&["models", "trust-source", "Traffic Sign Models"]);
    let message = run.stderr();
    assert!(message.contains(&format!("`{url}`")), "{message}");
    assert!(
        message.contains("selected by its manifest name `Traffic Sign Models`"),
        "{message}"
    );
    assert!(message.contains("is trusted"), "{message}");
    sandbox.ok(&["models", "download", "signs"]);
    assert!(
        sandbox
            .zoo_dir()
            .join("Traffic Sign Models/hook-ran")
            .exists()
    );
}

#[test]
fn delete_source_by_ambiguous_name_is_refused() {
    let server = TestServer::start();
    let manifest = serde_json::json!({"name": "acme/models", "models": [{"base_name": "acme/m"}]});
    let url = manifest_source(&server, "/claims.zip", &manifest);
    let sandbox = Sandbox::new();
    plant_victims(&sandbox);
    sandbox.ok(&["models", "register-source", &url]);
    let zoo_before = snapshot(&sandbox.zoo_dir());
    let before = outside(&sandbox);
    let err = sandbox
        .fails(&["models", "delete-source", "acme/models"])
        .stderr();
    assert!(err.contains("could mean several sources"), "{err}");
    assert!(err.contains("give the identifier"), "{err}");
    assert_eq!(snapshot(&sandbox.zoo_dir()), zoo_before);
    let run = sandbox.ok(&["models", "delete-source", &url]);
    assert!(
        run.stderr().contains(&format!("`{url}`")),
        "{}",
        run.stderr()
    );
    assert!(sandbox.models(&[]).is_empty());
    assert_eq!(outside(&sandbox), before);
}

#[test]
fn overwrite_keeps_the_old_model_when_the_fetch_fails_or_is_offline() {
    let server = TestServer::start();
    server.file("/w/model.pt", b"version one".to_vec());
    let inner = Archive::new().file("weights.bin", "archive one");
    server.file("/w/bundle.zip", inner.to_zip());
    let mut bundle = managed("acme/bundle", "bundle.zip", &server.url("/w/bundle.zip"));
    bundle["manager"]["config"]["extract_archive"] = true.into();
    bundle["manager"]["config"]["delete_archive"] = true.into();
    let manifest = serde_json::json!({"name": "acme/models", "models": [
        managed("acme/model", "model.pt", &server.url("/w/model.pt")),
        bundle,
    ]});
    let mut sandbox = Sandbox::new();
    sandbox.ok(&[
        "models",
        "register-source",
        &manifest_source(&server, "/source.zip", &manifest),
    ]);
    sandbox.ok(&["models", "download", "acme/model"]);
    sandbox.ok(&["models", "download", "acme/bundle"]);
    let model = sandbox.zoo_dir().join("acme/models/model.pt");
    let weights = sandbox.zoo_dir().join("acme/models/bundle/weights.bin");
    let zoo_before = snapshot(&sandbox.zoo_dir());

    // The server breaks: the overwrite fails and the old files stay.
    server.route("/w/model.pt", Response::status(404));
    server.route(
        "/w/bundle.zip",
        Response::ok(b"PK\x03\x04 not a zip".to_vec()),
    );
    sandbox.fails(&["models", "download", "acme/model", "--overwrite"]);
    sandbox.fails(&["models", "download", "acme/bundle", "--overwrite"]);
    assert_eq!(fs_err::read(&model).unwrap(), b"version one");
    assert_eq!(fs_err::read(&weights).unwrap(), b"archive one");
    assert_eq!(snapshot(&sandbox.zoo_dir()), zoo_before);

    // Offline: nothing is deleted either.
    sandbox.env.push(("ZOO_OFFLINE".into(), "1".into()));
    let err = sandbox
        .fails(&["models", "download", "acme/model", "--overwrite"])
        .stderr();
    assert!(err.contains("ZOO_OFFLINE"), "{err}");
    assert_eq!(fs_err::read(&model).unwrap(), b"version one");
    sandbox.env.pop();

    // A successful overwrite replaces the files.
    server.file("/w/model.pt", b"version two".to_vec());
    server.file(
        "/w/bundle.zip",
        Archive::new().file("weights.bin", "archive two").to_zip(),
    );
    sandbox.ok(&["models", "download", "acme/model", "--overwrite"]);
    sandbox.ok(&["models", "download", "acme/bundle", "--overwrite"]);
    assert_eq!(fs_err::read(&model).unwrap(), b"version two");
    assert_eq!(fs_err::read(&weights).unwrap(), b"archive two");
    assert!(!sandbox.zoo_dir().join("acme/models/bundle.zip").exists());
    assert_eq!(snapshot(&sandbox.zoo_dir()).len(), zoo_before.len());
}

#[test]
fn a_model_archive_that_fails_to_extract_is_removed_and_fetched_again() {
    let server = TestServer::start();
    server.route("/w/bad.zip", Response::ok(b"PK\x03\x04 broken".to_vec()));
    let mut model = managed("acme/bad", "bad.zip", &server.url("/w/bad.zip"));
    model["manager"]["config"]["extract_archive"] = true.into();
    let manifest = serde_json::json!({"name": "acme/models", "models": [model]});
    let sandbox = Sandbox::new();
    sandbox.ok(&[
        "models",
        "register-source",
        &manifest_source(&server, "/source.zip", &manifest),
    ]);
    let archive = sandbox.zoo_dir().join("acme/models/bad.zip");
    for attempt in 1..=2 {
        let err = sandbox.fails(&["models", "download", "acme/bad"]).stderr();
        assert!(err.contains("could not be extracted"), "{err}");
        assert!(err.contains("zoo models download acme/bad"), "{err}");
        assert!(!archive.exists(), "the broken archive was kept");
        // Each attempt fetches the archive again rather than re-extracting
        // the broken copy.
        assert_eq!(server.requests_to("/w/bad.zip").len(), attempt);
    }
    server.file(
        "/w/bad.zip",
        Archive::new().file("weights.bin", "fixed").to_zip(),
    );
    sandbox.ok(&["models", "download", "acme/bad"]);
    assert_eq!(
        fs_err::read(sandbox.zoo_dir().join("acme/models/bad/weights.bin")).unwrap(),
        b"fixed"
    );
}

/// The `register-*` staging folders in the zoo's `.tmp`.
fn register_staging(sandbox: &Sandbox) -> Vec<std::path::PathBuf> {
    let Ok(entries) = fs_err::read_dir(sandbox.zoo_dir().join(".tmp")) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("register-")
        })
        .collect();
    found.sort();
    found
}

/// Starts `register-source url` and waits until its staging folder holds
/// part of the (stalled) download.
fn start_stalled_register(sandbox: &Sandbox, url: &str) -> std::process::Child {
    let known = register_staging(sandbox);
    let mut child = sandbox
        .command(&["models", "register-source", url])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let fetching = || {
        register_staging(sandbox)
            .into_iter()
            .filter(|dir| !known.contains(dir))
            .any(|dir| {
                fs_err::metadata(dir.join(".source.archive.partial"))
                    .is_ok_and(|meta| meta.len() >= 100_000)
            })
    };
    while !fetching() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !fetching() {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("the registration never started");
    }
    child
}

#[test]
fn staging_left_by_killed_processes_is_removed() {
    let server = TestServer::start();
    let filler: Vec<u8> = (0..400_000u32)
        .map(|index| (index * 7 % 251) as u8)
        .collect();
    let big = Archive::new()
        .file("manifest.json", r#"{"name": "big/source", "models": []}"#)
        .file("filler.bin", filler);
    server.route(
        "/big.tar",
        Response::ok(big.to_tar()).stall_after(150_000, Duration::from_secs(120)),
    );
    let good = serde_json::json!({"name": "acme/good", "models": [{"base_name": "acme/a"}]});
    let good_url = manifest_source(&server, "/good.zip", &good);
    let big_url = server.url("/big.tar");
    let sandbox = Sandbox::new();
    plant_victims(&sandbox);
    let before = outside(&sandbox);

    for _ in 0..2 {
        let mut child = start_stalled_register(&sandbox, &big_url);
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let dead = register_staging(&sandbox);
    assert_eq!(dead.len(), 2, "{dead:?}");
    let mut live = start_stalled_register(&sandbox, &big_url);
    let live_dirs: Vec<_> = register_staging(&sandbox)
        .into_iter()
        .filter(|dir| !dead.contains(dir))
        .collect();
    assert_eq!(live_dirs.len(), 1);

    // The next command that takes the registry lock removes the dead
    // processes' staging, and only theirs.
    sandbox.ok(&["models", "register-source", &good_url]);
    assert_eq!(register_staging(&sandbox), live_dirs);
    live.kill().unwrap();
    live.wait().unwrap();
    sandbox.ok(&["models", "trust-source", &good_url]);
    assert!(register_staging(&sandbox).is_empty());
    assert_eq!(outside(&sandbox), before);
}

#[test]
fn hook_that_runs_past_the_timeout_is_killed_with_its_children() {
    let server = TestServer::start();
    let manifest = serde_json::json!({"name": "acme/slow", "models": [
        {"base_name": "acme/slow-model", "base_filename": "w.bin"},
    ]});
    // The hook starts a child that would outlive it, then waits.
    let hook = "#!/bin/sh\nsleep 60 &\necho $! > child.pid\nwait\n";
    let url = source_with(
        &server,
        "/slow.tar.gz",
        &manifest,
        &[("download_model", hook, 0o755)],
    );
    let mut sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &url, "--trust"]);
    sandbox.env.push(("ZOO_HOOK_TIMEOUT".into(), "1".into()));
    let started = Instant::now();
    let err = sandbox
        .fails(&["models", "download", "acme/slow-model"])
        .stderr();
    assert!(started.elapsed() < Duration::from_secs(20), "{err}");
    for needle in [
        "download_model",
        "acme/slow-model",
        "killed after 1s",
        "ZOO_HOOK_TIMEOUT",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let pid = fs_err::read_to_string(sandbox.zoo_dir().join("acme/slow/child.pid")).unwrap();
    let proc = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
    let waited = Instant::now();
    // Gone, or a zombie waiting for its new parent to reap it.
    while fs_err::read_to_string(proc.join("stat")).is_ok_and(|stat| !stat.contains(") Z")) {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the hook's child survived the timeout"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sandbox.fails(&["models", "find", "acme/slow-model"]);
}

#[test]
fn bad_hook_timeouts_are_a_clear_error() {
    for value in ["abc", "0", "-5", "inf"] {
        let mut sandbox = Sandbox::new();
        sandbox.env.push(("ZOO_HOOK_TIMEOUT".into(), value.into()));
        let err = sandbox.fails(&["models", "list"]).stderr();
        assert!(err.contains("`ZOO_HOOK_TIMEOUT`"), "{value}: {err}");
        assert!(err.contains(&format!("`{value}`")), "{value}: {err}");
        assert!(err.contains("positive number of seconds"), "{value}: {err}");
    }
}

#[test]
fn hooks_are_found_by_a_def_at_the_start_of_a_line() {
    let server = TestServer::start();
    let manifest = serde_json::json!({"name": "acme/py", "models": [
        {"base_name": "acme/py-model", "base_filename": "w.bin"},
    ]});
    // Mentions the hook, but defines it nowhere at the top level.
    let init = "# def download_model(model_name, model_path) is not here\nclass Loader:\n    def download_model(self, a, b):\n        pass\nNOTE = 'def download_model('\n";
    let url = source_with(
        &server,
        "/py.tar.gz",
        &manifest,
        &[("__init__.py", init, 0o644)],
    );
    let mut sandbox = Sandbox::new();
    // A Python that would leave a mark if zoo ran it.
    let marker = sandbox.dir.path().join("python-ran");
    let python = sandbox.dir.path().join("python");
    fs_err::write(
        &python,
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display()),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    sandbox
        .env
        .push(("ZOO_PYTHON".into(), python.display().to_string()));
    sandbox.ok(&["models", "register-source", &url, "--trust"]);
    let err = sandbox
        .fails(&["models", "download", "acme/py-model"])
        .stderr();
    assert!(err.contains("ships no `download_model` hook"), "{err}");
    assert!(
        !marker.exists(),
        "zoo ran Python for a hook that is not there"
    );
}

#[test]
fn a_symlink_in_a_source_folder_cannot_redirect_writes_or_deletes_outside() {
    let server = TestServer::start();
    server.file("/w/model.pt", b"served".to_vec());
    let manifest = serde_json::json!({"name": "acme/models", "models": [
        managed("acme/model", "model.pt", &server.url("/w/model.pt")),
    ]});
    let sandbox = Sandbox::new();
    plant_victims(&sandbox);
    sandbox.ok(&[
        "models",
        "register-source",
        &manifest_source(&server, "/source.zip", &manifest),
    ]);
    let victim = sandbox.dir.path().join("outside/x.pt");
    let link = sandbox.zoo_dir().join("acme/models/model.pt");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let before = outside(&sandbox);
    for args in [
        vec!["models", "download", "acme/model"],
        vec!["models", "download", "acme/model", "--overwrite"],
        vec!["models", "delete", "acme/model"],
        vec!["models", "find", "acme/model"],
    ] {
        let err = sandbox.fails(&args).stderr();
        assert!(err.contains("symbolic link"), "{args:?}: {err}");
    }
    assert_eq!(fs_err::read(&victim).unwrap(), b"victim");
    assert_eq!(outside(&sandbox), before);

    // The source folder itself swapped for a link to a folder outside.
    fs_err::remove_file(&link).unwrap();
    let moved = sandbox.dir.path().join("outside/moved");
    fs_err::rename(sandbox.zoo_dir().join("acme/models"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, sandbox.zoo_dir().join("acme/models")).unwrap();
    let before = outside(&sandbox);
    for args in [
        vec!["models", "download", "acme/model"],
        vec!["models", "download", "acme/model", "--overwrite"],
    ] {
        let err = sandbox.fails(&args).stderr();
        assert!(err.contains("symbolic link"), "{args:?}: {err}");
    }
    assert!(server.requests_to("/w/model.pt").is_empty());
    assert_eq!(outside(&sandbox), before);
}
