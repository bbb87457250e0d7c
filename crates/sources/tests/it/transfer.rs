use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use zoo_sources::{
    HttpClient, NoProgress, SourceError, TransferOptions, fetch_file, fetch_google_drive,
    partial_path, sha256_file,
};
use zoo_test_support::{Response, TestServer, file_response};

fn content() -> Vec<u8> {
    (0..300_000u32).map(|index| (index % 251) as u8).collect()
}

fn quick() -> TransferOptions {
    TransferOptions {
        backoff: Duration::from_millis(10),
        ..TransferOptions::default()
    }
}

#[test]
fn downloads_verify_and_leave_no_partial() {
    let server = TestServer::start();
    server.file("/model.pt", content());
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("sub/model.pt");
    let digest = {
        let scratch = dir.path().join("scratch");
        fs_err::write(&scratch, content()).unwrap();
        sha256_file(&scratch).unwrap()
    };
    let options = TransferOptions {
        sha256: Some(digest.to_uppercase()),
        size: Some(300_000),
        ..quick()
    };
    let size = fetch_file(
        &HttpClient::new(),
        &server.url("/model.pt"),
        &dest,
        &options,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(size, 300_000);
    assert_eq!(fs_err::read(&dest).unwrap(), content());
    assert!(!partial_path(&dest).exists());
}

#[test]
fn a_bad_digest_or_size_is_refused_and_discarded() {
    let server = TestServer::start();
    server.file("/model.pt", content());
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("model.pt");
    for options in [
        TransferOptions {
            sha256: Some("00".repeat(32)),
            ..quick()
        },
        TransferOptions {
            size: Some(12),
            ..quick()
        },
    ] {
        let err = fetch_file(
            &HttpClient::new(),
            &server.url("/model.pt"),
            &dest,
            &options,
            &NoProgress,
        )
        .unwrap_err();
        // A wrong digest is found at the end; a size below the announced
        // `Content-Length` before the first byte is read.
        assert!(
            matches!(
                err,
                SourceError::Verification { .. }
                    | SourceError::Oversized {
                        announced: true,
                        ..
                    }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("failed verification"), "{err}");
        assert!(!dest.exists());
        assert!(!partial_path(&dest).exists());
    }
}

#[test]
fn retries_after_503_then_succeeds() {
    let server = TestServer::start();
    server.sequence(
        "/flaky.pt",
        vec![
            Response::status(503).header("Retry-After", "0"),
            Response::status(502),
            Response::ok(content()),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("flaky.pt");
    fetch_file(
        &HttpClient::new(),
        &server.url("/flaky.pt"),
        &dest,
        &quick(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(fs_err::read(&dest).unwrap(), content());
    assert_eq!(server.requests_to("/flaky.pt").len(), 3);

    server.route("/down.pt", Response::status(503));
    let options = TransferOptions {
        retries: 2,
        ..quick()
    };
    let err = fetch_file(
        &HttpClient::new(),
        &server.url("/down.pt"),
        &dir.path().join("down.pt"),
        &options,
        &NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(server.requests_to("/down.pt").len(), 3);

    server.route("/missing.pt", Response::status(404));
    let err = fetch_file(
        &HttpClient::new(),
        &server.url("/missing.pt"),
        &dir.path().join("m.pt"),
        &quick(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    assert_eq!(
        server.requests_to("/missing.pt").len(),
        1,
        "a 404 is not retried"
    );
}

#[test]
fn resumes_with_range_after_a_mid_body_failure() {
    let server = TestServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let data = content();
    server.handle("/big.pt", move |request| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Response::ok(data.clone()).truncate_after(100_000)
        } else {
            file_response(request, &data)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("big.pt");
    fetch_file(
        &HttpClient::new(),
        &server.url("/big.pt"),
        &dest,
        &quick(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(fs_err::read(&dest).unwrap(), content());
    let requests = server.requests_to("/big.pt");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("range"), None);
    let range = requests[1].header("range").unwrap();
    let start: u64 = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(start > 0 && start <= 100_000, "{range}");
}

#[test]
fn a_server_without_ranges_restarts_cleanly() {
    let server = TestServer::start();
    server.route("/plain.pt", Response::ok(content()));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("plain.pt");
    // A stale partial from an earlier, killed run.
    fs_err::write(partial_path(&dest), vec![9u8; 5000]).unwrap();
    fetch_file(
        &HttpClient::new(),
        &server.url("/plain.pt"),
        &dest,
        &quick(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(fs_err::read(&dest).unwrap(), content());
}

#[test]
fn google_drive_confirmation_flow() {
    let server = TestServer::start();
    let base = server.base_url();
    let page = format!(
        r#"<html><body>Google Drive can't scan this file for viruses.
        <form id="download-form" action="{base}/download" method="get">
        <input type="hidden" name="id" value="FILE1"><input type="hidden" name="confirm" value="t">
        <input type="hidden" name="uuid" value="abc"></form></body></html>"#
    );
    server.route(
        "/uc",
        Response::ok(page).header("Content-Type", "text/html; charset=utf-8"),
    );
    let data = content();
    server.handle("/download", move |request| {
        if request.query_param("confirm") == Some("t") && request.query_param("uuid") == Some("abc")
        {
            Response::ok(data.clone())
        } else {
            Response::status(403)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("drive.pth");
    fetch_google_drive(
        &HttpClient::new(),
        &base,
        "FILE1",
        &dest,
        &quick(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(fs_err::read(&dest).unwrap(), content());
    assert_eq!(
        server.requests_to("/uc")[0].query_param("id"),
        Some("FILE1")
    );

    // Small files come straight back, without a confirmation page.
    let direct = TestServer::start();
    direct.route(
        "/uc",
        Response::ok(vec![1u8, 2, 3]).header("Content-Type", "application/octet-stream"),
    );
    let small = dir.path().join("small.bin");
    fetch_google_drive(
        &HttpClient::new(),
        &direct.base_url(),
        "X",
        &small,
        &quick(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(fs_err::read(&small).unwrap(), vec![1, 2, 3]);
    assert_eq!(direct.requests().len(), 1);
}
