//! Model downloads: managers, archives, verification, resume, retries,
//! concurrency, interruption, the built-in zoo (issue: model downloads).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zoo_test_support::{Archive, Response, TestServer, file_response};

use crate::util::{Sandbox, manifest_source, snapshot};

fn weights(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|index| {
            (index as u32)
                .wrapping_mul(31)
                .wrapping_add(u32::from(seed)) as u8
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    fs_err::write(&path, data).unwrap();
    zoo_sources::sha256_file(&path).unwrap()
}

/// A source whose models download from `server`; registered in a sandbox.
fn setup(server: &TestServer, models: serde_json::Value) -> Sandbox {
    let manifest = serde_json::json!({"name": "acme/models", "models": models});
    server.route(
        "/source.zip",
        Response::ok(
            Archive::new()
                .file("src/manifest.json", manifest.to_string())
                .file("src/README.md", "hi")
                .to_zip(),
        ),
    );
    let sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &server.url("/source.zip")]);
    sandbox
}

fn model(name: &str, filename: &str, config: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "base_name": name,
        "base_filename": filename,
        "manager": {"type": "fiftyone.core.models.ModelManager", "config": config},
    })
}

fn full_gets(server: &TestServer, path: &str) -> usize {
    server
        .requests_to(path)
        .iter()
        .filter(|request| request.method == "GET" && request.header("range").is_none())
        .count()
}

#[test]
fn plain_download_find_list_and_delete() {
    let server = TestServer::start();
    server.file("/w/plain.pt", weights(200_000, 1));
    server.file("/w/other.pt", weights(1000, 2));
    let sandbox = setup(
        &server,
        serde_json::json!([
            model(
                "acme/plain",
                "plain.pt",
                serde_json::json!({"url": server.url("/w/plain.pt")})
            ),
            model(
                "acme/other",
                "other.pt",
                serde_json::json!({"url": server.url("/w/other.pt")})
            ),
        ]),
    );
    let missing = sandbox.fails(&["models", "find", "acme/plain"]).stderr();
    assert!(
        missing.contains("zoo models download acme/plain"),
        "{missing}"
    );

    sandbox.ok(&["models", "download", "acme/plain"]);
    let path = sandbox
        .ok(&["models", "find", "acme/plain"])
        .stdout()
        .trim()
        .to_owned();
    assert_eq!(
        path,
        sandbox
            .zoo_dir()
            .join("acme/models/plain.pt")
            .display()
            .to_string()
    );
    assert_eq!(fs_err::read(&path).unwrap(), weights(200_000, 1));
    assert_eq!(sandbox.models(&["-d"]), vec!["acme/plain"]);

    // Already downloaded: nothing is fetched; with --overwrite it is.
    let again = sandbox.ok(&["models", "download", "acme/plain"]);
    assert!(
        again.stderr().contains("already downloaded"),
        "{}",
        again.stderr()
    );
    assert_eq!(full_gets(&server, "/w/plain.pt"), 1);
    sandbox.ok(&["models", "download", "acme/plain", "--overwrite"]);
    assert_eq!(full_gets(&server, "/w/plain.pt"), 2);

    // Delete removes that model's file and nothing else.
    sandbox.ok(&["models", "download", "acme/other"]);
    let before = snapshot(&sandbox.zoo_dir());
    sandbox.ok(&["models", "delete", "acme/plain"]);
    let after = snapshot(&sandbox.zoo_dir());
    let removed: Vec<&String> = before
        .iter()
        .filter(|entry| !after.contains(entry))
        .collect();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(
        removed[0].starts_with("acme/models/plain.pt"),
        "{removed:?}"
    );
    assert!(
        after
            .iter()
            .any(|entry| entry.starts_with("acme/models/README.md"))
    );
    assert_eq!(sandbox.models(&["-d"]), vec!["acme/other"]);
    sandbox.fails(&["models", "delete", "acme/plain"]);
}

