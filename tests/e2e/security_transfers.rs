//! Hostile download servers and URLs, through the `zoo` binary (issue: seal
//! the trust boundary, transfers): a resume answered with the wrong
//! `Content-Range`, bodies longer than declared, stalls, and URLs that are
//! not http(s).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zoo_test_support::{Request, Response, TestServer, file_response};

use crate::util::{Sandbox, manifest_source, snapshot};

fn weights(size: usize) -> Vec<u8> {
    (0..size)
        .map(|index| (index as u32).wrapping_mul(17).wrapping_add(3) as u8)
        .collect()
}

/// A registered source `acme/models` whose models have these manager
/// configs (`name` -> config), each saved as `<name>.pt`.
fn setup(server: &TestServer, models: &[(&str, serde_json::Value)]) -> Sandbox {
    let models: Vec<serde_json::Value> = models
        .iter()
        .map(|(name, config)| {
            serde_json::json!({
                "base_name": format!("acme/{name}"),
                "base_filename": format!("{name}.pt"),
                "manager": {"type": "fiftyone.core.models.ModelManager", "config": config},
            })
        })
        .collect();
    let url = manifest_source(
        server,
        "/source.zip",
        &serde_json::json!({"name": "acme/models", "models": models}),
    );
    let sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &url]);
    sandbox
}

/// What is left of model `name` in the zoo dir (file, partial file).
fn leftovers(sandbox: &Sandbox, name: &str) -> Vec<String> {
    snapshot(&sandbox.zoo_dir())
        .into_iter()
        .filter(|entry| entry.contains(&format!("{name}.pt")))
        .collect()
}

#[test]
fn resume_with_wrong_content_range_restarts_from_zero() {
    let server = TestServer::start();
    let data = weights(400_000);
    let plain = Arc::new(AtomicUsize::new(0));
    let served = data.clone();
    // The first download is cut at 150,000 bytes; the resume is answered
    // with the tail but labelled as the whole file (`bytes 0-...`).
    server.handle("/w/resumed.pt", move |request| {
        match request.range_start() {
            Some(start) => Response::status(206)
                .header(
                    "Content-Range",
                    &format!("bytes 0-{}/{}", served.len() - 1, served.len()),
                )
                .body(served[start as usize..].to_vec()),
            None if plain.fetch_add(1, Ordering::SeqCst) == 0 => {
                Response::ok(served.clone()).truncate_after(150_000)
            }
            None => file_response(request, &served),
        }
    });
    // This one garbles every answer, ranged or not.
    let garbled = data.clone();
    server.handle("/w/garbled.pt", move |_| {
        Response::status(206)
            .header(
                "Content-Range",
                &format!("bytes 5-{}/{}", garbled.len() - 1, garbled.len()),
            )
            .body(garbled[5..].to_vec())
    });
    let sandbox = setup(
        &server,
        &[
            (
                "resumed",
                serde_json::json!({"url": server.url("/w/resumed.pt")}),
            ),
            (
                "garbled",
                serde_json::json!({"url": server.url("/w/garbled.pt")}),
            ),
        ],
    );

    // No sha256 in the manifest: only the range check stands between the
    // user and a stitched-together file.
    sandbox.ok(&["models", "download", "acme/resumed"]);
    let path = sandbox.ok(&["models", "find", "acme/resumed"]).stdout();
    assert!(
        fs_err::read(path.trim()).unwrap() == data,
        "the downloaded file is wrong"
    );
    let ranges: Vec<Option<u64>> = server
        .requests_to("/w/resumed.pt")
        .iter()
        .map(Request::range_start)
        .collect();
    assert_eq!(ranges.len(), 3, "{ranges:?}");
    assert!(ranges[1].is_some_and(|start| start > 0), "{ranges:?}");
    assert_eq!(ranges[2], None, "restarted from byte 0: {ranges:?}");

    // A partial file from an earlier, killed run, then a server that never
    // answers a range properly: a clear failure, nothing left behind.
    let partial = sandbox.zoo_dir().join("acme/models/.garbled.pt.partial");
    fs_err::write(&partial, &data[..50_000]).unwrap();
    let err = sandbox
        .fails(&["models", "download", "acme/garbled"])
        .stderr();
    for needle in [
        server.url("/w/garbled.pt").as_str(),
        "Content-Range: bytes 5-",
        "starts at byte 5",
        "partial download was discarded",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    sandbox.fails(&["models", "find", "acme/garbled"]);
    assert!(
        leftovers(&sandbox, "garbled").is_empty(),
        "{:?}",
        leftovers(&sandbox, "garbled")
    );
}

#[test]
fn body_longer_than_declared_size_is_cut_off() {
    let server = TestServer::start();
    // Endless bodies: one for a manifest declaring 1000 bytes, one whose
    // `Content-Length` says 1000 while chunked framing keeps it going.
    server.route("/w/endless.pt", Response::endless(200));
    server.route(
        "/w/liar.pt",
        Response::endless(200)
            .chunked()
            .header("Content-Length", "1000"),
    );
    let sandbox = setup(
        &server,
        &[
            (
                "endless",
                serde_json::json!({"url": server.url("/w/endless.pt"), "size_bytes": 1000}),
            ),
            ("liar", serde_json::json!({"url": server.url("/w/liar.pt")})),
        ],
    );
    let cases = [
        ("endless", "/w/endless.pt", "the declared `size_bytes`"),
        ("liar", "/w/liar.pt", "its `Content-Length`"),
    ];
    for (name, path, limit) in cases {
        let started = Instant::now();
        let run = sandbox.fails(&["models", "download", &format!("acme/{name}")]);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name}: {:?}",
            started.elapsed()
        );
        assert_eq!(run.0.status.code(), Some(1), "{name}");
        let err = run.stderr();
        let stopped = format!("went past 1000 bytes ({limit}): stopped at");
        for needle in [
            server.url(path).as_str(),
            stopped.as_str(),
            "partial file was removed",
        ] {
            assert!(err.contains(needle), "{name}: {needle}: {err}");
        }
        assert!(
            leftovers(&sandbox, name).is_empty(),
            "{name}: {:?}",
            leftovers(&sandbox, name)
        );
        assert_eq!(server.requests_to(path).len(), 1, "{name}: not retried");
    }
    assert!(sandbox.models(&["-d"]).is_empty());
}

