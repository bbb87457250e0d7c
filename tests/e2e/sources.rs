//! Registering, listing, inspecting and deleting sources (issue: remote
//! sources and manifests).

use zoo_test_support::{Archive, FakeGitHub, RepoSpec, Response, TestServer};

use crate::util::{Sandbox, corpus, snapshot};

fn manifest(name: &str, models: serde_json::Value) -> String {
    serde_json::json!({ "name": name, "url": "https://upstream.example", "models": models })
        .to_string()
}

fn zoo_repo() -> Archive {
    Archive::new()
        .file(
            "manifest.json",
            manifest(
                "acme/zoo",
                serde_json::json!([
                    {"base_name": "acme/det", "version": "1.0", "tags": ["detection", "torch"], "license": "MIT", "author": "Acme"},
                    {"base_name": "acme/det", "version": "1.10", "tags": ["detection", "torch"], "license": "MIT", "author": "Acme"},
                    {"base_name": "acme/det", "version": "1.9", "tags": ["detection"], "license": "MIT"},
                    {"base_name": "acme/cls", "tags": ["classification", "torch"], "license": "Apache-2.0, MIT",
                     "requirements": {"packages": ["zoo-no-such-package-xyz"], "cpu": {"support": true}}}
                ]),
            ),
        )
        .file("README.md", "acme")
}

fn fake_github() -> FakeGitHub {
    let github = FakeGitHub::start();
    github.add_repo(
        RepoSpec::new("acme", "zoo.models")
            .git_ref("main", zoo_repo())
            .git_ref(
                "release/v2",
                Archive::new().file(
                    "sub/dir/manifest.json",
                    manifest(
                        "acme/v2",
                        serde_json::json!([{"base_name": "acme/v2-model"}]),
                    ),
                ),
            ),
    );
    github.add_repo(RepoSpec::new("other", "zoo").git_ref(
        "main",
        Archive::new().file(
            "manifest.json",
            manifest(
                "other/zoo",
                serde_json::json!([{"base_name": "other/model", "tags": ["torch"]}]),
            ),
        ),
    ));
    github.add_repo(RepoSpec::new("acme", "private").private().git_ref(
        "main",
        Archive::new().file(
            "manifest.json",
            manifest(
                "acme/private",
                serde_json::json!([{"base_name": "acme/secret-model"}]),
            ),
        ),
    ));
    github.set_token(Some("t0ken"));
    github
}

#[test]
fn every_identifier_form_registers() {
    let github = fake_github();
    let server = TestServer::start();
    let simple = Archive::new().file(
        "pkg/manifest.json",
        manifest(
            "archive/zoo",
            serde_json::json!([{"base_name": "archive/model"}]),
        ),
    );
    server.route("/src.zip", Response::ok(simple.to_zip()));
    server.route("/src.tar", Response::ok(simple.to_tar()));
    server.route("/src.tar.gz", Response::ok(simple.to_tar_gz()));
    server.route("/src.tgz", Response::ok(simple.to_tar_gz()));
    server.route("/download", Response::ok(simple.to_zip()));

    let v2 = github.sha("acme", "zoo.models", "release/v2").unwrap();
    let cases: Vec<(String, &str)> = vec![
        ("https://github.com/acme/zoo.models".into(), "acme/det@1.10"),
        (
            "https://github.com/acme/zoo.models.git/".into(),
            "acme/det@1.10",
        ),
        ("acme/zoo.models".into(), "acme/det@1.10"),
        ("acme/zoo.models/release/v2".into(), "acme/v2-model"),
        (
            "https://github.com/acme/zoo.models/tree/release/v2".into(),
            "acme/v2-model",
        ),
        (
            "https://github.com/acme/zoo.models/tree/release/v2/sub/dir".into(),
            "acme/v2-model",
        ),
        (
            format!("https://github.com/acme/zoo.models/commit/{v2}"),
            "acme/v2-model",
        ),
        (server.url("/src.zip"), "archive/model"),
        (server.url("/src.tar"), "archive/model"),
        (server.url("/src.tar.gz"), "archive/model"),
        (server.url("/src.tgz"), "archive/model"),
        (server.url("/download"), "archive/model"),
    ];
    for (identifier, model) in cases {
        let sandbox = Sandbox::with_github(&github.api_url());
        sandbox.ok(&["models", "register-source", &identifier]);
        let names = sandbox.ok(&["models", "list", "--names-only"]).lines();
        assert!(names.contains(&model.to_owned()), "{identifier}: {names:?}");
        assert_eq!(
            sandbox.models(&[]).len(),
            names.len() - zoo_registry::builtin_manifest().models.len(),
            "built-in models are listed too"
        );
        let sources = sandbox.ok(&["models", "list-sources", "--json"]).json();
        assert_eq!(sources[0]["identifier"], identifier.as_str());
    }
}