#[test]
fn archives_extract_with_and_without_deleting() {
    let server = TestServer::start();
    let inner = Archive::new()
        .dir("bundle/")
        .file("bundle/weights.bin", weights(5000, 3))
        .file("bundle/config.json", "{}");
    server.file("/a/bundle.zip", inner.to_zip());
    server.file("/a/other.tar.gz", inner.to_tar_gz());
    let flat = Archive::new().file("weights.bin", weights(10, 4));
    server.file("/a/flat.tgz", flat.to_tar_gz());
    let sandbox = setup(
        &server,
        serde_json::json!([
            model(
                "acme/zip",
                "bundle.zip",
                serde_json::json!({"url": server.url("/a/bundle.zip"), "extract_archive": true})
            ),
            model(
                "acme/targz",
                "other.tar.gz",
                serde_json::json!({"url": server.url("/a/other.tar.gz"), "extract_archive": true, "delete_archive": true})
            ),
            model(
                "acme/flat",
                "flat.tgz",
                serde_json::json!({"url": server.url("/a/flat.tgz"), "extract_archive": true, "delete_archive": true})
            ),
        ]),
    );
    sandbox.ok(&["models", "download", "acme/zip"]);
    let dir = sandbox.zoo_dir().join("acme/models");
    assert_eq!(
        fs_err::read(dir.join("bundle/weights.bin")).unwrap(),
        weights(5000, 3)
    );
    assert!(
        dir.join("bundle.zip").is_file(),
        "the archive is kept without delete_archive"
    );
    let found = sandbox.ok(&["models", "find", "acme/zip"]).stdout();
    assert_eq!(found.trim(), dir.join("bundle").display().to_string());
    sandbox.ok(&["models", "delete", "acme/zip"]);
    assert!(!dir.join("bundle").exists() && !dir.join("bundle.zip").exists());

    sandbox.ok(&["models", "download", "acme/targz"]);
    // The archive's top folder is not named after it: it is kept inside.
    assert!(dir.join("other/bundle/config.json").is_file());
    assert!(
        !dir.join("other.tar.gz").exists(),
        "delete_archive removes the archive"
    );
    assert_eq!(sandbox.models(&["-d"]), vec!["acme/targz"]);

    sandbox.ok(&["models", "download", "acme/flat"]);
    assert_eq!(
        fs_err::read(dir.join("flat/weights.bin")).unwrap(),
        weights(10, 4)
    );
}

#[test]
fn sha256_and_size_are_verified() {
    let server = TestServer::start();
    let data = weights(50_000, 5);
    server.file("/v/good.pt", data.clone());
    server.file("/v/bad.pt", data.clone());
    let sandbox = setup(
        &server,
        serde_json::json!([
            model(
                "acme/good",
                "good.pt",
                serde_json::json!({"url": server.url("/v/good.pt"), "sha256": sha256_hex(&data), "size_bytes": 50_000})
            ),
            model(
                "acme/bad",
                "bad.pt",
                serde_json::json!({"url": server.url("/v/bad.pt"), "sha256": "ab".repeat(32)})
            ),
            model(
                "acme/short",
                "short.pt",
                serde_json::json!({"url": server.url("/v/good.pt"), "size_bytes": 7})
            ),
        ]),
    );
    sandbox.ok(&["models", "download", "acme/good"]);
    for name in ["acme/bad", "acme/short"] {
        let err = sandbox.fails(&["models", "download", name]).stderr();
        assert!(err.contains("failed verification"), "{name}: {err}");
        sandbox.fails(&["models", "find", name]);
    }
    assert_eq!(sandbox.models(&["-d"]), vec!["acme/good"]);
    let leftovers: Vec<String> = snapshot(&sandbox.zoo_dir())
        .into_iter()
        .filter(|entry| entry.contains("bad.pt") || entry.contains("short.pt"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn resumes_after_a_mid_body_failure_and_retries_after_503() {
    let server = TestServer::start();
    let data = weights(400_000, 6);
    let calls = Arc::new(AtomicUsize::new(0));
    let (counter, served) = (Arc::clone(&calls), data.clone());
    server.handle("/r/resume.pt", move |request| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Response::ok(served.clone()).truncate_after(150_000)
        } else {
            file_response(request, &served)
        }
    });
    server.sequence(
        "/r/flaky.pt",
        vec![
            Response::status(503).header("Retry-After", "0"),
            Response::ok(data.clone()),
        ],
    );
    let sandbox = setup(
        &server,
        serde_json::json!([
            model(
                "acme/resume",
                "resume.pt",
                serde_json::json!({"url": server.url("/r/resume.pt"), "sha256": sha256_hex(&data)})
            ),
            model(
                "acme/flaky",
                "flaky.pt",
                serde_json::json!({"url": server.url("/r/flaky.pt")})
            ),
        ]),
    );
    sandbox.ok(&["models", "download", "acme/resume"]);
    let requests = server.requests_to("/r/resume.pt");
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1]
            .header("range")
            .is_some_and(|range| range.starts_with("bytes=") && range != "bytes=0-")
    );
    sandbox.ok(&["models", "download", "acme/flaky"]);
    let statuses = server.requests_to("/r/flaky.pt").len();
    assert_eq!(statuses, 2);
    let path = sandbox.ok(&["models", "find", "acme/flaky"]).stdout();
    assert_eq!(fs_err::read(path.trim()).unwrap(), data);
}

