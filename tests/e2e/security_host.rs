//! Hostile model hosts and servers, through the `zoo` binary (issue 28,
//! close the new trust holes: the model host and the network). Every byte a
//! hosted model or a server sends is a stranger's: a stderr flood without a
//! newline, stderr that is not UTF-8, NaN in a label, a dict key FiftyOne
//! cannot store, huge `-k` values, thousands of `--classes`, and servers
//! that accept a connection and never answer.
//!
//! Oracle for the labels: FiftyOne 1.22.1's `Label.to_dict(extended=True)`,
//! run by the model host itself (`ZOO_TEST_FIFTYONE_PYTHON`).

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zoo_test_support::{Archive, Response, TestServer};

use crate::clip::tiny_clip_mirror;
use crate::hosted::fiftyone_python;
use crate::util::{Sandbox, manifest_source};

/// A source whose models misbehave on purpose, by the last part of their
/// name (all numpy-free FiftyOne models labelling every image `ok`):
/// `flood` writes `flood_mb` MiB of `\r` progress bars to stderr without a
/// newline on its first batch; `garbled` writes bytes that are not UTF-8
/// (and a normal line) to stderr on every batch; `hidden` returns
/// keypoints with NaN coordinates and an infinite confidence; `keys`
/// returns a dict whose keys are `ok` and, for images 13 pixels wide,
/// `a.b`; `kwargs` labels each image with the sizes of its keyword
/// arguments, and `config`'s `load_model` returns them in a JSON config.
const HOSTILE_SOURCE: &str = r#"
import os
import sys

import fiftyone.core.labels as fol
import fiftyone.core.models as fom


def download_model(model_name, model_path):
    with open(model_path, "w") as f:
        f.write("weights of " + model_name)


class Hostile(fom.Model):
    def __init__(self, kind, kwargs):
        self.kind = kind
        self.kwargs = kwargs
        self.batches = 0

    @property
    def media_type(self):
        return "image"

    @property
    def ragged_batches(self):
        return False

    @property
    def transforms(self):
        return None

    @property
    def preprocess(self):
        return False

    @preprocess.setter
    def preprocess(self, value):
        pass

    def predict(self, img):
        return self.predict_all([img])[0]

    def predict_all(self, imgs):
        self.batches += 1
        if self.kind == "flood" and self.batches == 1:
            bar = b"\r 42%|#########                | 42/100 [00:01<00:01]" * 1024
            for _ in range(self.kwargs["flood_mb"] * (1 << 20) // len(bar)):
                os.write(2, bar)
        if self.kind == "garbled":
            sys.stderr.buffer.write(b"\xff\xfe\x80 not utf-8 \xc3\n")
            sys.stderr.flush()
            print("batch %d done" % self.batches, file=sys.stderr, flush=True)
        return [self.label(img) for img in imgs]

    def label(self, img):
        if self.kind == "hidden":
            nan, inf = float("nan"), float("inf")
            return fol.Keypoints(keypoints=[fol.Keypoint(
                label="person", points=[[nan, nan], [0.5, 0.25]], confidence=[nan, inf],
            )])
        if self.kind == "keys":
            labels = {"ok": fol.Classification(label="ok")}
            if img.shape[1] == 13:
                labels["a.b"] = fol.Classification(label="dotted")
            return labels
        if self.kind == "kwargs":
            sizes = ",".join("%s=%d" % (key, len(value)) for key, value in sorted(self.kwargs.items()))
            return fol.Classification(label=sizes)
        return fol.Classification(label="ok")


def load_model(model_name, model_path, **kwargs):
    kind = model_name.rsplit("/", 1)[-1]
    if kind == "config":
        sizes = ",".join("%s=%d" % (key, len(value)) for key, value in sorted(kwargs.items()))
        return {"type": "zoo.test.Sizes", "config": {"sizes": sizes}}
    return Hostile(kind, kwargs)
"#;

const HOSTILE_MODELS: &[&str] = &["config", "flood", "garbled", "hidden", "keys", "kwargs"];

/// A sandbox with the hostile source registered and trusted, `ZOO_PYTHON`
/// set to `python`, and a dataset `pics` of `count` PNGs (every third one
/// 13 pixels wide).
fn hostile_sandbox(server: &TestServer, python: &str, count: usize) -> Sandbox {
    let mut sandbox = Sandbox::new();
    sandbox.env.push(("ZOO_PYTHON".into(), python.into()));
    let models: Vec<Value> = HOSTILE_MODELS
        .iter()
        .map(|name| {
            json!({
                "base_name": format!("zoo-sec/{name}"),
                "base_filename": format!("{name}.txt"),
                "description": "a hostile hosted model",
                "tags": ["classification"],
            })
        })
        .collect();
    let manifest = json!({"name": "zoo-sec/hostile", "models": models});
    let archive = Archive::new()
        .file("manifest.json", manifest.to_string())
        .file("__init__.py", HOSTILE_SOURCE);
    server.route("/hostile.tar.gz", Response::ok(archive.to_tar_gz()));
    sandbox.ok(&[
        "models",
        "register-source",
        &server.url("/hostile.tar.gz"),
        "--trust",
    ]);
    let pics = sandbox.dir.path().join("pics");
    fs_err::create_dir_all(&pics).unwrap();
    for index in 0..count {
        let (width, height) = if index % 3 == 2 { (13, 20) } else { (24, 16) };
        image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 9) as u8, (y * 7) as u8, (index * 40) as u8])
        })
        .save(pics.join(format!("im{index}.png")))
        .unwrap();
    }
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);
    sandbox
}

