//! Scale-out (issue 16): shards run as separate `zoo`
//! processes with the command lines of the recipes in `deploy/` (read from
//! the files, never copied), one is killed and run again, the part files are
//! merged, and the result equals an unsharded run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use zoo_test_support::TestServer;

use crate::apply::classifier_source;
use crate::util::Sandbox;

const MODEL: &str = "acme/tiny-classifier";

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

/// `count` generated pictures in two folders, plus one corrupt file (a
/// per-sample failure that must merge like any result).
fn pictures(dir: &Path, count: usize) {
    fs_err::create_dir_all(dir.join("b")).unwrap();
    for index in 0..count {
        let (w, h) = if index % 3 == 0 { (96, 80) } else { (64, 90) };
        let image = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 5 + index as u32) as u8, (y * 11) as u8, (x ^ y) as u8])
        });
        let path = if index % 2 == 0 {
            dir.join(format!("a{index:04}.png"))
        } else {
            dir.join(format!("b/p{index:04}.jpg"))
        };
        image.save(&path).unwrap();
    }
    fs_err::write(dir.join("corrupt.jpg"), b"\xff\xd8\xff garbage").unwrap();
}

/// A Kubernetes container as a recipe declares it: command and env.
struct Container {
    command: Vec<String>,
    env: Vec<(String, String)>,
}

/// The first container of a Job manifest, and the Job's `spec`.
fn job(path: &str) -> (Container, Value) {
    let text = fs_err::read_to_string(deploy(path)).unwrap();
    let job: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(job["kind"], "Job", "{path}");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let command = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap().to_owned())
        .collect();
    let env = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|var| {
            (
                var["name"].as_str().unwrap().to_owned(),
                var["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (Container { command, env }, job["spec"].clone())
}

/// Kubernetes' expansion of `$(NAME)` in a command (`$$` is a literal `$`;
/// an unknown name stays as written).
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
            && let Some(value) = env.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The process a pod of `container` would run: its env with `overrides`
/// (values a cluster would set otherwise), the command expanded from it.
fn pod(sandbox: &Sandbox, container: &Container, overrides: &[(&str, String)]) -> Command {
    let mut env: BTreeMap<String, String> = container.env.iter().cloned().collect();
    for (name, value) in overrides {
        env.insert((*name).to_owned(), value.clone());
    }
    let args: Vec<String> = container
        .command
        .iter()
        .map(|arg| expand(arg, &env))
        .collect();
    assert_eq!(args[0], "zoo", "the recipe runs `zoo`");
    let rest: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    let mut command = sandbox.command(&rest);
    command.envs(&env);
    command
}

fn wait(child: Child, what: &str) -> std::process::Output {
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Where a test's shards write their results: a folder (given to zoo as a
/// `file://` URL) or a bucket in the test's S3 server, read back here with
/// `zoo_storage`, as an operator's tools would.
enum ResultsAt {
    Folder(PathBuf),
    Bucket {
        storage: Box<zoo_storage::Storage>,
        url: String,
    },
}

impl ResultsAt {
    /// `--results`' value.
    fn location(&self) -> String {
        match self {
            Self::Folder(dir) => format!("file://{}", dir.display()),
            Self::Bucket { url, .. } => url.clone(),
        }
    }

    /// The part files in `shard` (`field/shard-K-of-N`), sorted.
    fn parts(&self, shard: &str) -> Vec<String> {
        match self {
            Self::Folder(dir) => parts(&dir.join(shard)),
            Self::Bucket { storage, url } => storage
                .children(&format!("{url}/{shard}"))
                .unwrap()
                .into_iter()
                .filter(|name| name.starts_with("part-"))
                .collect(),
        }
    }

    /// The bytes of `key` below the location, `None` when absent.
    fn read(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            Self::Folder(dir) => fs_err::read(dir.join(key)).ok(),
            Self::Bucket { storage, url } => {
                match storage.fetch(&format!("{url}/{key}"), 1 << 30) {
                    Ok(bytes) => Some(bytes),
                    Err(error) if error.is_not_found() => None,
                    Err(error) => panic!("{error}"),
                }
            }
        }
    }
}

fn parts(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("part-"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `value` without its `_id`s: every run gives its labels fresh ObjectIds,
/// as FiftyOne does, so two runs agree on everything else.
fn without_ids(value: Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .into_iter()
                .filter(|(key, _)| key != "_id")
                .map(|(key, value)| (key, without_ids(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_ids).collect()),
        other => other,
    }
}

/// Every sample's value of `field` in the exported dataset, by file path,
/// label ids left out.
fn field_values(sandbox: &Sandbox, dataset: &str, field: &str) -> BTreeMap<String, Value> {
    let out = sandbox.dir.path().join("export.jsonl");
    sandbox.ok(&["datasets", "export", dataset, out.to_str().unwrap()]);
    fs_err::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|line| {
            let sample: Value = serde_json::from_str(line).unwrap();
            (
                sample["filepath"].as_str().unwrap().to_owned(),
                without_ids(sample.get(field).cloned().unwrap_or(Value::Null)),
            )
        })
        .collect()
}

/// The shard count a Job declares, checked against its command line.
fn job_shards(spec: &Value, container: &Container) -> u64 {
    assert_eq!(spec["completionMode"], "Indexed");
    let count = spec["completions"].as_u64().unwrap();
    assert_eq!(spec["parallelism"].as_u64(), Some(count));
    let shard = container
        .command
        .windows(2)
        .find(|pair| pair[0] == "--shard")
        .map(|pair| pair[1].clone())
        .unwrap();
    assert_eq!(shard, format!("$(JOB_COMPLETION_INDEX)/{count}"));
    count
}

#[test]
fn kubernetes_recipe_shards_killed_rerun_merged_equal_unsharded_run() {
    let server = TestServer::start();
    let sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &classifier_source(&server)]);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 300);
    let dataset = fs_err::canonicalize(&pics).unwrap().display().to_string();
    let results = ResultsAt::Folder(sandbox.dir.path().join("results"));
    kubernetes_recipe_run(&sandbox, &dataset, 301, &results);
}

