//! Seal the trust boundary, datasets and images: each test is named after
//! an attack that worked on the old code, and drives the `zoo` binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use zoo_test_support::TestServer;

use crate::apply::classifier_source;
use crate::util::Sandbox;

/// `count` small PNGs of two sizes in `dir`.
fn images(dir: &Path, count: usize) {
    fs_err::create_dir_all(dir).unwrap();
    for index in 0..count {
        let side = if index % 2 == 0 { 24 } else { 32 };
        image::RgbImage::from_fn(side, side, |x, y| {
            image::Rgb([(x * 9 + index as u32) as u8, (y * 5) as u8, 90])
        })
        .save(dir.join(format!("img{index:02}.png")))
        .unwrap();
    }
}

/// A sandbox with the tiny TorchScript classifier registered and
/// downloaded, and `count` images in `<sandbox>/pics`.
fn classifier_with_pictures(server: &TestServer, count: usize) -> (Sandbox, PathBuf) {
    let sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &classifier_source(server)]);
    sandbox.ok(&["models", "download", "acme/tiny-classifier"]);
    let pics = sandbox.dir.path().join("pics");
    images(&pics, count);
    (sandbox, pics)
}

fn apply_args<'a>(dataset: &'a str, field: &'a str) -> Vec<&'a str> {
    vec![
        "models",
        "apply",
        "acme/tiny-classifier",
        dataset,
        field,
        "--json",
    ]
}

