use zoo_sources::{
    ExtractLimits, FetchedSource, GitHub, NoProgress, SourceError, SourceId, fetch_source,
};
use zoo_test_support::{Archive, FakeGitHub, RepoSpec, Response, TestServer};

fn github() -> FakeGitHub {
    let github = FakeGitHub::start();
    github.add_repo(
        RepoSpec::new("voxel51", "openai.clip")
            .git_ref(
                "main",
                Archive::new().file("manifest.json", "{\"name\": \"main\"}"),
            )
            .git_ref(
                "release/v2",
                Archive::new().file("models/sub/manifest.json", "{\"name\": \"v2\"}"),
            ),
    );
    github.add_repo(
        RepoSpec::new("acme", "private")
            .private()
            .git_ref("main", Archive::new().file("manifest.json", "{}")),
    );
    github.set_token(Some("tok"));
    github
}

fn fetch(
    id: &str,
    github: &FakeGitHub,
    token: Option<&str>,
) -> (tempfile::TempDir, Result<FetchedSource, SourceError>) {
    let work = tempfile::tempdir().unwrap();
    let client = GitHub::new(&github.api_url(), token.map(str::to_owned));
    let source: SourceId = id.parse().unwrap();
    let transfer = zoo_sources::TransferOptions {
        backoff: std::time::Duration::from_millis(5),
        ..Default::default()
    };
    let result = fetch_source(
        &source,
        &client,
        work.path(),
        &ExtractLimits::default(),
        &transfer,
        &NoProgress,
    );
    (work, result)
}

#[test]
fn github_forms_resolve_to_commits_and_trees() {
    let gh = github();
    let main_sha = gh.sha("voxel51", "openai.clip", "main").unwrap();
    let v2_sha = gh.sha("voxel51", "openai.clip", "release/v2").unwrap();
    let cases = [
        (
            "https://github.com/voxel51/openai.clip",
            &main_sha,
            "manifest.json",
        ),
        ("voxel51/openai.clip", &main_sha, "manifest.json"),
        (
            "voxel51/openai.clip/release/v2",
            &v2_sha,
            "models/sub/manifest.json",
        ),
        (
            "https://github.com/voxel51/openai.clip/tree/release/v2",
            &v2_sha,
            "models/sub/manifest.json",
        ),
        (
            "https://github.com/voxel51/openai.clip/tree/release/v2/models/sub",
            &v2_sha,
            "manifest.json",
        ),
    ];
    for (id, sha, file) in cases {
        let (_work, result) = fetch(id, &gh, None);
        let fetched = result.unwrap_or_else(|err| panic!("{id}: {err}"));
        assert_eq!(fetched.commit.as_deref(), Some(sha.as_str()), "{id}");
        assert!(
            fetched.root.join(file).is_file(),
            "{id}: {}",
            fetched.root.display()
        );
    }
    let commit = format!(
        "https://github.com/voxel51/openai.clip/commit/{}",
        &v2_sha[..10]
    );
    let (_work, result) = fetch(&commit, &gh, None);
    assert_eq!(result.unwrap().commit.as_deref(), Some(v2_sha.as_str()));
}

#[test]
fn private_repos_need_the_token_which_never_leaves_the_api_host() {
    let gh = github();
    let (_work, result) = fetch("acme/private", &gh, None);
    let message = result.unwrap_err().to_string();
    assert!(message.contains("GITHUB_TOKEN"), "{message}");
    assert!(message.contains("private"), "{message}");

    let (_work, result) = fetch("acme/private", &gh, Some("tok"));
    result.unwrap();
    assert!(
        gh.api
            .requests()
            .iter()
            .any(|request| request.header("authorization") == Some("Bearer tok"))
    );
    assert!(!gh.codeload.requests().is_empty());
    for request in gh.codeload.requests() {
        assert_eq!(
            request.header("authorization"),
            None,
            "token leaked to {}",
            request.path
        );
    }

    let (_work, result) = fetch("acme/private", &gh, Some("wrong"));
    assert!(matches!(
        result.unwrap_err(),
        SourceError::BadCredentials { .. }
    ));
}

