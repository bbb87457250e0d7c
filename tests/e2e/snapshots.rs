//! Snapshots of what every command prints, for people and for `--json`,
//! on fixed inputs: a registered source with a tiny TorchScript classifier,
//! a folder of generated pictures, a sharded run. What varies between runs
//! (the sandbox's path, the loopback port, timings, memory, ids, commit
//! hashes of the machine) is replaced by a `[NAME]` before comparing.
//! Review a change with `INSTA_UPDATE=always cargo xtask test -p zoo-cli
//! --test e2e -- snapshots` and `git diff`.

use std::path::Path;

use serde_json::Value;
use zoo_test_support::TestServer;

use crate::apply::classifier_source;
use crate::util::Sandbox;

/// Keys whose values differ from run to run (time, memory, machine).
const VOLATILE_KEYS: &[&str] = &[
    "seconds",
    "images_per_second",
    "model_seconds",
    "peak_rss_bytes",
    "threads",
    "mkl",
    "cuda",
    "cudnn",
    "devices",
    "device_count",
    "libtorch",
    "version",
    "registered_at",
    "created_at",
    "workers",
    "pipelined",
];

/// `text` with the sandbox's path and the server's address named.
fn placeholders(text: &str, sandbox: &Path, server: &str) -> String {
    text.replace(server, "[SERVER]")
        .replace(&sandbox.display().to_string(), "[SANDBOX]")
}

/// A JSON document with [`VOLATILE_KEYS`] replaced, pretty-printed.
fn stable_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if VOLATILE_KEYS.contains(&key.as_str()) {
                    *value = Value::String(format!("[{key}]"));
                } else {
                    stable_json(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(stable_json),
        _ => {}
    }
}

/// A line of human output with its numbers that measure time or speed
/// replaced (`12.3 img/s`, `0.4 s`).
fn stable_line(line: &str) -> String {
    let words: Vec<String> = line
        .split(' ')
        .enumerate()
        .map(|(index, word)| {
            let next = line.split(' ').nth(index + 1).unwrap_or("");
            let unit = matches!(
                next.trim_end_matches([',', ')', ';', ':']),
                "s" | "img/s" | "images/s" | "MB" | "MiB"
            );
            if unit && word.trim_start_matches('(').parse::<f64>().is_ok() {
                "[N]".to_owned()
            } else if is_utc_time(word.trim_end_matches([',', ')'])) {
                "[TIME]".to_owned()
            } else {
                word.to_owned()
            }
        })
        .collect();
    words.join(" ")
}

/// `2026-12-07T12:00:00Z`: a time zoo stamped.
fn is_utc_time(word: &str) -> bool {
    word.len() == 20
        && word.as_bytes()[10] == b'T'
        && word.ends_with('Z')
        && word
            .bytes()
            .all(|byte| byte.is_ascii_digit() || b"-:TZ".contains(&byte))
}

struct Scene {
    sandbox: Sandbox,
    server: String,
}

impl Scene {
    /// Runs `zoo args` (it must succeed) and returns what it printed, made
    /// stable: stdout for `--json`, else stdout and stderr (messages).
    fn out(&self, args: &[&str]) -> String {
        let run = self.sandbox.ok(args);
        let stable = |text: &str| placeholders(text, self.sandbox.dir.path(), &self.server);
        let text = stable(&run.stdout());
        if args.contains(&"--json") {
            let mut value: Value =
                serde_json::from_str(&text).unwrap_or_else(|err| panic!("{args:?}: {err}: {text}"));
            stable_json(&mut value);
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            let lines = |text: &str| text.lines().map(stable_line).collect::<Vec<_>>().join("\n");
            format!(
                "stdout:\n{}\nstderr:\n{}",
                lines(&text),
                lines(&stable(&run.stderr()))
            )
        }
    }
}

fn pictures(dir: &Path) {
    fs_err::create_dir_all(dir).unwrap();
    for (index, (width, height)) in [(40u32, 30u32), (30, 40), (32, 32)].into_iter().enumerate() {
        image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5 + index as u32 * 60) as u8, 200])
        })
        .save(dir.join(format!("pic{index}.png")))
        .unwrap();
    }
}

