//! The licence policy (`RegistryConfig::allowed_licenses`): a model under a
//! license outside it is refused before anything is fetched; one inside it
//! downloads as usual.

use std::io::Write;

use zoo_registry::{Registry, RegistryConfig, RegistryError};
use zoo_sources::NoProgress;
use zoo_test_support::TestServer;

fn custom_manifest(dir: &std::path::Path, server: &TestServer) -> std::path::PathBuf {
    let model = |name: &str, license: &str| {
        serde_json::json!({
            "base_name": name,
            "base_filename": format!("{name}.pt"),
            "version": null,
            "description": "a model",
            "license": license,
            "manager": {
                "type": "fiftyone.core.models.ModelManager",
                "config": {"url": server.url(&format!("/{name}.pt"))}
            },
            "default_deployment_config_dict": null,
            "requirements": {},
            "tags": [],
            "date_added": "2026-01-01 00:00:00"
        })
    };
    let manifest = serde_json::json!({
        "models": [
            model("copyleft", "AGPL-3.0"),
            model("permissive", "Apache 2.0, BSD 3-Clause"),
        ]
    });
    let path = dir.join("manifest.json");
    let mut file = fs_err::File::create(&path).unwrap();
    file.write_all(manifest.to_string().as_bytes()).unwrap();
    path
}

#[test]
fn a_model_outside_the_licence_policy_is_refused_before_any_request() {
    let server = TestServer::start();
    server.file("/copyleft.pt", b"copyleft weights".to_vec());
    server.file("/permissive.pt", b"permissive weights".to_vec());
    let root = tempfile::tempdir().unwrap();
    let manifests = tempfile::tempdir().unwrap();
    let mut config = RegistryConfig::new(root.path());
    config.extra_manifests = vec![custom_manifest(manifests.path(), &server)];
    config.allowed_licenses = Some(vec!["apache-2.0".into(), "BSD-3-Clause".into()]);
    let registry = Registry::new(config);

    let err = registry
        .download_model("copyleft", false, &NoProgress)
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::LicenseNotAllowed { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("model `copyleft`"), "{message}");
    assert!(message.contains("`AGPL-3.0`"), "{message}");
    assert!(
        message.contains("ZOO_ALLOWED_LICENSES=apache-2.0,BSD-3-Clause"),
        "{message}"
    );
    assert!(server.requests_to("/copyleft.pt").is_empty());
    assert!(!root.path().join("copyleft.pt").exists());

    let downloaded = registry
        .download_model("permissive", false, &NoProgress)
        .unwrap();
    assert_eq!(
        fs_err::read(downloaded.path).unwrap(),
        b"permissive weights"
    );
}