/// The Kubernetes recipe end to end on `images` (a folder or an object-store
/// URL, also the merged dataset's name) holding `samples` samples, one of
/// them corrupt: shard 2 killed after its first chunk, merging refused,
/// all shards run side by side, merged, compared with an unsharded run,
/// merged again.
fn kubernetes_recipe_run(sandbox: &Sandbox, images: &str, samples: u64, at: &ResultsAt) {
    let results = at.location();
    let (apply, spec) = job("kubernetes/apply-job.yaml");
    let shards = job_shards(&spec, &apply);
    assert_eq!(shards, 4);
    let (merge, _) = job("kubernetes/merge-job.yaml");
    let field = "predictions";
    let shard_pod = |index: u64| {
        let mut command = pod(
            sandbox,
            &apply,
            &[
                ("JOB_COMPLETION_INDEX", index.to_string()),
                ("ZOO_MODEL", MODEL.to_owned()),
                ("ZOO_IMAGES", images.to_owned()),
                ("ZOO_FIELD", field.to_owned()),
                ("ZOO_RESULTS", results.clone()),
                ("ZOO_MODEL_ZOO_DIR", sandbox.zoo_dir().display().to_string()),
                // Each pod indexes the images in its own scratch space.
                (
                    "ZOO_DATASETS_DIR",
                    sandbox
                        .dir
                        .path()
                        .join(format!("pod-{index}"))
                        .display()
                        .to_string(),
                ),
                ("ZOO_RESULTS_CHUNK", "4".to_owned()),
            ],
        );
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    };
    let merge_pod = || {
        pod(
            sandbox,
            &merge,
            &[
                ("ZOO_IMAGES", images.to_owned()),
                ("ZOO_FIELD", field.to_owned()),
                ("ZOO_RESULTS", results.clone()),
                (
                    "ZOO_DATASETS_DIR",
                    sandbox.dir.path().join("datasets").display().to_string(),
                ),
            ],
        )
        .output()
        .unwrap()
    };
    // Shard 2 is killed once it has written its first chunk.
    let killed = format!("{field}/shard-00002-of-00004");
    let mut child = shard_pod(2).spawn().unwrap();
    let started = Instant::now();
    while at.parts(&killed).is_empty() && started.elapsed() < Duration::from_secs(120) {
        assert!(child.try_wait().unwrap().is_none(), "shard 2 ended early");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = at.parts(&killed);
    assert!(!kept.is_empty());
    assert!(
        at.read(&format!("{killed}/done.json")).is_none(),
        "shard 2 must be unfinished"
    );
    let kept_bytes: Vec<Vec<u8>> = kept
        .iter()
        .map(|name| at.read(&format!("{killed}/{name}")).unwrap())
        .collect();

    // Merging now fails, names the unfinished shards, and merges nothing.
    let early = merge_pod();
    assert!(!early.status.success());
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert!(stderr.contains("shard 2/4: incomplete"), "{stderr}");
    assert!(stderr.contains("shard 0/4: missing"), "{stderr}");
    assert!(stderr.contains("--allow-partial"), "{stderr}");

    // All four shards run side by side; shard 2 skips its finished chunks.
    let children: Vec<(u64, Child)> = (0..shards)
        .map(|index| (index, shard_pod(index).spawn().unwrap()))
        .collect();
    for (index, child) in children {
        let output = wait(child, &format!("shard {index}"));
        if index == 2 {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let skipped = format!("{} kept from an earlier attempt", kept.len());
            assert!(stderr.contains(&skipped), "{stderr}");
        }
    }
    // The chunks the killed attempt wrote were kept, byte for byte.
    for (name, bytes) in kept.iter().zip(&kept_bytes) {
        assert_eq!(
            &at.read(&format!("{killed}/{name}")).unwrap(),
            bytes,
            "{name}"
        );
    }

    let merged = merge_pod();
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let dataset = images;
    // The same model, unsharded, into another field of the same dataset.
    sandbox.ok(&["models", "apply", MODEL, dataset, "whole"]);
    let info = sandbox.ok(&["datasets", "info", dataset, "--json"]).json();
    assert_eq!(info["samples"], samples);
    assert_eq!(info["label_fields"][field], samples - 1, "{info}");
    assert_eq!(info["failures"][field], 1, "{info}");
    assert_eq!(info["failures"]["whole"], 1, "{info}");
    let sharded = field_values(sandbox, dataset, field);
    let whole = field_values(sandbox, dataset, "whole");
    assert_eq!(sharded.len() as u64, samples);
    assert_eq!(sharded, whole, "sharded and unsharded runs differ");
    assert!(sharded.values().filter(|label| label.is_null()).count() == 1);

    // Merging again changes nothing.
    let before = fs_err::read_to_string(sandbox.dir.path().join("export.jsonl")).unwrap();
    let again = merge_pod();
    assert!(again.status.success());
    field_values(sandbox, dataset, field);
    let after = fs_err::read_to_string(sandbox.dir.path().join("export.jsonl")).unwrap();
    assert_eq!(before, after);
    let info_after = sandbox.ok(&["datasets", "info", dataset, "--json"]).json();
    assert_eq!(info, info_after);
}

/// The `#SBATCH --array=A-B` range of a script: the shard count.
fn array_size(script: &str) -> (u64, u64) {
    let range = script
        .lines()
        .find_map(|line| line.strip_prefix("#SBATCH --array="))
        .unwrap();
    let (first, last) = range.split_once('-').unwrap();
    let first: u64 = first.parse().unwrap();
    (first, last.parse::<u64>().unwrap() - first + 1)
}

/// The sbatch scripts run under bash as Slurm would run the array's tasks
/// (the index and count from `SLURM_ARRAY_*`), then the merge script.
#[test]
fn slurm_recipe_array_tasks_and_merge_equal_unsharded_run() {
    let server = TestServer::start();
    let sandbox = Sandbox::new();
    sandbox.ok(&["models", "register-source", &classifier_source(&server)]);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 40);
    let results = format!("file://{}", sandbox.dir.path().join("results").display());
    let apply = deploy("slurm/apply.sbatch");
    let (first, count) = array_size(&fs_err::read_to_string(&apply).unwrap());
    assert_eq!(count, 4);
    let bin = Path::new(env!("CARGO_BIN_EXE_zoo")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The sandbox's environment (zoo dir, HOME, datasets dir), as a job's.
    let base: Vec<(std::ffi::OsString, std::ffi::OsString)> = sandbox
        .command(&[])
        .get_envs()
        .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned())))
        .collect();
    let script = |script: &Path, env: &[(&str, String)]| {
        let mut bash = Command::new("bash");
        bash.arg(script)
            .env_clear()
            .envs(base.iter().cloned())
            .env("PATH", &path)
            .env("ZOO_MODEL", MODEL)
            .env("ZOO_IMAGES", &pics)
            .env("ZOO_FIELD", "predictions")
            .env("ZOO_RESULTS", &results)
            .env("TMPDIR", sandbox.dir.path())
            .envs(env.iter().map(|(key, value)| (*key, value)));
        bash
    };
    let tasks: Vec<Child> = (first..first + count)
        .map(|task| {
            script(
                &apply,
                &[
                    ("SLURM_ARRAY_JOB_ID", "77".to_owned()),
                    ("SLURM_ARRAY_TASK_ID", task.to_string()),
                    ("SLURM_ARRAY_TASK_MIN", first.to_string()),
                    ("SLURM_ARRAY_TASK_COUNT", count.to_string()),
                ],
            )
            // Each task indexes the images in its own `$TMPDIR` folder.
            .env_remove("ZOO_DATASETS_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for (task, child) in tasks.into_iter().enumerate() {
        wait(child, &format!("array task {task}"));
    }
    let merged = script(&deploy("slurm/merge.sbatch"), &[]).output().unwrap();
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let dataset = fs_err::canonicalize(&pics).unwrap().display().to_string();
    sandbox.ok(&["models", "apply", MODEL, &dataset, "whole"]);
    let sharded = field_values(&sandbox, &dataset, "predictions");
    assert_eq!(sharded.len(), 41);
    assert_eq!(sharded, field_values(&sandbox, &dataset, "whole"));
}

/// An attack on the interface: a recipe whose `$(JOB_COMPLETION_INDEX)`
/// was not expanded (a typo in the env, single quotes in a shell wrapper)
/// must not run some other shard, or all of them.
#[test]
fn unexpanded_shard_variable_is_refused_before_any_work() {
    let sandbox = Sandbox::new();
    for shard in [
        "$(JOB_COMPLETION_INDEX)/4",
        "${SLURM_ARRAY_TASK_ID}/4",
        "4/4",
        "1/0",
    ] {
        let run = sandbox.fails(&["models", "apply", MODEL, "nowhere", "f", "--shard", shard]);
        assert!(run.stderr().contains("is not a shard"), "{}", run.stderr());
    }
}

/// Results that another shard split, or another dataset, produced are not
/// folded in silently.
#[test]
fn merge_refuses_mixed_shard_counts_and_foreign_keys() {
    let sandbox = Sandbox::new();
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 4);
    sandbox.ok(&["datasets", "create", "pics", pics.to_str().unwrap()]);
    let results = sandbox.dir.path().join("results");
    fs_err::create_dir_all(results.join("f/shard-00000-of-00002")).unwrap();
    fs_err::create_dir_all(results.join("f/shard-00000-of-00003")).unwrap();
    let run = sandbox.fails(&[
        "datasets",
        "merge-results",
        "pics",
        results.to_str().unwrap(),
        "f",
    ]);
    assert!(
        run.stderr().contains("several shard counts"),
        "{}",
        run.stderr()
    );

    // One shard of one: a complete result for a key the dataset lacks.
    fs_err::remove_dir_all(results.join("f")).unwrap();
    let shard = results.join("f/shard-00000-of-00001");
    fs_err::create_dir_all(&shard).unwrap();
    let header = serde_json::json!({"zoo_results": 1, "kind": "labels", "field": "f", "shard": 0, "shards": 1,
        "chunk": 0, "chunks": 1, "chunk_size": 1, "samples": 1, "keys_sha256": "x"});
    fs_err::write(
        shard.join("part-000000.jsonl"),
        format!("{header}\n{{\"key\":\"elsewhere.png\",\"labels\":{{\"f\":null}}}}\n"),
    )
    .unwrap();
    fs_err::write(
        shard.join("done.json"),
        r#"{"zoo_results":1,"kind":"labels","field":"f","shard":0,"shards":1,"chunks":1,"chunk_size":1,"samples":1}"#,
    )
    .unwrap();
    let run = sandbox.fails(&[
        "datasets",
        "merge-results",
        "pics",
        results.to_str().unwrap(),
        "f",
    ]);
    assert!(run.stderr().contains("elsewhere.png"), "{}", run.stderr());

    // A part that names a label field of another run is corrupt.
    fs_err::write(
        shard.join("part-000000.jsonl"),
        format!("{header}\n{{\"key\":\"a0000.png\",\"labels\":{{\"other\":null}}}}\n"),
    )
    .unwrap();
    let run = sandbox.fails(&[
        "datasets",
        "merge-results",
        "pics",
        results.to_str().unwrap(),
        "f",
    ]);
    assert!(run.stderr().contains("is not `f`"), "{}", run.stderr());
    let info = sandbox.ok(&["datasets", "info", "pics", "--json"]).json();
    assert!(info["label_fields"].get("other").is_none(), "{info}");
}