/// `zoo datasets export pics` as JSON lines, by file name.
fn exported(sandbox: &Sandbox) -> serde_json::Map<String, Value> {
    let path = sandbox.dir.path().join("pics.jsonl");
    sandbox.ok(&["datasets", "export", "pics", path.to_str().unwrap()]);
    fs_err::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            let name = value["filepath"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned();
            (name, value)
        })
        .collect()
}

/// Waits for `child`, killing it and failing when it takes longer than
/// `limit` (a hang, not a timing check); its output is read as it comes.
fn finish_within(mut child: Child, limit: Duration, what: &str) -> (bool, String) {
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`{what}` hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.success(), reader.join().unwrap())
}

/// `zoo models apply MODEL pics FIELD --json`, its summary.
fn apply(sandbox: &Sandbox, model: &str, field: &str, extra: &[&str]) -> Value {
    let mut args = vec!["models", "apply", model, "pics", field, "--json"];
    args.extend_from_slice(extra);
    sandbox.ok(&args).json()
}

/// A model printing 600 MiB of `\r` progress bars without a newline: zoo
/// reads its stderr in bounded lines, so its memory stays far below the
/// flood (the old line reader held it whole: over 1.2 GB), and the run
/// succeeds.
#[test]
fn stderr_flood_without_newline_keeps_memory_bounded() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = hostile_sandbox(&server, &python, 3);
    let run = apply(
        &sandbox,
        "zoo-sec/flood",
        "pred",
        &["-k", "flood_mb=600", "-b", "1"],
    );
    assert_eq!(run["succeeded"], 3, "{run}");
    let peak = run["peak_rss_bytes"].as_u64().unwrap();
    assert!(
        peak < 400 << 20,
        "zoo peaked at {} MiB reading a 600 MiB stderr line",
        peak >> 20
    );
}

/// A model writing bytes that are not UTF-8 to stderr: zoo keeps reading
/// (the old reader stopped, the worker's next write to stderr raised
/// `BrokenPipeError`, and every later sample failed).
#[test]
fn invalid_utf8_on_stderr_does_not_fail_later_samples() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = hostile_sandbox(&server, &python, 6);
    let run = apply(&sandbox, "zoo-sec/garbled", "pred", &["-b", "1"]);
    assert_eq!(run["succeeded"], 6, "{run}");
    assert_eq!(run["failed"], 0, "{run}");
}

