use zoo_registry::{RegisterOutcome, RegistryError};
use zoo_sources::NoProgress;
use zoo_test_support::{Archive, FakeGitHub, RepoSpec, Response, TestServer};

use crate::{registry, snapshot};

fn manifest(name: &str, models: &[&str]) -> String {
    let models: Vec<serde_json::Value> = models
        .iter()
        .map(|model| serde_json::json!({"base_name": model, "tags": ["t"], "license": "MIT"}))
        .collect();
    serde_json::json!({"name": name, "url": "https://upstream.example", "models": models})
        .to_string()
}

fn fake() -> FakeGitHub {
    let github = FakeGitHub::start();
    github.add_repo(
        RepoSpec::new("acme", "zoo").git_ref(
            "main",
            Archive::new()
                .file("manifest.json", manifest("acme/zoo", &["acme/a", "acme/b"]))
                .file("__init__.py", "")
                .file(".hidden/manifest.json", manifest("hidden/zoo", &["h"])),
        ),
    );
    github.add_repo(
        RepoSpec::new("acme", "multi").git_ref(
            "main",
            Archive::new()
                .file("one/manifest.json", manifest("multi/one", &["m1"]))
                .file(
                    "one/nested/manifest.json",
                    manifest("multi/nested", &["never"]),
                )
                .file("two/manifest.json", manifest("multi/two", &["m2"]))
                .file(
                    "three/manifest.json",
                    r#"{"models": [{"base_name": "nameless"}]}"#,
                ),
        ),
    );
    github.add_repo(RepoSpec::new("rival", "zoo").git_ref(
        "main",
        Archive::new().file("manifest.json", manifest("acme/zoo", &["rival/x"])),
    ));
    github
}

fn names(registry: &zoo_registry::Registry) -> Vec<String> {
    registry
        .zoo()
        .unwrap()
        .zoo
        .models()
        .iter()
        .map(|model| model.name())
        .collect()
}