/// moto's S3-compatible server on 127.0.0.1, stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Starts moto from `ZOO_TEST_PYTHON` (the venv `cargo xtask ci` makes);
/// `None` when that variable is unset (a plain `cargo test`).
fn moto() -> Option<(Moto, String)> {
    let python = std::env::var("ZOO_TEST_PYTHON").ok()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&python)
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "moto did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some((moto, python))
}

/// The images of issue 16's test in a real S3-compatible server: a dataset
/// made from `s3://bucket/prefix` keeps the URLs, and the Kubernetes recipe
/// runs on it (credentials and endpoint from the standard `AWS_*`
/// variables) exactly as on a folder.
#[test]
fn s3_dataset_kubernetes_recipe_killed_rerun_merged_equal_unsharded_run() {
    let Some((moto, python)) = moto() else {
        return;
    };
    let server = TestServer::start();
    let mut sandbox = Sandbox::new();
    for (key, value) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT", moto.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ] {
        sandbox.env.push((key.to_owned(), value.to_owned()));
    }
    sandbox.ok(&["models", "register-source", &classifier_source(&server)]);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 200);
    let upload = format!(
        r#"
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url="{endpoint}", aws_access_key_id="testing",
                  aws_secret_access_key="testing", region_name="us-east-1")
s3.create_bucket(Bucket="zoo-pics")
s3.create_bucket(Bucket="zoo-results")
root = sys.argv[1]
for folder, _, files in os.walk(root):
    for name in files:
        path = os.path.join(folder, name)
        s3.upload_file(path, "zoo-pics", "set/" + os.path.relpath(path, root))
