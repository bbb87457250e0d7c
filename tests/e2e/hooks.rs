//! Hooks shipped by sources: Python `__init__.py` and executables, trust.

use zoo_test_support::{Archive, Response, TestServer};

use crate::util::Sandbox;

const PYTHON_HOOKS: &str = r#"
import json, os

def download_model(model_name, model_path):
    os.makedirs(os.path.dirname(model_path), exist_ok=True)
    with open(model_path, "w") as f:
        f.write("weights for " + model_name)

def load_model(model_name, model_path, **kwargs):
    if model_name.endswith("bad-config"):
        return object()
    config = {"model_path": model_path, "labels": ["a", "b"]}
    config.update(kwargs)
    return {"type": "fiftyone.utils.torch.TorchImageModel", "config": config}
"#;

const SHELL_DOWNLOAD: &str = "#!/bin/sh\nset -e\nif [ \"$1\" = \"exe/broken\" ]; then echo 'boom: the weights server is down' >&2; exit 3; fi\nprintf 'exe weights' > \"$2\"\n";
const SHELL_LOAD: &str = "#!/bin/sh\necho '{\"type\": \"zoo.Executable\", \"config\": {\"model_path\": \"'\"$2\"'\"}}'\n";

fn serve(server: &TestServer, path: &str, archive: Archive) -> String {
    server.route(path, Response::ok(archive.to_tar_gz()));
    server.url(path)
}

fn python_source(server: &TestServer) -> String {
    let manifest = serde_json::json!({"name": "hooks/python", "models": [
        {"base_name": "py/model", "base_filename": "model.txt"},
        {"base_name": "py/bad-config", "base_filename": "bad.txt"},
    ]});
    serve(
        server,
        "/python.tar.gz",
        Archive::new()
            .file("manifest.json", manifest.to_string())
            .file("__init__.py", PYTHON_HOOKS),
    )
}

fn executable_source(server: &TestServer) -> String {
    let manifest = serde_json::json!({"name": "hooks/exe", "models": [
        {"base_name": "exe/model", "base_filename": "weights.bin"},
        {"base_name": "exe/broken", "base_filename": "broken.bin"},
    ]});
    serve(
        server,
        "/exe.tar.gz",
        Archive::new()
            .file("manifest.json", manifest.to_string())
            .file_with_mode("download_model", SHELL_DOWNLOAD, 0o755)
            .file_with_mode("load_model", SHELL_LOAD, 0o755),
    )
}

#[test]
fn trusted_python_hooks_download_and_load() {
    let server = TestServer::start();
    let sandbox = Sandbox::new();
    sandbox.ok(&[
        "models",
        "register-source",
        &python_source(&server),
        "--trust",
    ]);
    sandbox.ok(&["models", "download", "py/model"]);
    let path = sandbox.ok(&["models", "find", "py/model"]).stdout();
    assert_eq!(
        fs_err::read_to_string(path.trim()).unwrap(),
        "weights for py/model"
    );
    let config = sandbox.ok(&["models", "config", "py/model"]).json();
    assert_eq!(config["type"], "fiftyone.utils.torch.TorchImageModel");
    assert_eq!(config["config"]["labels"][1], "b");
    assert_eq!(config["config"]["model_path"], path.trim());
    let err = sandbox
        .fails(&["models", "config", "py/bad-config"])
        .stderr();
    assert!(
        err.contains("load_model returned a object, which is not JSON"),
        "{err}"
    );
}

#[test]
fn trusted_executable_hooks_download_load_and_report_stderr() {
    let server = TestServer::start();
    let sandbox = Sandbox::new();
    sandbox.ok(&[
        "models",
        "register-source",
        &executable_source(&server),
        "--trust",
    ]);
    sandbox.ok(&["models", "download", "exe/model"]);
    let path = sandbox.ok(&["models", "find", "exe/model"]).stdout();
    assert_eq!(fs_err::read_to_string(path.trim()).unwrap(), "exe weights");
    let config = sandbox.ok(&["models", "config", "exe/model"]).json();
    assert_eq!(config["type"], "zoo.Executable");
    let err = sandbox
        .fails(&["models", "download", "exe/broken"])
        .stderr();
    assert!(err.contains("boom: the weights server is down"), "{err}");
    sandbox.fails(&["models", "find", "exe/broken"]);
}

#[test]
fn untrusted_sources_never_run_code() {
    let server = TestServer::start();
    let sandbox = Sandbox::new();
    let url = executable_source(&server);
    sandbox.ok(&["models", "register-source", &url]);
    for args in [
        ["models", "download", "exe/model"],
        ["models", "config", "exe/model"],
    ] {
        let err = sandbox.fails(&args).stderr();
        assert!(
            err.contains("not trusted") && err.contains("zoo models trust-source"),
            "{err}"
        );
    }
    assert!(!sandbox.zoo_dir().join("hooks/exe/weights.bin").exists());
    sandbox.ok(&["models", "trust-source", &url]);
    sandbox.ok(&["models", "download", "exe/model"]);
    sandbox.ok(&["models", "trust-source", &url, "--revoke"]);
    sandbox.fails(&["models", "config", "exe/model"]);
}
