use std::io::Read;
use std::time::{Duration, Instant};

use zoo_test_support::{Archive, Response, TestServer};

use crate::agent;

#[test]
fn serves_routes_records_requests_and_404s_the_rest() {
    let server = TestServer::start();
    server.route("/a", Response::ok("alpha").header("X-Test", "1"));
    let mut response = agent()
        .get(&server.url("/a?x=1"))
        .header("X-Custom", "yes")
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-test"], "1");
    assert_eq!(response.body_mut().read_to_string().unwrap(), "alpha");
    let missing = agent().get(&server.url("/nope")).call().unwrap();
    assert_eq!(missing.status(), 404);

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].path, "/a");
    assert_eq!(requests[0].query.as_deref(), Some("x=1"));
    assert_eq!(requests[0].header("x-custom"), Some("yes"));
    assert_eq!(server.requests_to("/nope").len(), 1);
}

#[test]
fn redirects_are_followed_across_hosts() {
    let first = TestServer::start();
    let second = TestServer::start();
    second.route("/target", Response::ok("landed"));
    first.route("/go", Response::redirect(302, &second.url("/target")));
    let mut response = agent().get(&first.url("/go")).call().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.body_mut().read_to_string().unwrap(), "landed");
    assert_eq!(second.requests_to("/target").len(), 1);
}

#[test]
fn sequences_answer_in_order_then_repeat_the_last() {
    let server = TestServer::start();
    server.sequence(
        "/flaky",
        vec![
            Response::status(503).header("Retry-After", "0"),
            Response::ok("fine"),
        ],
    );
    let statuses: Vec<u16> = (0..3)
        .map(|_| {
            agent()
                .get(&server.url("/flaky"))
                .call()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(statuses, vec![503, 200, 200]);
}

#[test]
fn files_support_head_and_ranges() {
    let server = TestServer::start();
    let content: Vec<u8> = (0..=255u8).collect();
    server.file("/blob", content.clone());

    let head = agent().head(&server.url("/blob")).call().unwrap();
    assert_eq!(head.headers()["content-length"], "256");
    assert_eq!(head.headers()["accept-ranges"], "bytes");

    let mut partial = agent()
        .get(&server.url("/blob"))
        .header("Range", "bytes=200-")
        .call()
        .unwrap();
    assert_eq!(partial.status(), 206);
    assert_eq!(partial.headers()["content-range"], "bytes 200-255/256");
    assert_eq!(partial.body_mut().read_to_vec().unwrap(), &content[200..]);

    let unsatisfiable = agent()
        .get(&server.url("/blob"))
        .header("Range", "bytes=999-")
        .call()
        .unwrap();
    assert_eq!(unsatisfiable.status(), 416);
}

#[test]
fn a_truncated_body_surfaces_as_a_read_error() {
    let server = TestServer::start();
    server.route(
        "/cut",
        Response::ok(vec![7u8; 100_000]).truncate_after(1000),
    );
    let mut response = agent().get(&server.url("/cut")).call().unwrap();
    assert_eq!(response.status(), 200);
    let mut body = Vec::new();
    let result = response.body_mut().as_reader().read_to_end(&mut body);
    assert!(
        result.is_err(),
        "a short body must be an error, got {result:?}"
    );
    assert!(body.len() <= 1000);
}

#[test]
fn a_stalled_body_arrives_late_but_whole() {
    let server = TestServer::start();
    let pause = Duration::from_millis(300);
    server.route(
        "/slow",
        Response::ok(vec![1u8; 4096]).stall_after(10, pause),
    );
    let started = Instant::now();
    let mut response = agent().get(&server.url("/slow")).call().unwrap();
    let body = response.body_mut().read_to_vec().unwrap();
    assert_eq!(body.len(), 4096);
    assert!(started.elapsed() >= pause);
}

#[test]
fn a_stall_longer_than_the_client_timeout_is_a_timeout_error() {
    let server = TestServer::start();
    server.route(
        "/hang",
        Response::ok(vec![1u8; 4096]).stall_after(10, Duration::from_secs(5)),
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_recv_body(Some(Duration::from_millis(200)))
        .build()
        .into();
    let mut response = agent.get(&server.url("/hang")).call().unwrap();
    assert!(response.body_mut().read_to_vec().is_err());
}

#[test]
fn archives_are_served_as_built() {
    let server = TestServer::start();
    let archive = Archive::new().file("dir/manifest.json", "{}");
    server.route("/a.zip", Response::ok(archive.to_zip()));
    server.route("/a.tar.gz", Response::ok(archive.to_tar_gz()));
    let zip = agent()
        .get(&server.url("/a.zip"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    assert_eq!(&zip[..2], b"PK");
    let gz = agent()
        .get(&server.url("/a.tar.gz"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
}

#[test]
fn endless_bodies_never_end_in_any_framing() {
    let server = TestServer::start();
    server.route("/close", Response::endless(200));
    server.route(
        "/chunked",
        Response::endless(200)
            .chunked()
            .header("Content-Length", "1000"),
    );
    for path in ["/close", "/chunked"] {
        let mut response = agent().get(&server.url(path)).call().unwrap();
        let mut reader = response.body_mut().as_reader();
        let mut body = vec![0u8; 3 << 20];
        reader.read_exact(&mut body).unwrap();
        assert_eq!(body[256], 0, "{path}");
        assert_eq!(body[1000], (1000 % 256) as u8, "{path}");
    }
    // The false `Content-Length` is sent beside the chunked framing.
    let response = agent().get(&server.url("/chunked")).call().unwrap();
    assert_eq!(response.headers()["content-length"], "1000");
}

#[test]
fn a_given_content_length_is_sent_as_is() {
    let server = TestServer::start();
    server.route(
        "/short",
        Response::ok(vec![5u8; 100]).header("Content-Length", "10"),
    );
    let mut response = agent().get(&server.url("/short")).call().unwrap();
    assert_eq!(response.body_mut().read_to_vec().unwrap(), vec![5u8; 10]);
    server.route("/closed", Response::ok(vec![6u8; 100]).close_delimited());
    let mut response = agent().get(&server.url("/closed")).call().unwrap();
    assert!(response.headers().get("content-length").is_none());
    assert_eq!(response.body_mut().read_to_vec().unwrap(), vec![6u8; 100]);
}

#[test]
fn a_hanging_body_stays_silent_until_the_client_gives_up() {
    let server = TestServer::start();
    server.route("/hang", Response::ok(vec![1u8; 4096]).hang_after(10));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_per_read(Some(Duration::from_millis(300)))
        .build()
        .into();
    let started = Instant::now();
    let mut response = agent.get(&server.url("/hang")).call().unwrap();
    assert!(response.body_mut().read_to_vec().is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn range_starts_are_parsed_from_requests() {
    let server = TestServer::start();
    server.route("/r", Response::ok("x"));
    agent()
        .get(&server.url("/r"))
        .header("Range", "bytes=42-")
        .call()
        .unwrap();
    agent().get(&server.url("/r")).call().unwrap();
    let starts: Vec<Option<u64>> = server
        .requests_to("/r")
        .iter()
        .map(zoo_test_support::Request::range_start)
        .collect();
    assert_eq!(starts, vec![Some(42), None]);
}