/// FiftyOne writes NaN and infinity as `{"$numberDouble": "NaN"}` in
/// `to_dict(extended=True)` (hidden keypoints): zoo reads them, and every
/// sample is stored (the old reader failed every one).
#[test]
fn nan_and_infinity_in_hosted_labels_are_stored() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = hostile_sandbox(&server, &python, 2);
    let run = apply(&sandbox, "zoo-sec/hidden", "pose", &[]);
    assert_eq!(run["succeeded"], 2, "{run}");
    for (name, sample) in exported(&sandbox) {
        let keypoint = &sample["pose"]["keypoints"][0];
        assert_eq!(keypoint["label"], "person", "{name}: {sample}");
        assert_eq!(
            keypoint["points"],
            json!([[null, null], [0.5, 0.25]]),
            "{name}"
        );
    }
}

/// A dict prediction with a key FiftyOne cannot store as a field (`a.b`)
/// fails that sample, naming the field; the other samples and the other
/// key are stored (the old run stopped and stored nothing).
#[test]
fn dict_prediction_with_dotted_key_fails_only_that_sample() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = hostile_sandbox(&server, &python, 6);
    let run = apply(&sandbox, "zoo-sec/keys", "pred", &["-b", "2"]);
    assert_eq!(run["succeeded"], 4, "{run}");
    assert_eq!(run["failed"], 2, "{run}");
    let samples = exported(&sandbox);
    for (name, sample) in &samples {
        let narrow = name == "im2.png" || name == "im5.png";
        assert_eq!(sample["pred_ok"].is_null(), narrow, "{name}: {sample}");
        assert!(sample.get("pred_a.b").is_none(), "{name}: {sample}");
    }
}

/// Two `-k` values of 100 KB each reach `load_model` (they went on the
/// worker's command line, which the kernel refused with `E2BIG`, reported
/// as a missing interpreter).
#[test]
fn huge_kwargs_reach_load_model() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = hostile_sandbox(&server, &python, 1);
    let first = format!("first={}", "x".repeat(100_000));
    let second = format!("second={}", "y".repeat(100_000));
    apply(
        &sandbox,
        "zoo-sec/kwargs",
        "sizes",
        &["-k", &first, "-k", &second],
    );
    let samples = exported(&sandbox);
    assert_eq!(
        samples["im0.png"]["sizes"]["label"],
        "first=100000,second=100000"
    );
}

/// The same two 100 KB `-k` values reach a `load_model` that returns a
/// config, which `zoo models config` runs through the registry's hook
/// bridge (they went on its command line too).
#[test]
fn huge_kwargs_reach_a_load_hook() {
    let Some(python) = fiftyone_python() else {
        return;
    };
    let server = TestServer::start();
    let sandbox = hostile_sandbox(&server, &python, 1);
    sandbox.ok(&["models", "download", "zoo-sec/config"]);
    let first = format!("first={}", "x".repeat(100_000));
    let second = format!("second={}", "y".repeat(100_000));
    let config = sandbox
        .ok(&[
            "models",
            "config",
            "zoo-sec/config",
            "-k",
            &first,
            "-k",
            &second,
        ])
        .json();
    assert_eq!(
        config["config"]["sizes"], "first=100000,second=100000",
        "{config}"
    );
}

/// 20,000 zero-shot classes: CLIP's text encoder runs the prompts a few
/// hundred at a time, so memory does not grow with the classes (all at once
/// it took 7.5 GB for ViT-B/32; here, with the tiny fixture, over 1 GB).
#[test]
fn twenty_thousand_classes_keep_memory_bounded() {
    let (_server, sandbox) = tiny_clip_mirror();
    let images = sandbox.dir.path().join("images");
    fs_err::create_dir_all(&images).unwrap();
    image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 8) as u8, 90])
    })
    .save(images.join("a.png"))
    .unwrap();
    let dir = images.to_str().unwrap();
    let peak = |classes: &str| -> u64 {
        let run = sandbox
            .ok(&[
                "models",
                "apply",
                "clip-vit-base32-torch",
                dir,
                "pred",
                "--classes",
                classes,
                "--overwrite",
                "--json",
            ])
            .json();
        assert_eq!(run["succeeded"], 1, "{run}");
        run["peak_rss_bytes"].as_u64().unwrap()
    };
    let few = peak("dog,cat,bird");
    let many: Vec<String> = (0..20_000).map(|index| format!("c{index}")).collect();
    let many = peak(&many.join(","));
    assert!(
        many < few + (300 << 20),
        "20,000 classes peaked at {} MiB, 3 classes at {} MiB",
        many >> 20,
        few >> 20
    );
}