#[test]
fn registers_lists_and_deletes_a_source() {
    let github = fake();
    let root = tempfile::tempdir().unwrap();
    let registry = registry(root.path(), &github);
    let outcome = registry
        .register_source("acme/zoo", false, false, &NoProgress)
        .unwrap();
    let RegisterOutcome::Registered { source, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(source.url, "https://github.com/acme/zoo");
    assert_eq!(source.commit, github.sha("acme", "zoo", "main"));
    assert_eq!(source.manifests.len(), 1);
    assert_eq!(source.manifests[0].dir, "acme/zoo");
    assert!(root.path().join("acme/zoo/__init__.py").is_file());
    assert_eq!(names(&registry), vec!["acme/a", "acme/b"]);

    // The manifest's url is the identifier as registered.
    let installed: serde_json::Value =
        serde_json::from_slice(&fs_err::read(root.path().join("acme/zoo/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(installed["url"], "acme/zoo");

    // Registering again, by another spelling, changes nothing.
    let before = snapshot(root.path());
    let again = registry
        .register_source("https://github.com/acme/zoo.git", false, false, &NoProgress)
        .unwrap();
    assert!(matches!(again, RegisterOutcome::AlreadyRegistered(_)));
    assert_eq!(snapshot(root.path()), before);

    let deleted = registry
        .delete_source("https://github.com/acme/zoo/")
        .unwrap();
    assert_eq!(deleted.url, "https://github.com/acme/zoo");
    assert!(!root.path().join("acme").exists());
    assert!(names(&registry).is_empty());
    assert!(matches!(
        registry.delete_source("acme/zoo"),
        Err(RegistryError::NotRegistered { .. })
    ));
}

#[test]
fn one_repo_can_hold_several_sources() {
    let github = fake();
    let root = tempfile::tempdir().unwrap();
    let registry = registry(root.path(), &github);
    let outcome = registry
        .register_source("acme/multi", false, false, &NoProgress)
        .unwrap();
    let RegisterOutcome::Registered { source, skipped } = outcome else {
        panic!()
    };
    let dirs: Vec<&str> = source
        .manifests
        .iter()
        .map(|manifest| manifest.dir.as_str())
        .collect();
    assert_eq!(dirs, vec!["multi/one", "multi/two"]);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].contains("three/manifest.json"));
    assert_eq!(names(&registry), vec!["m1", "m2"]);
    // A nested manifest below a source folder stays part of that folder.
    assert!(root.path().join("multi/one/nested/manifest.json").is_file());
}

#[test]
fn name_conflicts_need_overwrite() {
    let github = fake();
    let root = tempfile::tempdir().unwrap();
    let registry = registry(root.path(), &github);
    registry
        .register_source("acme/zoo", false, false, &NoProgress)
        .unwrap();
    let before = snapshot(root.path());
    let err = registry
        .register_source("rival/zoo", false, false, &NoProgress)
        .unwrap_err();
    assert!(matches!(err, RegistryError::NameTaken { .. }), "{err}");
    assert!(err.to_string().contains("--overwrite"), "{err}");
    assert_eq!(snapshot(root.path()), before);

    registry
        .register_source("rival/zoo", true, false, &NoProgress)
        .unwrap();
    assert_eq!(names(&registry), vec!["rival/x"]);
    let urls: Vec<String> = registry
        .sources()
        .unwrap()
        .into_iter()
        .map(|source| source.url)
        .collect();
    assert_eq!(urls, vec!["https://github.com/rival/zoo"]);
}

#[test]
fn overwrite_refetches_and_trust_is_recorded() {
    let github = fake();
    let root = tempfile::tempdir().unwrap();
    let registry = registry(root.path(), &github);
    registry
        .register_source("acme/zoo", false, false, &NoProgress)
        .unwrap();
    fs_err::write(root.path().join("acme/zoo/downloaded-model.pt"), b"weights").unwrap();
    github.add_repo(RepoSpec::new("acme", "zoo").git_ref(
        "main",
        Archive::new().file("manifest.json", manifest("acme/zoo", &["acme/c"])),
    ));
    registry
        .register_source("acme/zoo", true, true, &NoProgress)
        .unwrap();
    assert_eq!(names(&registry), vec!["acme/c"]);
    assert!(!root.path().join("acme/zoo/downloaded-model.pt").exists());
    assert!(registry.sources().unwrap()[0].trusted);
    registry.trust_source("acme/zoo", false).unwrap();
    assert!(!registry.sources().unwrap()[0].trusted);
}

#[test]
fn bad_sources_leave_the_zoo_dir_as_it_was() {
    let github = fake();
    let server = TestServer::start();
    let serve = |path: &str, archive: &Archive| server.route(path, Response::ok(archive.to_zip()));
    serve(
        "/malformed.zip",
        &Archive::new().file("manifest.json", "{\"name\": \"x\", \"models\": [}"),
    );
    serve(
        "/nameless.zip",
        &Archive::new().file("manifest.json", r#"{"models": []}"#),
    );
    serve(
        "/dotdot.zip",
        &Archive::new().file("manifest.json", r#"{"name": "../escape", "models": []}"#),
    );
    serve(
        "/slip.zip",
        &Archive::new()
            .file("manifest.json", manifest("s/s", &[]))
            .file("../../evil", "x"),
    );
    serve(
        "/symlink.zip",
        &Archive::new()
            .file("manifest.json", manifest("s/s", &[]))
            .symlink("l", "../../../etc"),
    );
    server.route(
        "/bomb.tar.gz",
        Response::ok(
            Archive::new()
                .file("manifest.json", manifest("b/b", &[]))
                .file("zeros", vec![0u8; 8 << 20])
                .to_tar_gz(),
        ),
    );
    server.route("/missing.zip", Response::status(404));
    server.route(
        "/cut.zip",
        Response::ok(
            Archive::new()
                .file("manifest.json", manifest("c/c", &[]))
                .to_zip(),
        )
        .truncate_after(30),
    );
    server.route("/page.html", Response::ok("<html></html>"));

    let root = tempfile::tempdir().unwrap();
    let mut config = zoo_registry::RegistryConfig::new(root.path());
    config.github_api_url = github.api_url();
    config.extract_limits.max_bytes = 1 << 20;
    config.transfer.backoff = std::time::Duration::from_millis(5);
    let registry = zoo_registry::Registry::new(config);
    registry
        .register_source("acme/zoo", false, false, &NoProgress)
        .unwrap();
    let before = snapshot(root.path());

    let cases = [
        ("/malformed.zip", "malformed JSON"),
        ("/nameless.zip", "no `manifest.json` with a `name`"),
        ("/dotdot.zip", "unsafe part `..`"),
        ("/slip.zip", "`..` component"),
        ("/symlink.zip", "pointing outside"),
        ("/bomb.tar.gz", "decompression bomb"),
        ("/missing.zip", "HTTP 404"),
        ("/cut.zip", "cut short"),
        ("/page.html", "not a zip, tar or tar.gz"),
    ];
    for (path, needle) in cases {
        let err = registry
            .register_source(&server.url(path), false, false, &NoProgress)
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains(needle), "{path}: {message}");
        assert_eq!(snapshot(root.path()), before, "{path} changed the zoo dir");
        let staging: Vec<_> = fs_err::read_dir(root.path().join(".tmp"))
            .unwrap()
            .collect();
        assert!(staging.is_empty(), "{path} left staging files");
    }
}

#[test]
fn concurrent_registrations_do_not_corrupt_the_index() {
    let github = fake();
    for index in 0..6 {
        github.add_repo(RepoSpec::new("many", &format!("r{index}")).git_ref(
            "main",
            Archive::new().file(
                "manifest.json",
                manifest(&format!("many/r{index}"), &[&format!("model{index}")]),
            ),
        ));
    }
    let root = tempfile::tempdir().unwrap();
    std::thread::scope(|scope| {
        for index in 0..6 {
            let registry = registry(root.path(), &github);
            scope.spawn(move || {
                registry
                    .register_source(&format!("many/r{index}"), false, false, &NoProgress)
                    .unwrap();
            });
        }
    });
    let registry = registry(root.path(), &github);
    assert_eq!(registry.sources().unwrap().len(), 6);
    let mut models = names(&registry);
    models.sort();
    assert_eq!(
        models,
        (0..6)
            .map(|index| format!("model{index}"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn offline_mode_refuses_to_fetch() {
    let github = fake();
    let root = tempfile::tempdir().unwrap();
    let mut config = zoo_registry::RegistryConfig::new(root.path());
    config.github_api_url = github.api_url();
    config.offline = true;
    let err = zoo_registry::Registry::new(config)
        .register_source("acme/zoo", false, false, &NoProgress)
        .unwrap_err();
    assert!(err.to_string().contains("ZOO_OFFLINE"), "{err}");
    assert!(github.api.requests().is_empty());
}

#[test]
fn a_broken_installed_manifest_never_hides_the_others() {
    let github = fake();
    let root = tempfile::tempdir().unwrap();
    let registry = registry(root.path(), &github);
    registry
        .register_source("acme/zoo", false, false, &NoProgress)
        .unwrap();
    registry
        .register_source("acme/multi", false, false, &NoProgress)
        .unwrap();
    fs_err::write(root.path().join("acme/zoo/manifest.json"), b"{oops").unwrap();
    let view = registry.zoo().unwrap();
    let models: Vec<String> = view.zoo.models().iter().map(|model| model.name()).collect();
    assert_eq!(models, vec!["m1", "m2"]);
    assert_eq!(view.problems.len(), 1);
    assert!(view.problems[0].contains("acme/zoo"), "{:?}", view.problems);
}
