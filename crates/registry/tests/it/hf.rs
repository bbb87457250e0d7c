//! Built-in models whose weights are a Hugging Face repo, downloaded through
//! a loopback Hub (`FakeHub`: the revision API, `resolve`, LFS files by a
//! redirect to a second "CDN" host with the Hub's headers).

use zoo_registry::{Registry, RegistryConfig};
use zoo_sources::{NoProgress, SNAPSHOT_RECORD, Snapshot};
use zoo_test_support::{FakeHub, HubRepo, safetensors_bytes, sha256_hex};

/// FiftyOne's `rtdetr-v2-s-coco-torch` names `PekingU/rtdetr_v2_r18vd`.
const MODEL: &str = "rtdetr-v2-s-coco-torch";
const REPO: &str = "PekingU/rtdetr_v2_r18vd";

fn weights() -> Vec<u8> {
    let values: Vec<f32> = (0..4096).map(|index| index as f32 * 0.5).collect();
    safetensors_bytes(&[("model.decoder.weight", &[64, 64], &values)])
}

fn repo() -> HubRepo {
    HubRepo::new(REPO, "v1")
        .file("config.json", br#"{"model_type": "rt_detr_v2"}"#.to_vec())
        .file(
            "preprocessor_config.json",
            br#"{"image_processor_type": "RTDetrImageProcessor"}"#.to_vec(),
        )
        .lfs_file("model.safetensors", weights())
        .lfs_file("tf_model.h5", b"tensorflow weights".to_vec())
}

fn registry(root: &std::path::Path, hub: &FakeHub, token: Option<&str>) -> Registry {
    let mut config = RegistryConfig::new(root);
    config.builtin = Some(zoo_registry::builtin_manifest());
    config.hf_endpoint = hub.endpoint();
    config.hf_token = token.map(str::to_owned);
    config.transfer.retries = 0;
    Registry::new(config)
}

/// The repo lands in the model's folder at the commit `main` resolves to,
/// every file the Hub lists but other frameworks' weights, the LFS file
/// checked against its sha256, and the commit recorded beside the files;
/// a second download fetches nothing.
#[test]
fn a_transformers_builtin_downloads_its_repo_at_one_commit() {
    let hub = FakeHub::start();
    let repo = repo();
    let commit = repo.commit().to_owned();
    hub.add_repo(repo);
    let root = tempfile::tempdir().unwrap();
    let registry = registry(root.path(), &hub, None);
    let downloaded = registry.download_model(MODEL, false, &NoProgress).unwrap();
    assert!(downloaded.fetched);
    let folder = root.path().join(MODEL);
    assert_eq!(downloaded.path, folder);
    assert_eq!(
        fs_err::read(folder.join("model.safetensors")).unwrap(),
        weights()
    );
    assert_eq!(
        fs_err::read(folder.join("config.json")).unwrap(),
        br#"{"model_type": "rt_detr_v2"}"#
    );
    assert!(!folder.join("tf_model.h5").exists());
    let snapshot = Snapshot::read(&folder).unwrap();
    assert_eq!(snapshot.repo, REPO);
    assert_eq!(snapshot.revision, "main");
    assert_eq!(snapshot.commit, commit);
    let lfs = snapshot
        .files
        .iter()
        .find(|file| file.path == "model.safetensors")
        .unwrap();
    assert_eq!(lfs.sha256.as_deref(), Some(sha256_hex(&weights()).as_str()));
    let model = registry.model(MODEL).unwrap();
    assert_eq!(registry.hub_snapshot(&model).unwrap(), snapshot);
    // The model is handed the local folder, at the recorded commit.
    let (_, config) = registry
        .deployment_config(MODEL, &serde_json::Map::new())
        .unwrap();
    assert_eq!(config.config["name_or_path"], folder.to_str().unwrap());
    assert_eq!(config.config["revision"], commit.as_str());
    // The files were asked for at the commit, not at `main`.
    let resolved: Vec<String> = hub
        .hub
        .requests()
        .into_iter()
        .map(|request| request.path)
        .filter(|path| path.contains("/resolve/"))
        .collect();
    assert_eq!(resolved.len(), 3, "{resolved:?}");
    assert!(
        resolved.iter().all(|path| path.contains(&commit)),
        "{resolved:?}"
    );
    assert_eq!(hub.cdn.requests().len(), 1);
    // No partial folder is left, and a second call fetches nothing.
    assert!(!root.path().join(format!(".{MODEL}.partial")).exists());
    hub.hub.clear_requests();
    let again = registry.download_model(MODEL, false, &NoProgress).unwrap();
    assert!(!again.fetched);
    assert!(hub.hub.requests().is_empty());
}

/// A CDN serving other bytes than the sha256 the Hub states is refused:
/// nothing is installed, and the error names the model, the repo and the
/// digest check.
#[test]
fn a_tampered_lfs_file_is_refused() {
    let hub = FakeHub::start();
    hub.add_repo(repo());
    let mut evil = weights();
    evil[100] ^= 0xff;
    hub.tamper(&sha256_hex(&weights()), evil);
    let root = tempfile::tempdir().unwrap();
    let registry = registry(root.path(), &hub, None);
    let error = registry
        .download_model(MODEL, false, &NoProgress)
        .unwrap_err();
    let chain = error_chain(&error);
    assert!(chain.contains(MODEL), "{chain}");
    assert!(chain.contains(REPO), "{chain}");
    assert!(chain.contains("sha256"), "{chain}");
    assert!(!root.path().join(MODEL).exists());
    let model = registry.model(MODEL).unwrap();
    assert!(registry.downloaded_path(&model).is_none());
}

/// `HF_TOKEN` reaches the Hub's host (API and `resolve`), never the CDN a
/// redirect leads to; a private repo without it is refused with a hint.
#[test]
fn the_token_goes_to_the_hub_and_not_to_the_cdn() {
    let hub = FakeHub::start();
    hub.add_repo(repo().private());
    hub.set_token(Some("hf_secret"));
    let root = tempfile::tempdir().unwrap();
    let error = registry(root.path(), &hub, None)
        .download_model(MODEL, false, &NoProgress)
        .unwrap_err();
    let chain = error_chain(&error);
    assert!(chain.contains("HF_TOKEN"), "{chain}");
    hub.hub.clear_requests();
    registry(root.path(), &hub, Some("hf_secret"))
        .download_model(MODEL, false, &NoProgress)
        .unwrap();
    let to_hub = hub.hub.requests();
    assert!(!to_hub.is_empty());
    for request in &to_hub {
        assert_eq!(
            request.header("authorization"),
            Some("Bearer hf_secret"),
            "{}",
            request.path
        );
    }
    let to_cdn = hub.cdn.requests();
    assert_eq!(to_cdn.len(), 1);
    assert!(to_cdn[0].header("authorization").is_none());
}

/// A pinned `revision` (FiftyOne's FC-CLIP entries pin a commit) is the
/// commit fetched and recorded.
#[test]
fn a_pinned_revision_is_fetched_and_recorded() {
    let pinned = "be25e3eac3dd8cc3c482b0b4251309bae3ab8419";
    let hub = FakeHub::start();
    hub.add_repo(
        HubRepo::new("Voxel51/fc-clip", "x")
            .at_commit(pinned)
            .lfs_file("fcclip.safetensors", weights()),
    );
    let root = tempfile::tempdir().unwrap();
    let registry = registry(root.path(), &hub, None);
    let downloaded = registry
        .download_model("fc-clip-coco-instance-torch", false, &NoProgress)
        .unwrap();
    let snapshot = Snapshot::read(&downloaded.path).unwrap();
    assert_eq!(snapshot.revision, pinned);
    assert_eq!(snapshot.commit, pinned);
    let api = hub
        .hub
        .requests()
        .into_iter()
        .find(|request| request.path.starts_with("/api/models/"))
        .unwrap();
    assert_eq!(
        api.path,
        format!("/api/models/Voxel51/fc-clip/revision/{pinned}")
    );
}

/// An interrupted download resumes: files already complete in the partial
/// folder are not fetched again, and a cut LFS file continues with `Range`.
#[test]
fn an_interrupted_download_resumes() {
    let hub = FakeHub::start();
    let repo = repo();
    let commit = repo.commit().to_owned();
    hub.add_repo(repo);
    let root = tempfile::tempdir().unwrap();
    // What an interrupted run leaves: the record, a finished small file
    // and half of the weights in their partial file.
    let partial = root.path().join(format!(".{MODEL}.partial"));
    fs_err::create_dir_all(&partial).unwrap();
    let record = serde_json::json!({
        "repo": REPO, "revision": "main", "commit": commit,
        "endpoint": hub.endpoint(), "files": [],
    });
    fs_err::write(partial.join(SNAPSHOT_RECORD), record.to_string()).unwrap();
    fs_err::write(
        partial.join("config.json"),
        br#"{"model_type": "rt_detr_v2"}"#,
    )
    .unwrap();
    let half = weights().len() / 2;
    fs_err::write(
        partial.join(".model.safetensors.partial"),
        &weights()[..half],
    )
    .unwrap();
    let registry = registry(root.path(), &hub, None);
    registry.download_model(MODEL, false, &NoProgress).unwrap();
    let folder = root.path().join(MODEL);
    assert_eq!(
        fs_err::read(folder.join("model.safetensors")).unwrap(),
        weights()
    );
    let resolved: Vec<String> = hub
        .hub
        .requests()
        .into_iter()
        .map(|request| request.path)
        .filter(|path| path.contains("/resolve/"))
        .collect();
    assert!(
        !resolved.iter().any(|path| path.ends_with("/config.json")),
        "{resolved:?}"
    );
    let cdn = hub.cdn.requests();
    assert_eq!(cdn.len(), 1);
    assert_eq!(cdn[0].range_start(), Some(half as u64));
}

/// Offline, a Hub model that is not downloaded is refused before any
/// request, naming the model and the switch.
#[test]
fn offline_mode_refuses_before_any_request() {
    let hub = FakeHub::start();
    hub.add_repo(repo());
    let root = tempfile::tempdir().unwrap();
    let mut config = RegistryConfig::new(root.path());
    config.builtin = Some(zoo_registry::builtin_manifest());
    config.hf_endpoint = hub.endpoint();
    config.offline = true;
    let error = Registry::new(config)
        .download_model(MODEL, false, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(error.contains(MODEL), "{error}");
    assert!(error.contains("ZOO_OFFLINE"), "{error}");
    assert!(hub.hub.requests().is_empty());
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