/// A registered source `acme/net` whose model `name` downloads from `url`.
fn download_sandbox(server: &TestServer, models: &[(&str, String)]) -> Sandbox {
    let models: Vec<Value> = models
        .iter()
        .map(|(name, url)| {
            json!({
                "base_name": format!("acme/{name}"),
                "base_filename": format!("{name}.pt"),
                "manager": {"type": "fiftyone.core.models.ModelManager", "config": {"url": url}},
            })
        })
        .collect();
    let url = manifest_source(
        server,
        "/source.zip",
        &json!({"name": "acme/net", "models": models}),
    );
    let sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &url]);
    sandbox
}

/// `zoo models download acme/NAME`: whether it succeeded, its stderr.
fn download(sandbox: &Sandbox, name: &str) -> (bool, String) {
    let child = sandbox
        .command(&["models", "download", &format!("acme/{name}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish_within(child, Duration::from_secs(90), name)
}

/// A server that accepts the connection and never answers, and one that
/// stalls in the body: with `ZOO_HTTP_TIMEOUT=1`, zoo gives up once the
/// download has had no data for 8 seconds, retries included, naming the
/// phase, the attempts and the knob (the old code waited four timeouts for
/// the headers, every attempt).
#[test]
fn stalled_server_fails_within_the_network_patience() {
    let server = TestServer::start();
    server.handle("/w/silent.pt", |_| {
        std::thread::sleep(Duration::from_secs(60));
        Response::status(500)
    });
    server.route(
        "/w/stalled.pt",
        Response::ok(vec![7u8; 10_000]).hang_after(100),
    );
    let mut sandbox = download_sandbox(
        &server,
        &[
            ("silent", server.url("/w/silent.pt")),
            ("stalled", server.url("/w/stalled.pt")),
        ],
    );
    sandbox.env.push(("ZOO_HTTP_TIMEOUT".into(), "1".into()));
    let cases = [
        (
            "silent",
            "/w/silent.pt",
            "while waiting for the response headers",
        ),
        (
            "stalled",
            "/w/stalled.pt",
            "while reading the body, after 100 bytes",
        ),
    ];
    for (name, path, phase) in cases {
        let (succeeded, err) = download(&sandbox, name);
        assert!(!succeeded, "{name}");
        for needle in [
            server.url(path).as_str(),
            phase,
            "no data for 1s",
            "attempts",
            "`ZOO_HTTP_TIMEOUT` (seconds, default 10",
            "8 times that",
        ] {
            assert!(err.contains(needle), "{name}: {needle}: {err}");
        }
        let requests = server.requests_to(path).len();
        assert!((2..=6).contains(&requests), "{name}: {requests} requests");
    }
}

/// A server that answers `503` with `Retry-After: 600` each time: zoo does
/// not sleep past its patience (8 timeouts) waiting for it; it gives up at
/// once with the server's status (the old code slept a minute before each
/// of five retries).
#[test]
fn retry_after_past_the_patience_is_not_waited_for() {
    let server = TestServer::start();
    server.route(
        "/w/busy.pt",
        Response::status(503).header("Retry-After", "600"),
    );
    let mut sandbox = download_sandbox(&server, &[("busy", server.url("/w/busy.pt"))]);
    sandbox.env.push(("ZOO_HTTP_TIMEOUT".into(), "1".into()));
    let (succeeded, err) = download(&sandbox, "busy");
    assert!(!succeeded);
    assert!(err.contains("HTTP 503"), "{err}");
    assert_eq!(server.requests_to("/w/busy.pt").len(), 1, "{err}");
}