#[test]
fn missing_things_and_rate_limits_explain_themselves() {
    let gh = github();
    let (_work, result) = fetch("nobody/nothing", &gh, None);
    assert!(result.unwrap_err().to_string().contains("not found"));
    let (_work, result) = fetch("voxel51/openai.clip/no/such/branch", &gh, None);
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("branch, tag or commit `no/such/branch`"),
        "{message}"
    );
    let (_work, result) = fetch(
        "https://github.com/voxel51/openai.clip/tree/main/missing",
        &gh,
        None,
    );
    assert!(result.unwrap_err().to_string().contains("folder `missing`"));
    gh.set_rate_limited(true);
    let (_work, result) = fetch("voxel51/openai.clip", &gh, None);
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("rate limit") && message.contains("GITHUB_TOKEN"),
        "{message}"
    );
}

#[test]
fn archive_urls_by_name_or_magic() {
    let server = TestServer::start();
    let gh = github();
    let archive = Archive::new().file("src/manifest.json", "{}");
    server.route("/a.tar.gz", Response::ok(archive.to_tar_gz()));
    server.route("/download", Response::ok(archive.to_zip()));
    server.route("/page", Response::ok("<html>not an archive</html>"));
    server.route("/missing.zip", Response::status(404));
    server.route(
        "/cut.zip",
        Response::ok(archive.to_zip()).truncate_after(20),
    );

    for path in ["/a.tar.gz", "/download"] {
        let (_work, result) = fetch(&server.url(path), &gh, None);
        let fetched = result.unwrap();
        assert!(fetched.root.join("src/manifest.json").is_file(), "{path}");
        assert_eq!(fetched.commit, None);
    }
    let (_work, result) = fetch(&server.url("/page"), &gh, None);
    assert!(matches!(
        result.unwrap_err(),
        SourceError::UnknownArchive { .. }
    ));
    let (_work, result) = fetch(&server.url("/missing.zip"), &gh, None);
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("404") && message.contains("check the URL"),
        "{message}"
    );
    let (_work, result) = fetch(&server.url("/cut.zip"), &gh, None);
    assert!(matches!(result.unwrap_err(), SourceError::Truncated { .. }));
}

#[test]
fn an_unreachable_server_is_a_clear_transport_error() {
    let server = TestServer::start();
    let url = server.url("/gone.zip");
    drop(server);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let gh = github();
    let (_work, result) = fetch(&url, &gh, None);
    let message = result.unwrap_err().to_string();
    assert!(message.contains("gone.zip"), "{message}");
}

/// A commit lookup that answers a `sha` which is not hexadecimal (here
/// multi-byte text, which the CLI once cut at a byte offset and panicked on)
/// is an error naming the URL, never a recorded commit.
#[test]
fn a_commit_sha_that_is_not_hex_is_refused() {
    let server = TestServer::start();
    for (index, sha) in [
        "ééééééééééééééééééééé",
        "abc",
        "../../etc",
        "g".repeat(40).as_str(),
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/repos/acme/repo{index}/commits/main");
        server.route(
            &path,
            Response::ok(serde_json::json!({ "sha": sha }).to_string()),
        );
        let client = GitHub::new(&server.url(""), None);
        let err = client
            .commit_sha("acme", &format!("repo{index}"), "main")
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&path), "{message}");
        assert!(message.contains("hexadecimal"), "{message}");
    }
    let good = "0123456789abcdef0123456789abcdef01234567";
    server.route(
        "/repos/acme/good/commits/main",
        Response::ok(serde_json::json!({ "sha": good }).to_string()),
    );
    let client = GitHub::new(&server.url(""), None);
    assert_eq!(
        client
            .commit_sha("acme", "good", "main")
            .unwrap()
            .as_deref(),
        Some(good)
    );
}