#[test]
fn eight_concurrent_downloads_make_one_transfer() {
    let server = TestServer::start();
    let data = weights(300_000, 7);
    // Slow enough that the other processes arrive while it is in flight.
    server.route(
        "/c/shared.pt",
        Response::ok(data.clone()).stall_after(1000, Duration::from_millis(700)),
    );
    let sandbox = setup(
        &server,
        serde_json::json!([model(
            "acme/shared",
            "shared.pt",
            serde_json::json!({"url": server.url("/c/shared.pt")})
        )]),
    );
    let children: Vec<_> = (0..8)
        .map(|_| {
            sandbox
                .command(&["models", "download", "acme/shared"])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(full_gets(&server, "/c/shared.pt"), 1);
    assert_eq!(server.requests_to("/c/shared.pt").len(), 1);
    let path = sandbox.ok(&["models", "find", "acme/shared"]).stdout();
    assert_eq!(fs_err::read(path.trim()).unwrap(), data);
}

#[test]
fn a_killed_download_never_counts_and_resumes_later() {
    let server = TestServer::start();
    let data = weights(2_000_000, 8);
    server.route(
        "/k/killed.pt",
        Response::ok(data.clone()).stall_after(600_000, Duration::from_secs(60)),
    );
    let sandbox = setup(
        &server,
        serde_json::json!([model(
            "acme/killed",
            "killed.pt",
            serde_json::json!({"url": server.url("/k/killed.pt")})
        )]),
    );
    let mut child = sandbox
        .command(&["models", "download", "acme/killed"])
        .spawn()
        .unwrap();
    let partial = sandbox.zoo_dir().join("acme/models/.killed.pt.partial");
    let started = Instant::now();
    while fs_err::metadata(&partial)
        .map(|meta| meta.len())
        .unwrap_or(0)
        < 600_000
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the download never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    sandbox.fails(&["models", "find", "acme/killed"]);
    assert!(sandbox.models(&["-d"]).is_empty());
    assert!(!sandbox.zoo_dir().join("acme/models/killed.pt").exists());

    let served = data.clone();
    server.handle("/k/killed.pt", move |request| {
        file_response(request, &served)
    });
    sandbox.ok(&["models", "download", "acme/killed"]);
    let last = server.requests_to("/k/killed.pt").pop().unwrap();
    assert_eq!(last.header("range"), Some("bytes=600000-"));
    let path = sandbox.ok(&["models", "find", "acme/killed"]).stdout();
    assert_eq!(fs_err::read(path.trim()).unwrap(), data);
}

#[test]
fn builtin_models_download_through_a_mirror() {
    let server = TestServer::start();
    server.file("/mirror/resnet18-5c106cde.pth", weights(4096, 9));
    server.file("/mirror/resnet18-f37072fd.pth", weights(4096, 9));
    let mut sandbox = Sandbox::new();
    let listed = sandbox
        .ok(&["models", "list", "-n", "-t", "imagenet"])
        .lines();
    for name in [
        "resnet18-imagenet-torch",
        "mobilenet-v2-imagenet-torch",
        "densenet121-imagenet-torch",
        "vgg16-bn-imagenet-torch",
    ] {
        assert!(listed.contains(&name.to_owned()), "{name}");
    }
    let info = sandbox
        .ok(&["models", "info", "resnet18-imagenet-torch", "--json"])
        .json();
    assert_eq!(info["source"], "builtin");
    assert_eq!(info["manifest"]["author"], "Kaiming He, et al.");
    assert_eq!(
        info["manifest"]["manager"]["config"]["url"],
        "https://download.pytorch.org/models/resnet18-5c106cde.pth"
    );
    assert_eq!(
        info["manifest"]["default_deployment_config_dict"]["config"]["embeddings_layer"],
        "<fc"
    );

    sandbox.env.push((
        "ZOO_DOWNLOAD_MIRRORS".into(),
        format!(
            "https://download.pytorch.org/models/={}",
            server.url("/mirror/")
        ),
    ));
    // The built-in runs torchvision's named weights (issue 18): the mirror
    // is asked for torchvision's file, whose name carries a sha256 prefix
    // these test bytes do not have, so it is refused and nothing is kept.
    let err = sandbox
        .fails(&["models", "download", "resnet18-imagenet-torch"])
        .stderr();
    assert!(err.contains("`f37072fd`"), "{err}");
    assert_eq!(server.requests_to("/mirror/resnet18-5c106cde.pth").len(), 0);
    assert!(
        !server
            .requests_to("/mirror/resnet18-f37072fd.pth")
            .is_empty()
    );
    let info = sandbox
        .ok(&["models", "info", "resnet18-imagenet-torch", "--json"])
        .json();
    assert_eq!(
        info["model_path"],
        sandbox
            .zoo_dir()
            .join("resnet18-f37072fd.pth")
            .display()
            .to_string()
    );
    assert_eq!(info["downloaded"], false);

    let mut offline = Sandbox::new();
    offline.env.push(("ZOO_OFFLINE".into(), "1".into()));
    let err = offline
        .fails(&["models", "download", "resnet18-imagenet-torch"])
        .stderr();
    assert!(err.contains("ZOO_OFFLINE"), "{err}");
}

#[test]
fn download_by_source_url_and_google_drive() {
    let server = TestServer::start();
    let data = weights(3000, 10);
    server.route("/uc", Response::ok(format!(
        r#"<html><form action="{}" method="get"><input type="hidden" name="id" value="DRIVE1"><input type="hidden" name="confirm" value="t"></form></html>"#,
        server.url("/usercontent")
    )).header("Content-Type", "text/html"));
    let served = data.clone();
    server.handle("/usercontent", move |request| {
        if request.query_param("confirm") == Some("t") {
            Response::ok(served.clone())
        } else {
            Response::status(403)
        }
    });
    server.file("/u/one.pt", weights(10, 11));
    let manifest = serde_json::json!({"name": "acme/drive", "models": [
        model("acme/drive-model", "drive.pth", serde_json::json!({"google_drive_id": "DRIVE1"})),
        model("acme/one", "one.pt", serde_json::json!({"url": server.url("/u/one.pt")})),
    ]});
    let url = manifest_source(&server, "/drive-source.zip", &manifest);
    let mut sandbox = Sandbox::new();
    sandbox
        .env
        .push(("ZOO_GOOGLE_DRIVE_URL".into(), server.base_url()));
    let err = sandbox.fails(&["models", "download", &url]).stderr();
    assert!(
        err.contains("offers several models") && err.contains("--model-name"),
        "{err}"
    );
    sandbox.ok(&["models", "download", &url, "-n", "acme/drive-model"]);
    let path = sandbox.ok(&["models", "find", "acme/drive-model"]).stdout();
    assert_eq!(fs_err::read(path.trim()).unwrap(), data);
    let misuse = sandbox
        .fails(&["models", "download", "acme/one", "-n", "acme/one"])
        .stderr();
    assert!(misuse.contains("goes with a source URL"), "{misuse}");
}

/// `ZOO_ALLOWED_LICENSES`: `download` and `apply` refuse a model whose
/// manifest license is outside the list, naming it, before any request; a
/// model inside it downloads; a list that names nothing is a config error.
#[test]
fn the_licence_policy_refuses_models_outside_it_before_any_download() {
    let server = TestServer::start();
    server.file("/gpl.pt", weights(64, 1));
    server.file("/mit.pt", weights(64, 2));
    let mut gpl = model(
        "gpl-model",
        "gpl.pt",
        serde_json::json!({"url": server.url("/gpl.pt")}),
    );
    gpl["license"] = "GPL-3.0".into();
    let mut mit = model(
        "mit-model",
        "mit.pt",
        serde_json::json!({"url": server.url("/mit.pt")}),
    );
    mit["license"] = "MIT".into();
    let mut sandbox = setup(&server, serde_json::json!([gpl, mit]));
    sandbox
        .env
        .push(("ZOO_ALLOWED_LICENSES".into(), "MIT, Apache-2.0".into()));

    let refused = sandbox.fails(&["models", "download", "gpl-model"]).stderr();
    assert!(refused.contains("`gpl-model`"), "{refused}");
    assert!(refused.contains("`GPL-3.0`"), "{refused}");
    assert!(
        refused.contains("ZOO_ALLOWED_LICENSES=MIT,Apache-2.0"),
        "{refused}"
    );
    let images = tempfile::tempdir().unwrap();
    image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
        .save(images.path().join("a.png"))
        .unwrap();
    let refused = sandbox
        .fails(&[
            "models",
            "apply",
            "gpl-model",
            images.path().to_str().unwrap(),
            "p",
        ])
        .stderr();
    assert!(refused.contains("`GPL-3.0`"), "{refused}");
    assert!(server.requests_to("/gpl.pt").is_empty());

    sandbox.ok(&["models", "download", "mit-model"]);
    assert_eq!(full_gets(&server, "/mit.pt"), 1);

    sandbox.env.pop();
    sandbox
        .env
        .push(("ZOO_ALLOWED_LICENSES".into(), " , ".into()));
    let bad = sandbox.fails(&["models", "download", "mit-model"]).stderr();
    assert!(bad.contains("names no license"), "{bad}");
}
