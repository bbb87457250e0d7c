//! Downloads from servers that lie, stall or never stop, and URLs zoo must
//! not fetch (issue: seal the trust boundary, transfers). Each test is named
//! after the attack it stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zoo_sources::{
    GitHub, HttpClient, NoProgress, SourceError, SourceId, TransferOptions, fetch_file,
    fetch_google_drive, fetch_source, partial_path,
};
use zoo_test_support::{Request, Response, TestServer, file_response};

fn content() -> Vec<u8> {
    (0..300_000u32).map(|index| (index % 251) as u8).collect()
}

fn quick() -> TransferOptions {
    TransferOptions {
        backoff: Duration::from_millis(10),
        ..TransferOptions::default()
    }
}

fn fetch(url: &str, dest: &std::path::Path, options: &TransferOptions) -> Result<u64, SourceError> {
    fetch_file(&HttpClient::new(), url, dest, options, &NoProgress)
}

/// Serves `data` at `path`: the first plain GET is cut after 100,000 bytes
/// (so a partial file exists), every `Range` request gets `garbled`, and
/// later plain GETs get the whole file.
fn cut_then_garbled(
    server: &TestServer,
    path: &str,
    data: Vec<u8>,
    garbled: impl Fn(&Request, &[u8], u64) -> Response + Send + Sync + 'static,
) {
    let plain = Arc::new(AtomicUsize::new(0));
    server.handle(path, move |request| match request.range_start() {
        Some(start) => garbled(request, &data, start),
        None if plain.fetch_add(1, Ordering::SeqCst) == 0 => {
            Response::ok(data.clone()).truncate_after(100_000)
        }
        None => file_response(request, &data),
    });
}

#[test]
fn resume_with_wrong_content_range_restarts_from_zero() {
    type Garble = fn(&Request, &[u8], u64) -> Response;
    let total = content().len();
    // Each answer to `Range: bytes=N-` sends the tail from N (or near it)
    // but describes it wrongly; appending it, or writing it from byte 0,
    // gives a wrong file.
    let cases: [(&str, Garble); 5] = [
        ("starts at 0", |_, data, start| {
            Response::status(206)
                .header(
                    "Content-Range",
                    &format!("bytes 0-{}/{}", data.len() - 1, data.len()),
                )
                .body(data[start as usize..].to_vec())
        }),
        ("no Content-Range", |_, data, start| {
            Response::status(206).body(data[start as usize..].to_vec())
        }),
        ("starts later", |_, data, start| {
            let later = start as usize + 10;
            Response::status(206)
                .header(
                    "Content-Range",
                    &format!("bytes {later}-{}/{}", data.len() - 1, data.len()),
                )
                .body(data[later..].to_vec())
        }),
        ("garbage", |_, data, start| {
            Response::status(206)
                .header("Content-Range", "bytes=oops")
                .body(data[start as usize..].to_vec())
        }),
        ("stops early", |_, data, start| {
            let end = start as usize + 1000;
            Response::status(206)
                .header(
                    "Content-Range",
                    &format!("bytes {start}-{}/{}", end - 1, data.len()),
                )
                .body(data[start as usize..end].to_vec())
        }),
    ];
    for (name, garble) in cases {
        let server = TestServer::start();
        cut_then_garbled(&server, "/model.pt", content(), garble);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("model.pt");
        let size = fetch(&server.url("/model.pt"), &dest, &quick())
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(size, total as u64, "{name}");
        assert!(
            fs_err::read(&dest).unwrap() == content(),
            "{name}: wrong bytes"
        );
        assert!(!partial_path(&dest).exists(), "{name}");
        let ranges: Vec<Option<u64>> = server
            .requests_to("/model.pt")
            .iter()
            .map(Request::range_start)
            .collect();
        assert_eq!(ranges.len(), 3, "{name}: {ranges:?}");
        assert_eq!(ranges[0], None, "{name}");
        assert!(
            ranges[1].is_some_and(|start| start > 0),
            "{name}: {ranges:?}"
        );
        assert_eq!(ranges[2], None, "{name}: restarted from byte 0");
    }
}