#[test]
fn every_command_prints_what_its_snapshot_holds() {
    let server = TestServer::start();
    let source = classifier_source(&server);
    let base = server.url("/");
    let scene = Scene {
        sandbox: Sandbox::new(),
        server: base.trim_end_matches('/').to_owned(),
    };
    let pics = scene.sandbox.dir.path().join("pics");
    pictures(&pics);
    let pics = pics.to_str().unwrap();
    let results = scene.sandbox.dir.path().join("results");
    let results = results.to_str().unwrap();
    let export = scene.sandbox.dir.path().join("export.jsonl");
    let export = export.to_str().unwrap();
    let folder = scene.sandbox.dir.path().join("fiftyone-export");
    let folder = folder.to_str().unwrap();

    let steps: Vec<(&str, Vec<&str>)> = vec![
        (
            "register_source",
            vec!["models", "register-source", &source],
        ),
        ("list_sources", vec!["models", "list-sources"]),
        (
            "list_sources_json",
            vec!["models", "list-sources", "--json"],
        ),
        ("trust_source", vec!["models", "trust-source", &source]),
        (
            "list_embeddings",
            vec!["models", "list", "-t", "embeddings", "-s", &source],
        ),
        ("list_json", vec!["models", "list", "-s", &source, "--json"]),
        ("list_names", vec!["models", "list", "-n", "-s", &source]),
        ("info", vec!["models", "info", "acme/tiny-classifier"]),
        (
            "info_json",
            vec!["models", "info", "acme/tiny-classifier", "--json"],
        ),
        (
            "download",
            vec!["models", "download", "acme/tiny-classifier"],
        ),
        ("find", vec!["models", "find", "acme/tiny-classifier"]),
        ("config", vec!["models", "config", "acme/tiny-classifier"]),
        (
            "requirements",
            vec!["models", "requirements", "acme/tiny-classifier"],
        ),
        (
            "requirements_json",
            vec!["models", "requirements", "acme/tiny-classifier", "--json"],
        ),
        ("datasets_create", vec!["datasets", "create", "pics", pics]),
        (
            "apply",
            vec![
                "models",
                "apply",
                "acme/tiny-classifier",
                "pics",
                "pred",
                "-q",
            ],
        ),
        (
            "apply_json",
            vec![
                "models",
                "apply",
                "acme/tiny-classifier",
                "pics",
                "pred2",
                "-q",
                "--json",
            ],
        ),
        (
            "embed_json",
            vec![
                "models",
                "embed",
                "acme/tiny-classifier",
                "pics",
                "vec",
                "-q",
                "--json",
            ],
        ),
        ("datasets_list", vec!["datasets", "list"]),
        ("datasets_list_json", vec!["datasets", "list", "--json"]),
        ("datasets_info", vec!["datasets", "info", "pics"]),
        (
            "datasets_info_json",
            vec!["datasets", "info", "pics", "--json"],
        ),
        (
            "datasets_export",
            vec!["datasets", "export", "pics", export, "--field", "pred"],
        ),
        (
            "datasets_export_fiftyone",
            vec!["datasets", "export", "pics", folder, "--format", "fiftyone"],
        ),
        (
            "datasets_import",
            vec!["datasets", "import", "copy", folder, "--format", "fiftyone"],
        ),
        (
            "shard_0",
            vec![
                "models",
                "apply",
                "acme/tiny-classifier",
                "pics",
                "sharded",
                "-q",
                "--shard",
                "0/2",
                "--results",
                results,
            ],
        ),
        (
            "shard_1_json",
            vec![
                "models",
                "apply",
                "acme/tiny-classifier",
                "pics",
                "sharded",
                "-q",
                "--shard",
                "1/2",
                "--results",
                results,
                "--json",
            ],
        ),
        (
            "merge_results_json",
            vec![
                "datasets",
                "merge-results",
                "pics",
                results,
                "sharded",
                "--json",
            ],
        ),
        (
            "merge_results",
            vec!["datasets", "merge-results", "pics", results, "sharded"],
        ),
        ("system_json", vec!["system", "--json"]),
        (
            "delete_model",
            vec!["models", "delete", "acme/tiny-classifier"],
        ),
        (
            "revoke_trust",
            vec!["models", "trust-source", &source, "--revoke"],
        ),
        ("delete_source", vec!["models", "delete-source", &source]),
        ("datasets_delete", vec!["datasets", "delete", "pics"]),
    ];
    for (name, args) in steps {
        let text = scene.out(&args);
        let command = placeholders(&args.join(" "), scene.sandbox.dir.path(), &scene.server);
        insta::assert_snapshot!(name, text, &command);
    }
}