#[test]
fn list_filters_info_and_versions() {
    let github = fake_github();
    let sandbox = Sandbox::with_github(&github.api_url());
    sandbox.ok(&["models", "register-source", "acme/zoo.models"]);
    sandbox.ok(&["models", "register-source", "other/zoo"]);

    let all = sandbox.models(&[]);
    assert_eq!(
        all,
        vec![
            "acme/det@1.0",
            "acme/det@1.10",
            "acme/det@1.9",
            "acme/cls",
            "other/model"
        ]
    );
    let torch = sandbox
        .ok(&["models", "list", "-n", "-t", "torch,detection"])
        .lines();
    // Built-ins carrying both tags come first (FiftyOne's tags: its
    // torchvision, Ultralytics, transformers ... detectors), in catalogue
    // order, then the sources' models.
    let builtin = zoo_registry::builtin_manifest().models;
    let builtin_names = |keep: &dyn Fn(&zoo_manifest::ManifestModel) -> bool| -> Vec<String> {
        builtin
            .iter()
            .filter(|model| keep(model))
            .map(|model| model.name())
            .collect()
    };
    let mut expected = builtin_names(&|model| {
        let tags = model.tags();
        tags.contains(&"torch".to_owned()) && tags.contains(&"detection".to_owned())
    });
    assert!(expected.contains(&"faster-rcnn-resnet50-fpn-coco-torch".to_owned()));
    assert!(expected.contains(&"yolov8n-coco-torch".to_owned()));
    expected.extend(["acme/det@1.0".to_owned(), "acme/det@1.10".to_owned()]);
    assert_eq!(torch, expected);
    let by_source = sandbox
        .ok(&[
            "models",
            "list",
            "-n",
            "--source",
            "https://github.com/other/zoo/",
        ])
        .lines();
    assert_eq!(by_source, vec!["other/model"]);
    let apache = sandbox
        .ok(&["models", "list", "-n", "-l", "Apache-2.0"])
        .lines();
    let mut expected = builtin_names(&|model| {
        model
            .licenses()
            .any(|license| license.eq_ignore_ascii_case("Apache-2.0"))
    });
    assert!(!expected.is_empty());
    expected.push("acme/cls".to_owned());
    assert_eq!(apache, expected);

    let table = sandbox.ok(&["models", "list"]).stdout();
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("https://github.com/acme/zoo.models"),
        "{table}"
    );
    let json = sandbox
        .ok(&[
            "models",
            "list",
            "--json",
            "-t",
            "classification",
            "-s",
            "acme/zoo.models",
        ])
        .json();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["name"], "acme/cls");
    assert_eq!(json[0]["downloaded"], false);

    // The latest version by loose order, and exact versions.
    let latest = sandbox.ok(&["models", "info", "acme/det", "--json"]).json();
    assert_eq!(latest["name"], "acme/det@1.10");
    assert_eq!(latest["manifest"]["author"], "Acme");
    let exact = sandbox
        .ok(&["models", "info", "acme/det@1.9", "--json"])
        .json();
    assert_eq!(exact["manifest"]["version"], "1.9");
    let text = sandbox.ok(&["models", "info", "acme/cls"]).stdout();
    assert!(text.contains("\"license\": \"Apache-2.0, MIT\""), "{text}");

    let missing = sandbox.fails(&["models", "info", "acme/det@7"]).stderr();
    assert!(missing.contains("no model named `acme/det@7`"), "{missing}");
    assert!(missing.contains("did you mean"), "{missing}");

    // Requirements: printed, and checked with the three error levels.
    let printed = sandbox.ok(&["models", "requirements", "acme/cls"]).stdout();
    assert!(printed.contains("zoo-no-such-package-xyz"), "{printed}");
    let failed = sandbox
        .fails(&["models", "requirements", "acme/cls", "--ensure"])
        .stderr();
    assert!(
        failed.contains("missing Python packages zoo-no-such-package-xyz"),
        "{failed}"
    );
    let warned = sandbox.ok(&[
        "models",
        "requirements",
        "acme/cls",
        "--ensure",
        "--error-level",
        "1",
    ]);
    assert!(warned.stderr().contains("warning:"), "{}", warned.stderr());
    sandbox.ok(&[
        "models",
        "requirements",
        "acme/cls",
        "--ensure",
        "--error-level",
        "2",
    ]);
    sandbox.ok(&["models", "requirements", "other/model", "--ensure"]);
}

