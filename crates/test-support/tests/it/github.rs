use std::io::Cursor;

use serde_json::Value;
use zoo_test_support::{Archive, FakeGitHub, RepoSpec};

use crate::agent;

fn json(response: &mut ureq::http::Response<ureq::Body>) -> Value {
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

fn fake() -> FakeGitHub {
    let github = FakeGitHub::start();
    github.add_repo(
        RepoSpec::new("voxel51", "openai.clip")
            .default_branch("develop")
            .git_ref(
                "develop",
                Archive::new().file("manifest.json", "{\"v\": 1}"),
            )
            .git_ref("release/v2", Archive::new().file("sub/manifest.json", "{}")),
    );
    github.add_repo(
        RepoSpec::new("acme", "secret")
            .private()
            .git_ref("main", Archive::new().file("manifest.json", "{}")),
    );
    github.set_token(Some("s3cret"));
    github
}

#[test]
fn repo_info_names_the_default_branch() {
    let github = fake();
    let mut response = agent()
        .get(&format!("{}/repos/voxel51/openai.clip", github.api_url()))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = json(&mut response);
    assert_eq!(body["default_branch"], "develop");
    assert_eq!(body["full_name"], "voxel51/openai.clip");
}

#[test]
fn zipball_redirects_to_codeload_with_githubs_layout() {
    let github = fake();
    let url = format!(
        "{}/repos/voxel51/openai.clip/zipball/release/v2",
        github.api_url()
    );
    let mut response = agent().get(&url).call().unwrap();
    assert_eq!(response.status(), 200);
    let zip = response.body_mut().read_to_vec().unwrap();
    let archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let sha = github.sha("voxel51", "openai.clip", "release/v2").unwrap();
    let expected = format!("voxel51-openai.clip-{}/sub/manifest.json", &sha[..7]);
    let names: Vec<String> = archive
        .file_names()
        .map(|name| name.unwrap().into_owned())
        .collect();
    assert!(names.contains(&expected), "{names:?}");
    assert_eq!(github.codeload.requests().len(), 1);

    // Without a ref: the default branch.
    let mut default = agent()
        .get(&format!(
            "{}/repos/voxel51/openai.clip/zipball",
            github.api_url()
        ))
        .call()
        .unwrap();
    assert_eq!(default.status(), 200);
    let zip = default.body_mut().read_to_vec().unwrap();
    let archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    assert!(
        archive
            .file_names()
            .any(|name| name.unwrap().ends_with("/manifest.json"))
    );
}

#[test]
fn commit_lookup_resolves_branches_and_shas_and_422s_otherwise() {
    let github = fake();
    let sha = github.sha("voxel51", "openai.clip", "develop").unwrap();
    for reference in ["develop", &sha, &sha[..7]] {
        let mut response = agent()
            .get(&format!(
                "{}/repos/voxel51/openai.clip/commits/{reference}",
                github.api_url()
            ))
            .call()
            .unwrap();
        assert_eq!(response.status(), 200, "{reference}");
        assert_eq!(json(&mut response)["sha"], sha.as_str());
    }
    let mut missing = agent()
        .get(&format!(
            "{}/repos/voxel51/openai.clip/commits/release",
            github.api_url()
        ))
        .call()
        .unwrap();
    assert_eq!(missing.status(), 422);
    assert!(
        json(&mut missing)["message"]
            .as_str()
            .unwrap()
            .contains("No commit found")
    );
}

#[test]
fn private_repos_need_the_token_and_the_token_stays_on_the_api_host() {
    let github = fake();
    let info = format!("{}/repos/acme/secret", github.api_url());
    assert_eq!(agent().get(&info).call().unwrap().status(), 404);
    let wrong = agent()
        .get(&info)
        .header("Authorization", "Bearer nope")
        .call()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = agent()
        .get(&info)
        .header("Authorization", "Bearer s3cret")
        .call()
        .unwrap();
    assert_eq!(right.status(), 200);

    let mut zipball = agent()
        .get(&format!("{}/repos/acme/secret/zipball", github.api_url()))
        .header("Authorization", "Bearer s3cret")
        .call()
        .unwrap();
    assert_eq!(zipball.status(), 200);
    assert_eq!(&zipball.body_mut().read_to_vec().unwrap()[..2], b"PK");
    let codeload = github.codeload.requests();
    assert_eq!(codeload.len(), 1);
    assert_eq!(codeload[0].header("authorization"), None);
    assert!(codeload[0].query_param("token").is_some());
}

#[test]
fn rate_limit_answers_like_github() {
    let github = fake();
    github.set_rate_limited(true);
    let mut response = agent()
        .get(&format!("{}/repos/voxel51/openai.clip", github.api_url()))
        .call()
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
    assert!(
        json(&mut response)["message"]
            .as_str()
            .unwrap()
            .contains("rate limit")
    );
}

#[test]
fn unknown_repos_and_refs_are_404() {
    let github = fake();
    for path in [
        "/repos/nobody/nothing",
        "/repos/voxel51/openai.clip/zipball/no-such-branch",
        "/users/voxel51",
    ] {
        let response = agent()
            .get(&format!("{}{path}", github.api_url()))
            .call()
            .unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
}