s3.put_object(Bucket="zoo-pics", Key="set/notes.txt", Body=b"not an image")
s3.put_object(Bucket="zoo-pics", Key="other/x.png", Body=b"outside the prefix")
"#,
        endpoint = moto.endpoint
    );
    let status = Command::new(&python)
        .args(["-c", &upload, pics.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "uploading to moto failed");

    let url = "s3://zoo-pics/set";
    let created = sandbox.ok(&["datasets", "create", "bucket", url]);
    assert!(
        created.stderr().contains("201 samples"),
        "{}",
        created.stderr()
    );
    let exported = field_values(&sandbox, "bucket", "none");
    assert!(
        exported
            .keys()
            .all(|path| path.starts_with("s3://zoo-pics/set/")),
        "{exported:?}"
    );
    // The shards' results go to the same S3 server, as the recipe says.
    let mut options = zoo_storage::StorageOptions::default();
    for (key, value) in &sandbox.env {
        if let Some(name) = key.strip_prefix("AWS_") {
            options
                .config
                .push((format!("aws_{}", name.to_ascii_lowercase()), value.clone()));
        }
    }
    let results = ResultsAt::Bucket {
        storage: Box::new(zoo_storage::Storage::new(options).unwrap()),
        url: "s3://zoo-results/runs/1".to_owned(),
    };
    kubernetes_recipe_run(&sandbox, url, 201, &results);
    // Every shard finished in the bucket, and nothing went to local disk.
    for index in 0..4 {
        let done = format!("predictions/shard-{index:05}-of-00004/done.json");
        assert!(results.read(&done).is_some(), "{done}");
    }
    assert!(!sandbox.dir.path().join("results").exists());
    drop(moto);
}