#[test]
fn delete_source_removes_what_it_owns_and_nothing_else() {
    let github = fake_github();
    let sandbox = Sandbox::with_github(&github.api_url());
    sandbox.ok(&["models", "register-source", "other/zoo"]);
    let before = snapshot(&sandbox.zoo_dir());
    sandbox.ok(&["models", "register-source", "acme/zoo.models"]);
    // A file the user put in the zoo dir is not the source's.
    fs_err::write(sandbox.zoo_dir().join("mine.txt"), b"keep").unwrap();
    sandbox.ok(&[
        "models",
        "delete-source",
        "https://github.com/acme/zoo.models",
    ]);
    let mut expected = before;
    // The index is rewritten, so its size changes; compare names only.
    expected.push("mine.txt (4 bytes)".into());
    let strip = |entries: Vec<String>| -> Vec<String> {
        let mut entries: Vec<String> = entries
            .into_iter()
            .map(|entry| {
                if entry.starts_with("sources-v1.json") {
                    "sources-v1.json".into()
                } else {
                    entry
                }
            })
            .collect();
        entries.sort();
        entries
    };
    assert_eq!(strip(snapshot(&sandbox.zoo_dir())), strip(expected));
    assert_eq!(sandbox.models(&[]), vec!["other/model"]);
    let err = sandbox
        .fails(&["models", "delete-source", "acme/zoo.models"])
        .stderr();
    assert!(err.contains("no registered source matches"), "{err}");
}

#[test]
fn private_repos_and_the_token() {
    let github = fake_github();
    let sandbox = Sandbox::with_github(&github.api_url());
    let err = sandbox
        .fails(&["models", "register-source", "acme/private"])
        .stderr();
    assert!(err.contains("GITHUB_TOKEN"), "{err}");
    assert!(err.contains("private"), "{err}");

    let mut with_token = Sandbox::with_github(&github.api_url());
    with_token.env.push(("GITHUB_TOKEN".into(), "t0ken".into()));
    with_token.ok(&[
        "models",
        "register-source",
        "https://github.com/acme/private",
    ]);
    assert_eq!(with_token.models(&[]), vec!["acme/secret-model"]);
    let api_auth = github
        .api
        .requests()
        .iter()
        .filter(|request| request.header("authorization") == Some("Bearer t0ken"))
        .count();
    assert!(api_auth >= 2, "the token must reach the API host");
    assert!(!github.codeload.requests().is_empty());
    for request in github.codeload.requests() {
        assert_eq!(
            request.header("authorization"),
            None,
            "token leaked to the redirect host"
        );
    }

    let mut bad = Sandbox::with_github(&github.api_url());
    bad.env.push(("GITHUB_TOKEN".into(), "wrong".into()));
    let err = bad
        .fails(&["models", "register-source", "acme/private"])
        .stderr();
    assert!(err.contains("bad credentials"), "{err}");

    github.set_rate_limited(true);
    let err = sandbox
        .fails(&["models", "register-source", "other/zoo"])
        .stderr();
    assert!(err.contains("rate limit"), "{err}");
}

#[test]
fn the_corpus_registers_and_lists() {
    let github = FakeGitHub::start();
    let mut expected = Vec::new();
    let mut identifiers = Vec::new();
    for (stem, text) in corpus() {
        let (owner, repo) = stem.split_once("__").unwrap();
        let repo = repo.replace("__", "-");
        github.add_repo(
            RepoSpec::new(owner, &repo)
                .git_ref("main", Archive::new().file("manifest.json", text.clone())),
        );
        identifiers.push(format!("{owner}/{repo}"));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        for model in value["models"].as_array().unwrap() {
            expected.push(model["base_name"].as_str().unwrap().to_owned());
        }
    }
    let sandbox = Sandbox::with_github(&github.api_url());
    for identifier in &identifiers {
        sandbox.ok(&["models", "register-source", identifier]);
    }
    let listed = sandbox.models(&[]);
    // A source model named exactly like a built-in is shadowed by it
    // (merging skips the later one, as FiftyOne's does). One whose file is
    // named like a built-in's is not: a source's files live in its own
    // folder (`voxel51/clip-vit-base32-torch` and the built-in
    // `clip-vit-base32-torch` share `CLIP-ViT-B-32.pt`), as in FiftyOne.
    let builtin: Vec<String> = zoo_registry::builtin_manifest()
        .models
        .iter()
        .map(|model| model.name())
        .collect();
    expected.retain(|name| !builtin.contains(name));
    for name in &expected {
        assert!(listed.contains(name), "`{name}` missing from the list");
    }
    assert_eq!(listed.len(), expected.len());
    let sources = sandbox.ok(&["models", "list-sources", "--json"]).json();
    assert_eq!(sources.as_array().unwrap().len(), identifiers.len());
}