#[test]
fn stall_mid_body_times_out_after_zoo_http_timeout_and_resumes() {
    let server = TestServer::start();
    let data = weights(300_000);
    let calls = Arc::new(AtomicUsize::new(0));
    let served = data.clone();
    server.handle("/w/stall.pt", move |request| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            Response::ok(served.clone()).hang_after(100_000)
        } else {
            file_response(request, &served)
        }
    });
    let mut sandbox = setup(
        &server,
        &[(
            "stall",
            serde_json::json!({"url": server.url("/w/stall.pt")}),
        )],
    );
    sandbox.env.push(("ZOO_HTTP_TIMEOUT".into(), "1".into()));
    let started = Instant::now();
    sandbox.ok(&["models", "download", "acme/stall"]);
    // With the default of 30 seconds this would take half a minute.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let requests = server.requests_to("/w/stall.pt");
    assert_eq!(requests.len(), 2);
    assert!(requests[1].range_start().is_some_and(|start| start > 0));
    let path = sandbox.ok(&["models", "find", "acme/stall"]).stdout();
    assert!(fs_err::read(path.trim()).unwrap() == data);
}

#[test]
fn http_timeout_must_be_a_positive_number_of_seconds() {
    let server = TestServer::start();
    server.file("/w/ok.pt", weights(10));
    let mut sandbox = setup(
        &server,
        &[("ok", serde_json::json!({"url": server.url("/w/ok.pt")}))],
    );
    for value in ["0", "soon"] {
        sandbox.env = vec![("ZOO_HTTP_TIMEOUT".into(), value.into())];
        let err = sandbox.fails(&["models", "download", "acme/ok"]).stderr();
        assert!(err.contains("ZOO_HTTP_TIMEOUT"), "{value}: {err}");
        assert!(err.contains(&format!("`{value}`")), "{value}: {err}");
    }
    assert!(server.requests_to("/w/ok.pt").is_empty());
}

#[test]
fn file_scheme_fails_fast_without_retries() {
    let server = TestServer::start();
    let sandbox = setup(
        &server,
        &[
            ("local", serde_json::json!({"url": "file:///etc/passwd"})),
            ("ftp", serde_json::json!({"url": "ftp://127.0.0.1:9/m.pt"})),
            ("empty", serde_json::json!({"url": ""})),
            ("relative", serde_json::json!({"url": "weights/m.pt"})),
        ],
    );
    let cases = [
        ("local", "`file:///etc/passwd`", "scheme `file`"),
        ("ftp", "`ftp://127.0.0.1:9/m.pt`", "scheme `ftp`"),
        ("empty", "``", "the URL is empty"),
        ("relative", "`weights/m.pt`", "no scheme"),
    ];
    for (name, url, reason) in cases {
        let started = Instant::now();
        let err = sandbox
            .fails(&["models", "download", &format!("acme/{name}")])
            .stderr();
        // Five retries with backoff took about eight seconds.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{name}: {:?}",
            started.elapsed()
        );
        for needle in [url, reason, "only `http://` and `https://`"] {
            assert!(err.contains(needle), "{name}: {needle}: {err}");
        }
        assert!(!err.contains("network"), "{name}: {err}");
        assert!(leftovers(&sandbox, name).is_empty(), "{name}");
    }
}

/// A body with no `Content-Length` and no declared `size_bytes` stops at
/// `ZOO_MAX_DOWNLOAD_BYTES` instead of filling the disk; nothing is left.
#[test]
fn endless_body_without_any_size_stops_at_zoo_max_download_bytes() {
    let server = TestServer::start();
    server.route("/w/endless.pt", zoo_test_support::Response::endless(200));
    let mut sandbox = setup(
        &server,
        &[(
            "endless",
            serde_json::json!({"url": server.url("/w/endless.pt")}),
        )],
    );
    sandbox.env = vec![("ZOO_MAX_DOWNLOAD_BYTES".into(), "2000000".into())];
    let err = sandbox
        .fails(&["models", "download", "acme/endless"])
        .stderr();
    assert!(err.contains("ZOO_MAX_DOWNLOAD_BYTES"), "{err}");
    assert!(err.contains("2000000"), "{err}");
    assert!(leftovers(&sandbox, "endless").is_empty(), "{err}");
    sandbox.env = vec![("ZOO_MAX_DOWNLOAD_BYTES".into(), "0".into())];
    let err = sandbox
        .fails(&["models", "download", "acme/endless"])
        .stderr();
    assert!(
        err.contains("`ZOO_MAX_DOWNLOAD_BYTES` must be at least 1"),
        "{err}"
    );
}
