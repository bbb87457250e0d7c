//! Running `zoo` in a sandbox.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The torch backend's test fixtures (oracles from `cargo xtask fixtures`
/// and friends, pictures).
pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../torch-backend/tests/fixtures")
}

/// A JSON array of numbers as `f64`s.
pub(crate) fn floats(value: &serde_json::Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// The largest absolute difference between two equally long lists.
pub(crate) fn max_difference(ours: &[f64], theirs: &[f64]) -> f64 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// One of [`fixtures`]' JSON files.
pub(crate) fn json_fixture(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fs_err::read(fixtures().join(name)).unwrap()).unwrap()
}

/// Every exported sample of `dataset`, by file name.
pub(crate) fn exported_samples(
    sandbox: &Sandbox,
    dataset: &str,
) -> Vec<(String, serde_json::Value)> {
    let export = sandbox.dir.path().join(format!("{dataset}.jsonl"));
    sandbox.ok(&["datasets", "export", dataset, export.to_str().unwrap()]);
    fs_err::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .map(|sample| {
            let file = Path::new(sample["filepath"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (file, sample)
        })
        .collect()
}

/// A throwaway home for one test: zoo dir, datasets dir, HOME.
pub(crate) struct Sandbox {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) github_api: Option<String>,
    pub(crate) env: Vec<(String, String)>,
    /// Run zoo in a network namespace of its own (no interface up, not
    /// even loopback): see [`network_namespaces_work`].
    pub(crate) no_network: bool,
}

/// Whether this machine lets a test start a process in a new network
/// namespace (`unshare --net`: root, or user namespaces allowed).
pub(crate) fn network_namespaces_work() -> bool {
    Command::new("unshare")
        .args(["--net", "--", "true"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            github_api: None,
            env: Vec::new(),
            no_network: false,
        }
    }

    pub(crate) fn with_github(api: &str) -> Self {
        let mut sandbox = Self::new();
        sandbox.github_api = Some(api.to_owned());
        sandbox
    }

    pub(crate) fn zoo_dir(&self) -> PathBuf {
        self.dir.path().join("zoo")
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = if self.no_network {
            let mut unshare = Command::new("unshare");
            unshare.args(["--net", "--", env!("CARGO_BIN_EXE_zoo")]);
            unshare
        } else {
            Command::new(env!("CARGO_BIN_EXE_zoo"))
        };
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env("ZOO_MODEL_ZOO_DIR", self.zoo_dir())
            .env("ZOO_DATASETS_DIR", self.dir.path().join("datasets"))
            // `zoo lock` never writes into the test's working directory.
            .env("ZOO_LOCKFILE", self.dir.path().join("zoo.lock"))
            // Anything that tries the real internet fails fast.
            .env(
                "ZOO_GITHUB_API_URL",
                self.github_api.as_deref().unwrap_or("http://127.0.0.1:9"),
            );
        if let Some(path) = std::env::var_os("LD_LIBRARY_PATH") {
            command.env("LD_LIBRARY_PATH", path);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// The names of the models `zoo models list` shows, built-in ones aside.
    pub(crate) fn models(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["models", "list", "--json"];
        args.extend_from_slice(extra);
        self.ok(&args)
            .json()
            .as_array()
            .unwrap()
            .iter()
            .filter(|model| model["source"] != "builtin")
            .map(|model| model["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Runs zoo and returns its output, whatever the exit code.
    pub(crate) fn run(&self, args: &[&str]) -> Run {
        Run(self.command(args).output().unwrap(), args.join(" "))
    }

    /// Runs zoo and asserts success.
    pub(crate) fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert!(
            run.0.status.success(),
            "`zoo {}` failed:\n{}",
            run.1,
            run.stderr()
        );
        run
    }

    /// Runs zoo and asserts failure with a one-paragraph error, no panic.
    pub(crate) fn fails(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert!(
            !run.0.status.success(),
            "`zoo {}` succeeded:\n{}",
            run.1,
            run.stdout()
        );
        let stderr = run.stderr();
        assert!(stderr.contains("error: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("RUST_BACKTRACE"), "{stderr}");
        run
    }
}

pub(crate) struct Run(pub(crate) Output, String);

impl Run {
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.stdout().lines().map(str::to_owned).collect()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0.stdout).unwrap_or_else(|err| {
            panic!(
                "`zoo {}` printed no JSON ({err}):\n{}",
                self.1,
                self.stdout()
            )
        })
    }
}

pub(crate) use zoo_test_support::dir_snapshot as snapshot;

/// The corpus of real manifests, committed under `tests/corpus`.
pub(crate) fn corpus() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus");
    let mut files: Vec<(String, String)> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            (stem, fs_err::read_to_string(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Serves `manifest` as the only file of an archive at `path` (tar.gz when
/// the path says so, else zip); returns its URL.
pub(crate) fn manifest_source(
    server: &zoo_test_support::TestServer,
    path: &str,
    manifest: &serde_json::Value,
) -> String {
    let archive = zoo_test_support::Archive::new().file("manifest.json", manifest.to_string());
    let body = if path.ends_with(".tar.gz") {
        archive.to_tar_gz()
    } else {
        archive.to_zip()
    };
    server.route(path, zoo_test_support::Response::ok(body));
    server.url(path)
}