#[test]
fn resume_against_a_server_that_always_garbles_ranges_fails_and_leaves_nothing() {
    let server = TestServer::start();
    // Every answer is a 206 that starts at byte 5, whatever was asked.
    server.handle("/model.pt", |_| {
        let data = content();
        Response::status(206)
            .header(
                "Content-Range",
                &format!("bytes 5-{}/{}", data.len() - 1, data.len()),
            )
            .body(data[5..].to_vec())
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.pt");
    fs_err::write(partial_path(&dest), vec![1u8; 5000]).unwrap();
    let options = TransferOptions {
        retries: 2,
        ..quick()
    };
    let err = fetch(&server.url("/model.pt"), &dest, &options).unwrap_err();
    assert!(
        matches!(err, SourceError::BadContentRange { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("/model.pt"), "{message}");
    assert!(message.contains("Content-Range: bytes 5-"), "{message}");
    assert!(message.contains("starts at byte 5, not 0"), "{message}");
    assert!(!dest.exists());
    assert!(!partial_path(&dest).exists());
    assert_eq!(server.requests_to("/model.pt").len(), 3);
}

#[test]
fn body_longer_than_declared_size_is_cut_off() {
    let server = TestServer::start();
    // An endless body with no length (it would end with the connection).
    server.route("/endless.pt", Response::endless(200));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("endless.pt");
    let options = TransferOptions {
        size: Some(1000),
        ..quick()
    };
    let started = Instant::now();
    let err = fetch(&server.url("/endless.pt"), &dest, &options).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let SourceError::Oversized {
        limit,
        seen,
        announced,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((*limit, *announced), (1000, false));
    // Stopped at the first read past the limit, not after the whole body.
    assert!(*seen > 1000 && *seen <= 1000 + (1 << 20), "{seen}");
    let message = err.to_string();
    for needle in [
        server.url("/endless.pt").as_str(),
        "went past 1000 bytes (the declared `size_bytes`)",
        "stopped at",
        "partial file was removed",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert!(!dest.exists());
    assert!(!partial_path(&dest).exists());
    assert_eq!(
        server.requests_to("/endless.pt").len(),
        1,
        "an oversized body is not retried"
    );
}

#[test]
fn body_longer_than_content_length_is_cut_off() {
    let server = TestServer::start();
    // Chunked framing wins over `Content-Length` on the wire, so the header
    // alone says 1000 while the body never ends.
    server.route(
        "/liar.pt",
        Response::endless(200)
            .chunked()
            .header("Content-Length", "1000"),
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("liar.pt");
    let err = fetch(&server.url("/liar.pt"), &dest, &quick()).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, SourceError::Oversized { limit: 1000, .. }),
        "{err:?}"
    );
    assert!(message.contains("`Content-Length`"), "{message}");
    assert!(!dest.exists());
    assert!(!partial_path(&dest).exists());
}

#[test]
fn content_length_above_declared_size_is_refused_before_reading() {
    let server = TestServer::start();
    server.file("/big.pt", content());
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("big.pt");
    let options = TransferOptions {
        size: Some(1000),
        ..quick()
    };
    let err = fetch(&server.url("/big.pt"), &dest, &options).unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::Oversized {
                limit: 1000,
                seen: 300_000,
                announced: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("announced 300000 bytes, more than 1000 (the declared `size_bytes`)"),
        "{err}"
    );
    assert!(!dest.exists());
    assert!(!partial_path(&dest).exists());
    assert_eq!(server.requests_to("/big.pt").len(), 1);
}

#[test]
fn a_declared_size_still_accepts_the_exact_file_and_resumes() {
    // The caps must not get in the way of a good transfer, resumed or not.
    let server = TestServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    server.handle("/ok.pt", move |request| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Response::ok(content()).truncate_after(123_456)
        } else {
            file_response(request, &content())
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("ok.pt");
    let options = TransferOptions {
        size: Some(300_000),
        ..quick()
    };
    assert_eq!(
        fetch(&server.url("/ok.pt"), &dest, &options).unwrap(),
        300_000
    );
    assert!(fs_err::read(&dest).unwrap() == content());
    let requests = server.requests_to("/ok.pt");
    assert_eq!(requests.len(), 2);
    assert!(requests[1].range_start().is_some_and(|start| start > 0));
    // The bytes as stored: a gzip-encoded answer would make `Range`
    // offsets count other bytes than the partial file holds.
    for request in &requests {
        assert_eq!(request.header("accept-encoding"), Some("identity"));
    }
}

#[test]
fn stall_after_headers_times_out() {
    let server = TestServer::start();
    server.route("/stall.pt", Response::ok(content()).hang_after(0));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("stall.pt");
    let options = TransferOptions {
        retries: 1,
        timeout: Duration::from_millis(300),
        ..quick()
    };
    let started = Instant::now();
    let err = fetch(&server.url("/stall.pt"), &dest, &options).unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(matches!(err, SourceError::TimedOut { .. }), "{err:?}");
    let message = err.to_string();
    for needle in [
        "/stall.pt",
        "timed out while reading the body, after 0 bytes",
        "no data for 300ms",
        "ZOO_HTTP_TIMEOUT",
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    assert_eq!(
        server.requests_to("/stall.pt").len(),
        2,
        "retried, but a bounded number of times"
    );
    assert!(!dest.exists());
}

#[test]
fn stall_mid_body_times_out_then_resumes() {
    let server = TestServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    server.handle("/slow.pt", move |request| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Response::ok(content()).hang_after(100_000)
        } else {
            file_response(request, &content())
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("slow.pt");
    let options = TransferOptions {
        timeout: Duration::from_millis(300),
        ..quick()
    };
    fetch(&server.url("/slow.pt"), &dest, &options).unwrap();
    assert!(fs_err::read(&dest).unwrap() == content());
    let requests = server.requests_to("/slow.pt");
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1]
            .range_start()
            .is_some_and(|start| start > 0 && start <= 100_000)
    );
}

#[test]
fn stall_before_headers_times_out() {
    let server = TestServer::start();
    server.handle("/mute.pt", |_| {
        std::thread::sleep(Duration::from_secs(3));
        Response::ok("late")
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("mute.pt");
    let options = TransferOptions {
        retries: 0,
        timeout: Duration::from_millis(300),
        ..quick()
    };
    let started = Instant::now();
    let err = fetch(&server.url("/mute.pt"), &dest, &options).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    let message = err.to_string();
    assert!(
        message.contains("timed out while waiting for the response"),
        "{message}"
    );
    assert!(message.contains("ZOO_HTTP_TIMEOUT"), "{message}");
}

#[test]
fn file_scheme_fails_fast_without_retries() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    fs_err::write(&secret, "do not copy").unwrap();
    let file_url = format!("file://{}", secret.display());
    // Default options: five retries with backoff would take seconds.
    let cases = [
        (file_url.as_str(), "scheme `file`"),
        ("ftp://127.0.0.1:9/model.zip", "scheme `ftp`"),
        ("", "empty"),
        ("models/model.pt", "no scheme"),
        ("http:///model.pt", "no host"),
    ];
    for (url, needle) in cases {
        let dest = dir.path().join("out/model.pt");
        let started = Instant::now();
        let err = fetch(url, &dest, &TransferOptions::default()).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{url}: retried ({:?})",
            started.elapsed()
        );
        assert!(
            matches!(err, SourceError::UnsupportedUrl { .. }),
            "{url}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&format!("`{url}`")), "{message}");
        assert!(message.contains(needle), "{url}: {message}");
        assert!(
            message.contains("only `http://` and `https://`"),
            "{message}"
        );
        assert!(!message.contains("network"), "{message}");
        assert!(!dest.exists() && !dir.path().join("out").exists(), "{url}");
    }
}

#[test]
fn redirect_to_file_scheme_fails_fast_without_retries() {
    let server = TestServer::start();
    server.route("/model.pt", Response::redirect(302, "file:///etc/passwd"));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.pt");
    let started = Instant::now();
    let err = fetch(&server.url("/model.pt"), &dest, &TransferOptions::default()).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "retried: {err}"
    );
    assert!(matches!(err, SourceError::UnsupportedUrl { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("`file:///etc/passwd`"), "{message}");
    assert!(message.contains("redirected there"), "{message}");
    assert!(!message.contains("network"), "{message}");
    assert!(!dest.exists());
    assert_eq!(server.requests_to("/model.pt").len(), 1, "{err}");
    assert_eq!(server.requests().len(), 1, "nothing else was requested");
}

#[test]
fn google_drive_page_pointing_at_a_file_url_fails_fast() {
    let server = TestServer::start();
    server.route(
        "/uc",
        Response::ok(
            r#"<form action="file:///etc/passwd"><input name="confirm" value="t"></form>"#,
        )
        .header("Content-Type", "text/html"),
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("drive.pth");
    let started = Instant::now();
    let err = fetch_google_drive(
        &HttpClient::new(),
        &server.base_url(),
        "ID",
        &dest,
        &TransferOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(200));
    assert!(
        matches!(err, SourceError::UnsupportedUrl { ref url, .. } if url.starts_with("file:///etc/passwd")),
        "{err:?}"
    );
    assert!(!dest.exists());
}

#[test]
fn zipball_redirect_to_a_file_url_fails_fast() {
    let api = TestServer::start();
    let sha = "a".repeat(40);
    api.route(
        "/repos/acme/models",
        Response::json(200, &serde_json::json!({"default_branch": "main"})),
    );
    api.route(
        "/repos/acme/models/commits/main",
        Response::json(200, &serde_json::json!({"sha": sha})),
    );
    api.route(
        &format!("/repos/acme/models/zipball/{sha}"),
        Response::redirect(302, "file:///etc/passwd"),
    );
    let work = tempfile::tempdir().unwrap();
    let source: SourceId = "acme/models".parse().unwrap();
    let started = Instant::now();
    let err = fetch_source(
        &source,
        &GitHub::new(&api.base_url(), None),
        work.path(),
        &zoo_sources::ExtractLimits::default(),
        &TransferOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(err, SourceError::UnsupportedUrl { ref url, .. } if url == "file:///etc/passwd"),
        "{err:?}"
    );
}

#[test]
fn redirects_are_followed_hop_by_hop_and_loops_end() {
    let first = TestServer::start();
    let second = TestServer::start();
    second.file("/files/model.pt", content());
    // Relative, then root-relative, then to another host.
    first.route("/a/start.pt", Response::redirect(302, "next.pt"));
    first.route("/a/next.pt", Response::redirect(301, "/b/hop.pt"));
    first.route(
        "/b/hop.pt",
        Response::redirect(307, &second.url("/files/model.pt")),
    );
    first.route("/loop.pt", Response::redirect(302, "/loop.pt"));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.pt");
    fetch(&first.url("/a/start.pt"), &dest, &quick()).unwrap();
    assert!(fs_err::read(&dest).unwrap() == content());

    let options = TransferOptions {
        retries: 0,
        ..quick()
    };
    let err = fetch(
        &first.url("/loop.pt"),
        &dir.path().join("loop.pt"),
        &options,
    )
    .unwrap_err();
    assert!(err.to_string().contains("more than 10 redirects"), "{err}");
    assert_eq!(first.requests_to("/loop.pt").len(), 11);
}

/// A body with no `Content-Length` and no declared size used to be written
/// until the disk was full; it stops at the download ceiling
/// (`TransferOptions::max_bytes`, `ZOO_MAX_DOWNLOAD_BYTES` in the CLI).
#[test]
fn endless_body_without_any_size_stops_at_the_download_ceiling() {
    let server = TestServer::start();
    server.route("/endless.tar.gz", Response::endless(200));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("endless.tar.gz");
    let options = TransferOptions {
        max_bytes: 3 << 20,
        ..quick()
    };
    let err = fetch(&server.url("/endless.tar.gz"), &dest, &options).unwrap_err();
    let SourceError::Oversized { limit, seen, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*limit, 3 << 20);
    assert!(*seen > 3 << 20 && *seen <= (4 << 20) + 1, "{seen}");
    let message = err.to_string();
    assert!(message.contains("ZOO_MAX_DOWNLOAD_BYTES"), "{message}");
    assert!(!dest.exists() && !partial_path(&dest).exists());
    // A declared size above the ceiling does not lift it.
    let options = TransferOptions {
        size: Some(1 << 40),
        max_bytes: 1 << 20,
        ..quick()
    };
    let err = fetch(&server.url("/endless.tar.gz"), &dest, &options).unwrap_err();
    assert!(
        matches!(err, SourceError::Oversized { limit, .. } if limit == 1 << 20),
        "{err:?}"
    );
}