/// An S3 endpoint that does not answer fails the listing with a clear error naming
/// the URL, no panic.
#[test]
fn s3_dataset_with_wrong_endpoint_fails_clearly() {
    let mut sandbox = Sandbox::new();
    for (key, value) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        // Nothing listens on port 9 of the loopback interface.
        ("AWS_ENDPOINT", "http://127.0.0.1:9"),
        ("AWS_ALLOW_HTTP", "true"),
        ("ZOO_STORAGE_RETRIES", "0"),
    ] {
        sandbox.env.push((key.to_owned(), value.to_owned()));
    }
    let run = sandbox.fails(&["datasets", "create", "bucket", "s3://zoo-pics/set"]);
    assert!(
        run.stderr().contains("s3://zoo-pics/set"),
        "{}",
        run.stderr()
    );
}

/// `command` (a pod's `zoo` process) run in the container `image` instead:
/// its arguments and environment (the host's `PATH` and loader path aside),
/// the host's network (the test's servers are on 127.0.0.1) and `dir`
/// mounted at its own path, so every path in the pod's environment holds.
fn in_image(command: &Command, image: &str, dir: &Path) -> Command {
    let mut podman = Command::new("podman");
    podman.args(["run", "--rm", "--network", "host", "-v"]);
    podman.arg(format!("{0}:{0}", dir.display()));
    for (key, value) in command.get_envs() {
        let Some(value) = value else { continue };
        if key == "PATH" || key == "LD_LIBRARY_PATH" {
            continue;
        }
        let mut pair = key.to_os_string();
        pair.push("=");
        pair.push(value);
        podman.arg("-e").arg(pair);
    }
    podman.arg(image).arg("zoo").args(command.get_args());
    podman
}

