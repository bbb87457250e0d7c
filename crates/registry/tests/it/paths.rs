//! Paths and identity: model paths stay inside their folder whatever the
//! manifest says, stale staging is cleaned, and a source is named exactly.

use std::path::Path;

use proptest::prelude::*;
use zoo_manifest::{FileName, ManifestModel, Origin, ZooModel};
use zoo_registry::{Registry, RegistryConfig, RegistryError};
use zoo_sources::NoProgress;
use zoo_test_support::{Archive, FakeGitHub, RepoSpec};

use crate::{registry, snapshot};

fn hand_built(
    base_name: &str,
    version: Option<&str>,
    base_filename: Option<&str>,
) -> ManifestModel {
    // Built in code, so nothing checked it on the way in.
    let mut model: ManifestModel =
        serde_json::from_value(serde_json::json!({"base_name": "placeholder"})).unwrap();
    model.base_name = base_name.to_owned();
    model.version = version.map(str::to_owned);
    model.base_filename = base_filename.map(str::to_owned);
    model
}

fn hostile() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "..",
        ".",
        "/",
        "\\",
        "\0",
        "",
        "a",
        "1.0",
        "manifest.json",
        ".tmp",
        "sources-v1.json",
        "__init__.py",
        "x.zip",
    ]);
    prop_oneof![
        prop::collection::vec(pieces, 0..5).prop_map(|parts| parts.concat()),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn hand_built_models_get_a_path_inside_their_folder_or_an_error(
        base_name in hostile(),
        version in proptest::option::of(hostile()),
        base_filename in proptest::option::of(hostile()),
        builtin in any::<bool>(),
    ) {
        let root = Path::new("/nonexistent-zoo-root");
        let registry = Registry::new(RegistryConfig::new(root));
        let origin = if builtin {
            Origin::Builtin
        } else {
            Origin::Source { url: "https://example.test/s.zip".into(), dir: "acme/models".into() }
        };
        let model = ZooModel {
            model: hand_built(&base_name, version.as_deref(), base_filename.as_deref()),
            origin,
        };
        match registry.model_path(&model) {
            Err(err) => {
                prop_assert!(matches!(err, RegistryError::UnsafeModel { .. }), "{}", err);
                let message = err.to_string();
                let named = ["base_name", "version", "base_filename"]
                    .iter()
                    .any(|field| message.contains(&format!("`{field}`")));
                prop_assert!(named, "{}", message);
            }
            Ok(path) => {
                let folder = if builtin { root.to_path_buf() } else { root.join("acme/models") };
                prop_assert_eq!(path.parent(), Some(folder.as_path()));
                let name = path.file_name().unwrap().to_str().unwrap();
                prop_assert!(FileName::new(name).is_ok(), "{:?}", name);
                prop_assert!(zoo_fs::ensure_inside(&folder, &path).is_ok());
            }
        }
    }
}

fn github_with(repos: &[(&str, &str, serde_json::Value)]) -> FakeGitHub {
    let github = FakeGitHub::start();
    for (owner, name, manifest) in repos {
        github.add_repo(RepoSpec::new(owner, name).git_ref(
            "main",
            Archive::new().file("manifest.json", manifest.to_string()),
        ));
    }
    github
}

#[test]
fn staging_of_dead_processes_is_removed_under_the_registry_lock() {
    let github = github_with(&[(
        "acme",
        "zoo",
        serde_json::json!({"name": "acme/zoo", "models": [{"base_name": "a"}]}),
    )]);
    let root = tempfile::tempdir().unwrap();
    let staging = root.path().join(".tmp");
    // What a killed `register-source` leaves: a folder whose owner lock
    // nobody holds, with the half-fetched source in it.
    let dead = staging.join("register-dead1");
    fs_err::create_dir_all(dead.join("tree")).unwrap();
    fs_err::write(dead.join(zoo_fs::OWNER_LOCK), b"").unwrap();
    fs_err::write(dead.join("source.archive"), vec![7u8; 1 << 20]).unwrap();
    // A live process's staging, and a stray temporary from an index write.
    let live = zoo_fs::StagingDir::new_in(&staging, "extract-").unwrap();
    fs_err::write(live.path().join("unpacked"), b"in use").unwrap();
    fs_err::write(root.path().join(".tmp-abc123"), b"{").unwrap();

    let registry = registry(root.path(), &github);
    registry
        .register_source("acme/zoo", false, false, &NoProgress)
        .unwrap();
    assert!(!dead.exists(), "the dead process's staging is still there");
    assert!(!root.path().join(".tmp-abc123").exists());
    assert_eq!(
        fs_err::read(live.path().join("unpacked")).unwrap(),
        b"in use"
    );
    let left: Vec<_> = fs_err::read_dir(&staging)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(left, vec![live.path().to_path_buf()]);
}

#[test]
fn delete_source_by_a_name_two_sources_claim_is_refused() {
    let github = github_with(&[
        (
            "acme",
            "one",
            serde_json::json!({"name": "acme/one", "models": []}),
        ),
        (
            "acme",
            "two",
            serde_json::json!({"name": "acme/two", "models": []}),
        ),
    ]);
    let root = tempfile::tempdir().unwrap();
    let registry = registry(root.path(), &github);
    for repo in ["acme/one", "acme/two"] {
        registry
            .register_source(repo, false, false, &NoProgress)
            .unwrap();
    }
    // An index from an older zoo (or edited by hand) where both sources
    // claim one manifest name.
    let index_path = root.path().join("sources-v1.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(&index_path).unwrap()).unwrap();
    for source in index["sources"].as_array_mut().unwrap() {
        source["manifests"][0]["name"] = "shared".into();
    }
    fs_err::write(&index_path, index.to_string()).unwrap();
    let before = snapshot(root.path());
    for result in [
        registry.delete_source("shared").map(|_| ()),
        registry.trust_source("shared", true).map(|_| ()),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(err, RegistryError::AmbiguousSource { .. }),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains("`acme/one`") && message.contains("`acme/two`"),
            "{message}"
        );
    }
    assert_eq!(snapshot(root.path()), before);
    // By identifier, each is found.
    assert_eq!(
        registry.find_source("acme/two").unwrap().identifier,
        "acme/two"
    );
}

#[test]
fn index_folders_that_escape_are_refused() {
    let github = github_with(&[(
        "acme",
        "zoo",
        serde_json::json!({"name": "acme/zoo", "models": []}),
    )]);
    let sandbox = tempfile::tempdir().unwrap();
    let root = sandbox.path().join("zoo");
    let outside = sandbox.path().join("outside");
    fs_err::create_dir_all(&outside).unwrap();
    fs_err::write(outside.join("precious"), b"keep me").unwrap();
    let registry = registry(&root, &github);
    registry
        .register_source("acme/zoo", false, false, &NoProgress)
        .unwrap();
    let index_path = root.join("sources-v1.json");
    let text = fs_err::read_to_string(&index_path)
        .unwrap()
        .replace("\"dir\": \"acme/zoo\"", "\"dir\": \"../outside\"");
    fs_err::write(&index_path, text).unwrap();
    let err = registry.delete_source("acme/zoo").unwrap_err();
    assert!(matches!(err, RegistryError::UnsafeIndexDir { .. }), "{err}");
    assert!(err.to_string().contains("../outside"), "{err}");
    assert_eq!(fs_err::read(outside.join("precious")).unwrap(), b"keep me");
}