#[test]
fn bad_input_is_refused_and_leaves_the_zoo_dir_alone() {
    let github = fake_github();
    let server = TestServer::start();
    let zip = |archive: Archive| Response::ok(archive.to_zip());
    server.route(
        "/malformed.zip",
        zip(Archive::new().file("manifest.json", "{\"name\": \"m\", \"models\": [")),
    );
    server.route(
        "/nameless.zip",
        zip(Archive::new().file("manifest.json", "{\"models\": []}")),
    );
    server.route(
        "/dotdot.zip",
        zip(Archive::new().file("manifest.json", "{\"name\": \"a/../../b\", \"models\": []}")),
    );
    server.route(
        "/slip.zip",
        zip(Archive::new()
            .file("m/manifest.json", manifest("s/s", serde_json::json!([])))
            .file("../../../slip", "x")),
    );
    server.route(
        "/link.tar",
        Response::ok(
            Archive::new()
                .file("manifest.json", manifest("l/l", serde_json::json!([])))
                .symlink("escape", "/etc")
                .to_tar(),
        ),
    );
    server.route("/cut.zip", zip(zoo_repo()).truncate_after(50));
    server.route("/index.html", Response::ok("<html>hello</html>"));
    server.route("/gone.zip", Response::status(404));
    // The bomb: 128 MiB of zeros, a few hundred KiB gzipped, against a 16 MiB cap.
    let bomb = Archive::new()
        .file("manifest.json", manifest("b/b", serde_json::json!([])))
        .file("zeros", vec![0u8; 128 << 20]);
    server.route("/bomb.tar.gz", Response::ok(bomb.to_tar_gz()));

    let mut sandbox = Sandbox::with_github(&github.api_url());
    sandbox
        .env
        .push(("ZOO_MAX_EXTRACT_BYTES".into(), (16u64 << 20).to_string()));
    sandbox.ok(&["models", "register-source", "other/zoo"]);
    let before = snapshot(&sandbox.zoo_dir());
    let cases = [
        ("/malformed.zip", "malformed JSON"),
        ("/nameless.zip", "no `manifest.json` with a `name`"),
        ("/dotdot.zip", "unsafe part `..`"),
        ("/slip.zip", "`..` component"),
        ("/link.tar", "pointing outside"),
        ("/bomb.tar.gz", "decompression bomb"),
        ("/cut.zip", "cut short"),
        ("/index.html", "not a zip, tar or tar.gz"),
        ("/gone.zip", "HTTP 404"),
    ];
    for (path, needle) in cases {
        let url = server.url(path);
        let err = sandbox.fails(&["models", "register-source", &url]).stderr();
        assert!(err.contains(needle), "{path}: {err}");
        assert!(
            err.contains(&url) || err.contains(path),
            "{path}: the error must name the input: {err}"
        );
        assert_eq!(
            snapshot(&sandbox.zoo_dir()),
            before,
            "{path} changed the zoo dir"
        );
    }
    for bad in [
        "not a url",
        "ftp://x/y.zip",
        "https://github.com/a/b/blob/x",
    ] {
        let err = sandbox.fails(&["models", "register-source", bad]).stderr();
        assert!(err.contains("is not a source identifier"), "{bad}: {err}");
    }
    let mut offline = Sandbox::with_github(&github.api_url());
    offline.env.push(("ZOO_OFFLINE".into(), "1".into()));
    let err = offline
        .fails(&["models", "register-source", "other/zoo"])
        .stderr();
    assert!(err.contains("ZOO_OFFLINE"), "{err}");
}

#[test]
fn custom_manifest_paths_merge_after_builtin_and_before_sources() {
    let github = fake_github();
    let mut sandbox = Sandbox::with_github(&github.api_url());
    let custom = sandbox.dir.path().join("custom.json");
    fs_err::write(
        &custom,
        manifest("custom", serde_json::json!([{"base_name": "other/model", "description": "custom wins"}, {"base_name": "mine"}])),
    )
    .unwrap();
    let broken = sandbox.dir.path().join("broken.json");
    fs_err::write(&broken, "{").unwrap();
    sandbox.env.push((
        "ZOO_MANIFEST_PATHS".into(),
        format!("{}:{}", broken.display(), custom.display()),
    ));
    sandbox.ok(&["models", "register-source", "other/zoo"]);
    let run = sandbox.ok(&["models", "list", "-n"]);
    assert!(run.lines().contains(&"mine".to_owned()));
    // The source's clashing model is skipped with a warning; the broken
    // manifest is reported and hides nothing.
    assert!(run.stderr().contains("already exists"), "{}", run.stderr());
    assert!(run.stderr().contains("broken.json"), "{}", run.stderr());
    let info = sandbox
        .ok(&["models", "info", "other/model", "--json"])
        .json();
    assert_eq!(info["manifest"]["description"], "custom wins");
}