/// The container image (`cargo xtask image --check` builds it and runs this
/// test with `ZOO_TEST_IMAGE`): the Kubernetes recipe's apply and merge
/// command lines, as written, each in the image, with the results in the
/// loopback S3 server; merged, they equal an unsharded run of the host's
/// `zoo`. Skipped without an image.
#[test]
#[allow(clippy::print_stderr)]
fn kubernetes_recipe_runs_in_the_image() {
    let Some(image) = std::env::var("ZOO_TEST_IMAGE")
        .ok()
        .filter(|image| !image.is_empty())
    else {
        eprintln!("SKIPPED: the container image test (`cargo xtask image --check` runs it)");
        return;
    };
    let (moto, python) = moto().expect("ZOO_TEST_PYTHON is needed for the S3 server");
    let server = TestServer::start();
    let mut sandbox = Sandbox::new();
    for (key, value) in [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT", moto.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ] {
        sandbox.env.push((key.to_owned(), value.to_owned()));
    }
    let bucket = format!(
        "import boto3\nboto3.client('s3', endpoint_url='{}', aws_access_key_id='testing', aws_secret_access_key='testing', region_name='us-east-1').create_bucket(Bucket='zoo-results')",
        moto.endpoint
    );
    assert!(
        Command::new(&python)
            .args(["-c", &bucket])
            .status()
            .unwrap()
            .success()
    );
    sandbox.ok(&["models", "register-source", &classifier_source(&server)]);
    let pics = sandbox.dir.path().join("pics");
    pictures(&pics, 40);
    let images = pics.to_str().unwrap();
    let results = "s3://zoo-results/image-run";
    let field = "predictions";
    let (apply, spec) = job("kubernetes/apply-job.yaml");
    let shards = job_shards(&spec, &apply);
    let (merge, _) = job("kubernetes/merge-job.yaml");
    let common = |extra: &[(&'static str, String)]| {
        let mut overrides = vec![
            ("ZOO_MODEL", MODEL.to_owned()),
            ("ZOO_IMAGES", images.to_owned()),
            ("ZOO_FIELD", field.to_owned()),
            ("ZOO_RESULTS", results.to_owned()),
            ("ZOO_MODEL_ZOO_DIR", sandbox.zoo_dir().display().to_string()),
        ];
        overrides.extend(extra.iter().cloned());
        overrides
    };
    for index in 0..shards {
        let pod_dir = sandbox.dir.path().join(format!("pod-{index}"));
        let overrides = common(&[
            ("JOB_COMPLETION_INDEX", index.to_string()),
            ("ZOO_DATASETS_DIR", pod_dir.display().to_string()),
            ("ZOO_RESULTS_CHUNK", "4".to_owned()),
        ]);
        let output = in_image(
            &pod(&sandbox, &apply, &overrides),
            &image,
            sandbox.dir.path(),
        )
        .output()
        .unwrap();
        assert!(
            output.status.success(),
            "shard {index} in the image failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let overrides = common(&[(
        "ZOO_DATASETS_DIR",
        sandbox.dir.path().join("datasets").display().to_string(),
    )]);
    let output = in_image(
        &pod(&sandbox, &merge, &overrides),
        &image,
        sandbox.dir.path(),
    )
    .output()
    .unwrap();
    assert!(
        output.status.success(),
        "the merge in the image failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    sandbox.ok(&["models", "apply", MODEL, images, "whole"]);
    let sharded = field_values(&sandbox, images, field);
    let whole = field_values(&sandbox, images, "whole");
    assert_eq!(sharded.len(), 41);
    assert_eq!(
        sharded, whole,
        "the image's sharded run and the host's differ"
    );
    assert_eq!(sharded.values().filter(|label| label.is_null()).count(), 1);
    drop(moto);
}