/// Waits for `child` at most `limit`; a child still running then is killed
/// and the test fails (the old code blocked forever on a FIFO).
fn finish_within(mut child: Child, limit: Duration, what: &str) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`{what}` hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn spawn(sandbox: &Sandbox, args: &[&str]) -> Child {
    sandbox
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn json_of(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn overwrite_of_pred_keeps_predictions() {
    let server = TestServer::start();
    let (sandbox, pics) = classifier_with_pictures(&server, 3);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);
    for field in ["predictions", "pred_old", "pred"] {
        assert_eq!(
            sandbox.ok(&apply_args("pics", field)).json()["succeeded"],
            3
        );
    }
    let mut overwrite = apply_args("pics", "pred");
    overwrite.push("--overwrite");
    assert_eq!(sandbox.ok(&overwrite).json()["processed"], 3);
    let info = sandbox.ok(&["datasets", "info", "pics", "--json"]).json();
    assert_eq!(
        info["label_fields"],
        serde_json::json!({"pred": 3, "pred_old": 3, "predictions": 3}),
        "`--overwrite` of `pred` deleted another field"
    );
    // And the other runs are still finished: nothing left to do.
    assert_eq!(
        sandbox.ok(&apply_args("pics", "predictions")).json()["processed"],
        0
    );
}

#[test]
fn reserved_label_field_filepath_is_refused() {
    let server = TestServer::start();
    let (sandbox, pics) = classifier_with_pictures(&server, 1);
    let dir = pics.to_str().unwrap();
    let cases = [
        ("filepath", "a field every FiftyOne sample has"),
        ("id", "a field every FiftyOne sample has"),
        ("tags", "a field every FiftyOne sample has"),
        ("metadata", "a field every FiftyOne sample has"),
        ("created_at", "a field every FiftyOne sample has"),
        ("last_modified_at", "a field every FiftyOne sample has"),
        ("", "cannot be empty"),
        ("_id", "starts with `_`"),
        ("_media_type", "starts with `_`"),
        ("_rand", "starts with `_`"),
        ("_dataset_id", "starts with `_`"),
        ("_private", "starts with `_`"),
        ("a.b", "contains `.`"),
        ("$where", "contains `$`"),
        ("bad\u{1b}[31m", "control character"),
    ];
    for (field, expected) in cases {
        let err = sandbox
            .fails(&["models", "apply", "acme/tiny-classifier", dir, field])
            .stderr();
        assert!(
            err.contains("cannot store results under"),
            "{field:?}: {err}"
        );
        assert!(err.contains(expected), "{field:?}: {err}");
        let err = sandbox
            .fails(&["models", "embed", "acme/tiny-classifier", dir, field])
            .stderr();
        assert!(err.contains(expected), "embed {field:?}: {err}");
    }
    // Refused before anything was indexed.
    let list = sandbox.ok(&["datasets", "list", "--json"]).json();
    assert_eq!(list, serde_json::json!([]));
    // Both exports stay whole after a good run.
    let summary = sandbox.ok(&apply_args(dir, "pred")).json();
    let dataset = summary["dataset"].as_str().unwrap();
    let jsonl = sandbox.dir.path().join("out.jsonl");
    sandbox.ok(&["datasets", "export", dataset, jsonl.to_str().unwrap()]);
    let line: serde_json::Value =
        serde_json::from_str(fs_err::read_to_string(&jsonl).unwrap().trim()).unwrap();
    assert!(line["filepath"].as_str().unwrap().ends_with("img00.png"));
    let folder = sandbox.dir.path().join("fo");
    sandbox.ok(&[
        "datasets",
        "export",
        dataset,
        folder.to_str().unwrap(),
        "--format",
        "fiftyone",
    ]);
    // Named as FiftyOne names exported media: the file's own name.
    assert!(folder.join("data/img00.png").is_file());
}

#[test]
fn concurrent_apply_on_new_folder_both_succeed() {
    let server = TestServer::start();
    let (sandbox, pics) = classifier_with_pictures(&server, 40);
    let dir = pics.to_str().unwrap();
    // Several at once on a folder no dataset has yet, and a fresh database.
    let children: Vec<Child> = (0..4)
        .map(|_| spawn(&sandbox, &apply_args(dir, "pred")))
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|child| finish_within(child, Duration::from_secs(300), "zoo models apply"))
        .collect();
    for output in &outputs {
        let summary = json_of(output);
        assert_eq!(summary["failed"], 0, "{summary}");
    }
    let list = sandbox.ok(&["datasets", "list", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["samples"], 40);
    assert_eq!(list[0]["label_fields"]["pred"], 40);
}

#[cfg(unix)]
#[test]
fn non_utf8_file_name_round_trips() {
    use std::os::unix::ffi::OsStrExt;
    let server = TestServer::start();
    let (sandbox, pics) = classifier_with_pictures(&server, 1);
    let odd = pics.join(std::ffi::OsStr::from_bytes(b"caf\xe9.png"));
    fs_err::copy(pics.join("img00.png"), &odd).unwrap();
    // And a corrupt one, whose failure `--json` must be able to name.
    fs_err::write(
        pics.join(std::ffi::OsStr::from_bytes(b"bad\xfe.jpg")),
        b"garbage",
    )
    .unwrap();
    let summary = sandbox
        .ok(&apply_args(pics.to_str().unwrap(), "pred"))
        .json();
    assert_eq!(summary["succeeded"], 2, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    let failure = &summary["failures"][0];
    assert!(
        failure["filepath"]
            .as_str()
            .unwrap()
            .ends_with("bad\u{fffd}.jpg"),
        "{failure}"
    );
    assert!(
        failure["error"].as_str().unwrap().contains("cannot decode"),
        "{failure}"
    );
    let dataset = summary["dataset"].as_str().unwrap();
    // JSON lines show the name lossily, with its label.
    let jsonl = sandbox.dir.path().join("out.jsonl");
    sandbox.ok(&["datasets", "export", dataset, jsonl.to_str().unwrap()]);
    let text = fs_err::read_to_string(&jsonl).unwrap();
    let line: serde_json::Value = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|line| {
            line["filepath"]
                .as_str()
                .unwrap()
                .ends_with("caf\u{fffd}.png")
        })
        .unwrap();
    assert_eq!(line["pred"]["_cls"], "Classification");
    // FiftyOne's folder holds a copy of the real file.
    let folder = sandbox.dir.path().join("fo");
    sandbox.ok(&[
        "datasets",
        "export",
        dataset,
        folder.to_str().unwrap(),
        "--format",
        "fiftyone",
    ]);
    let copy = fs_err::read_dir(folder.join("data"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_string_lossy().ends_with("caf\u{fffd}.png"))
        .unwrap();
    assert_eq!(fs_err::read(copy).unwrap(), fs_err::read(&odd).unwrap());
    // A folder whose real path is not UTF-8 (reached through a link with a
    // UTF-8 name, as arguments must be UTF-8): its dataset works, and
    // `datasets list --json` shows its root lossily instead of failing.
    let odd_dir = sandbox
        .dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"dossier-\xff"));
    images(&odd_dir, 1);
    let link = sandbox.dir.path().join("dossier-link");
    std::os::unix::fs::symlink(&odd_dir, &link).unwrap();
    let summary = sandbox
        .ok(&apply_args(link.to_str().unwrap(), "pred"))
        .json();
    assert_eq!(summary["succeeded"], 1);
    let list = sandbox.ok(&["datasets", "list", "--json"]).json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|info| info["root"].as_str().unwrap().ends_with("dossier-\u{fffd}")),
        "{list}"
    );
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[cfg(unix)]
#[test]
fn fifo_named_jpg_does_not_hang() {
    let server = TestServer::start();
    let (sandbox, pics) = classifier_with_pictures(&server, 2);
    mkfifo(&pics.join("fifo.jpg"));
    let dir = pics.to_str().unwrap();
    // Indexing skips it with a warning.
    let output = finish_within(
        spawn(&sandbox, &["datasets", "create", "pics", dir]),
        Duration::from_secs(60),
        "zoo datasets create",
    );
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("fifo.jpg") && stderr.contains("FIFO"),
        "{stderr}"
    );
    assert!(stderr.contains("with 2 samples"), "{stderr}");
    // An image swapped for a FIFO after indexing fails as its sample.
    fs_err::remove_file(pics.join("img01.png")).unwrap();
    mkfifo(&pics.join("img01.png"));
    let output = finish_within(
        spawn(&sandbox, &apply_args("pics", "pred")),
        Duration::from_secs(120),
        "zoo models apply",
    );
    let summary = json_of(&output);
    assert_eq!(summary["succeeded"], 1, "{summary}");
    assert_eq!(summary["failed"], 1);
    let error = summary["failures"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("img01.png") && error.contains("not a regular file but a FIFO"),
        "{error}"
    );
    // The FiftyOne export, which copies the images, fails on it at once.
    let out = sandbox.dir.path().join("fo");
    let output = finish_within(
        spawn(
            &sandbox,
            &[
                "datasets",
                "export",
                "pics",
                out.to_str().unwrap(),
                "--format",
                "fiftyone",
            ],
        ),
        Duration::from_secs(60),
        "zoo datasets export",
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("img01.png") && stderr.contains("FIFO"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn symlink_to_dev_zero_is_capped() {
    let server = TestServer::start();
    let (sandbox, pics) = classifier_with_pictures(&server, 2);
    std::os::unix::fs::symlink("/dev/zero", pics.join("zero.jpg")).unwrap();
    let dir = pics.to_str().unwrap();
    let output = sandbox.ok(&["datasets", "create", "pics", dir]);
    let stderr = output.stderr();
    assert!(
        stderr.contains("zero.jpg") && stderr.contains("character device"),
        "{stderr}"
    );
    // An image swapped for a link to /dev/zero after indexing: that sample
    // fails at once, the others are labelled.
    fs_err::remove_file(pics.join("img00.png")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", pics.join("img00.png")).unwrap();
    let output = finish_within(
        spawn(&sandbox, &apply_args("pics", "pred")),
        Duration::from_secs(120),
        "zoo models apply",
    );
    let summary = json_of(&output);
    assert_eq!(summary["succeeded"], 1, "{summary}");
    let error = summary["failures"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("img00.png") && error.contains("character device"),
        "{error}"
    );
}

#[test]
fn oversized_image_fails_that_sample() {
    let server = TestServer::start();
    let (mut sandbox, pics) = classifier_with_pictures(&server, 2);
    // 24x24 = 576 and 32x32 = 1024 pixels: with a limit of 500 the first
    // decodes (with a warning, as Pillow), the second is over twice it.
    sandbox
        .env
        .push(("ZOO_MAX_IMAGE_PIXELS".into(), "500".into()));
    // A 3 GB file named `.jpg` (sparse: it costs no disk), which the old
    // code read whole into memory.
    fs_err::File::create(pics.join("huge.jpg"))
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let run = sandbox.ok(&apply_args(pics.to_str().unwrap(), "pred"));
    let summary = run.json();
    assert_eq!(summary["succeeded"], 1, "{summary}");
    assert_eq!(summary["failed"], 2);
    let failures = summary["failures"].as_array().unwrap();
    let error_of = |name: &str| {
        failures
            .iter()
            .find(|failure| failure["filepath"].as_str().unwrap().ends_with(name))
            .unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let pixels = error_of("img01.png");
    for part in [
        "32x32 = 1024 pixels",
        "limit of 500 pixels",
        "`ZOO_MAX_IMAGE_PIXELS`",
    ] {
        assert!(pixels.contains(part), "{part}: {pixels}");
    }
    let bytes = error_of("huge.jpg");
    for part in [
        "3221225472 bytes",
        "limit of 1073741824 bytes",
        "`ZOO_MAX_IMAGE_BYTES`",
    ] {
        assert!(bytes.contains(part), "{part}: {bytes}");
    }
    assert!(
        run.stderr().contains("decoding it anyway"),
        "{}",
        run.stderr()
    );
    // The 3 GB were never read.
    if let Some(peak) = summary["peak_rss_bytes"].as_u64() {
        assert!(peak < 1 << 30, "peak resident memory {peak}");
    }
    // The byte cap is configurable too, and a bad value is a clear error.
    sandbox
        .env
        .push(("ZOO_MAX_IMAGE_BYTES".into(), "100".into()));
    let mut overwrite = apply_args(pics.to_str().unwrap(), "pred");
    overwrite.push("--overwrite");
    let run = sandbox.run(&overwrite);
    assert!(!run.0.status.success(), "every sample is over 100 bytes");
    assert!(
        run.stdout().contains("limit of 100 bytes"),
        "{}",
        run.stdout()
    );
    sandbox
        .env
        .push(("ZOO_MAX_IMAGE_BYTES".into(), "lots".into()));
    let err = sandbox.fails(&overwrite).stderr();
    assert!(
        err.contains("`ZOO_MAX_IMAGE_BYTES` must be a whole number"),
        "{err}"
    );
}

#[test]
fn apply_exits_non_zero_when_every_sample_fails() {
    let server = TestServer::start();
    let (sandbox, pics) = classifier_with_pictures(&server, 3);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);
    // One image gone: the run succeeds and lists the failure (as before).
    fs_err::remove_file(pics.join("img00.png")).unwrap();
    let summary = sandbox.ok(&apply_args("pics", "partial")).json();
    assert_eq!(
        (summary["succeeded"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(1))
    );
    // Retrying only that failure, on a field with results, still succeeds.
    assert_eq!(
        sandbox.ok(&apply_args("pics", "partial")).json()["failed"],
        1
    );
    // Every image gone: nothing can be stored, and the command says so.
    for index in 1..3 {
        fs_err::remove_file(pics.join(format!("img{index:02}.png"))).unwrap();
    }
    let run = sandbox.fails(&apply_args("pics", "pred"));
    let err = run.stderr();
    assert!(err.contains("every one of the 3 samples failed"), "{err}");
    assert!(err.contains("img00.png"), "{err}");
    assert!(err.contains("nothing is stored under `pred`"), "{err}");
    // `--json` still prints the summary on stdout.
    assert_eq!(run.json()["failed"], 3);
    let run = sandbox.fails(&["models", "apply", "acme/tiny-classifier", "pics", "pred"]);
    assert!(
        run.stderr().contains("3 sample(s) failed"),
        "{}",
        run.stderr()
    );
    let err = sandbox
        .fails(&["models", "embed", "acme/tiny-classifier", "pics", "emb"])
        .stderr();
    assert!(err.contains("every one of the 3 samples failed"), "{err}");
    assert!(err.contains("nothing is stored under `emb`"), "{err}");
}
