//! The worker process: started in its own process group, spoken to through
//! framed pipes, every wait bounded, killed with its group when it hangs or
//! when it is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use zoo_process::{Tail, kill_group};

use crate::error::HostError;
use crate::frame::{Frame, read_frame, write_frame};

/// The worker script, compiled into zoo (never written to disk).
const WORKER: &str = include_str!("worker.py");

/// How many of the worker's last stderr lines an error shows.
const TAIL_LINES: usize = 20;

/// How long a worker told to stop (its input closed) may take to exit
/// before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// What the model host runs: a trusted source's `load_model`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSpec {
    /// The interpreter (`ZOO_PYTHON`).
    pub python: String,
    /// The source's `__init__.py`; the worker runs in its folder.
    pub init: PathBuf,
    /// The model's (versioned) name, `load_model`'s first argument.
    pub model_name: String,
    /// The model's path, `load_model`'s second argument.
    pub model_path: PathBuf,
    /// `load_model`'s keyword arguments (`-k KEY=VALUE`).
    pub kwargs: Map<String, Value>,
    /// The longest wait for `load_model` (`ZOO_HOOK_TIMEOUT`).
    pub load_timeout: Duration,
    /// The longest wait for each batch, setup and teardown
    /// (`ZOO_HOOK_TIMEOUT`).
    pub batch_timeout: Duration,
    /// This host's share of the CPU threads when several hosts run side by
    /// side (`--workers N`: the native backend's threads / N, at least 1):
    /// the host starts with `OMP_NUM_THREADS`, `MKL_NUM_THREADS` and
    /// `OPENBLAS_NUM_THREADS` set to it, and a model on the CPU gets
    /// `torch.set_num_threads` of it. `None`: the interpreter's defaults.
    pub threads: Option<usize>,
    /// The GPU this host may see (`CUDA_VISIBLE_DEVICES`), one per host
    /// when several run on a machine with several GPUs; `None`: unchanged.
    pub gpu: Option<String>,
}

/// The worker's input: still being written the load request by its own
/// thread, or free for requests.
enum Input {
    /// Boxed: it keeps [`crate::Loaded`]'s variants of similar sizes.
    Loading(Box<std::thread::JoinHandle<ChildStdin>>),
    Ready(ChildStdin),
}

/// A running worker.
pub(crate) struct Worker {
    child: Child,
    stdin: Option<Input>,
    frames: Receiver<std::io::Result<Option<Frame>>>,
    stderr: Tail,
    pub(crate) model: String,
    pub(crate) init: PathBuf,
    pub(crate) python: String,
    timeout: Duration,
    /// Set once the worker is gone: every later request fails with it.
    gone: Option<String>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("model", &self.model)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts the worker; it calls `load_model` at once.
    pub(crate) fn spawn(spec: &HostSpec) -> Result<Self, HostError> {
        let source_dir = spec.init.parent().unwrap_or(Path::new("."));
        let mut command = Command::new(&spec.python);
        command
            .arg("-c")
            .arg(WORKER)
            .arg(source_dir)
            .arg(&spec.model_path)
            .arg(std::process::id().to_string())
            .arg(spec.threads.map(|n| n.to_string()).unwrap_or_default())
            .current_dir(source_dir)
            .env("PYTHONUNBUFFERED", "1")
            // No `__pycache__` in the source's folder: its files are locked
            // and bundled as they came, and a cache Python wrote would read
            // as a changed source.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(threads) = spec.threads {
            let threads = threads.max(1).to_string();
            for name in ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"] {
                command.env(name, &threads);
            }
        }
        if let Some(gpu) = &spec.gpu {
            command.env("CUDA_VISIBLE_DEVICES", gpu);
        }
        // Its own process group, so a hang kills what it started too; no
        // `GITHUB_TOKEN`.
        zoo_process::isolate(&mut command);
        tracing::debug!(model = %spec.model_name, python = %spec.python, "starting the model host");
        let mut child = command
            .spawn()
            .map_err(|source| spawn_error(spec, source))?;
        // The model's name and `load_model`'s keyword arguments go as the
        // first frame, not on the command line: they can be any size (the
        // kernel refuses an argument over 128 KiB with `E2BIG`). A thread
        // writes it, so a worker that never reads cannot block zoo; the
        // wait for its answer is bounded as every other.
        let load = json!({"model_name": spec.model_name, "kwargs": spec.kwargs});
        let stdin = child.stdin.take().map(|mut stdin| {
            std::thread::spawn(move || {
                // A worker gone before reading shows in its answer.
                let _ = write_frame(&mut stdin, &load, &[]);
                stdin
            })
        });
        let stdout = child.stdout.take();
        let (sender, frames) = mpsc::sync_channel(1);
        if let Some(mut stdout) = stdout {
            std::thread::spawn(move || {
                loop {
                    let frame = read_frame(&mut stdout);
                    let done = !matches!(frame, Ok(Some(_)));
                    if sender.send(frame).is_err() || done {
                        break;
                    }
                }
            });
        }
        let model = spec.model_name.clone();
        // Read to its end in bounded lines, whatever the model writes.
        let stderr = Tail::spawn(child.stderr.take(), TAIL_LINES, move |line| {
            tracing::debug!(model = %model, "model host: {line}");
        });
        Ok(Self {
            child,
            stdin: stdin.map(|writer| Input::Loading(Box::new(writer))),
            frames,
            stderr,
            model: spec.model_name.clone(),
            init: spec.init.clone(),
            python: spec.python.clone(),
            timeout: spec.load_timeout,
            gone: None,
        })
    }

    /// Sets how long later answers may take.
    pub(crate) fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends a request and waits for its answer.
    pub(crate) fn request(
        &mut self,
        header: &Value,
        payload: &[&[u8]],
        stage: &str,
    ) -> Result<Frame, HostError> {
        self.send(header, payload)?;
        self.answer(stage)
    }

    /// Sends a request; its answer comes, in order, from [`Worker::answer`].
    pub(crate) fn send(&mut self, header: &Value, payload: &[&[u8]]) -> Result<(), HostError> {
        if let Some(reason) = &self.gone {
            return Err(HostError::Died {
                model: self.model.clone(),
                status: reason.clone(),
                stderr: String::new(),
            });
        }
        // The load request was written before the worker answered it.
        if let Some(Input::Loading(_)) = &self.stdin
            && let Some(Input::Loading(writer)) = self.stdin.take()
        {
            self.stdin = writer.join().ok().map(Input::Ready);
        }
        let written = match self.stdin.as_mut() {
            Some(Input::Ready(stdin)) => write_frame(stdin, header, payload),
            _ => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        if let Err(source) = written {
            // A worker that died shows as a broken pipe: say it died.
            return Err(match self.exited(Duration::from_secs(1)) {
                Some(died) => died,
                None => HostError::Pipe {
                    model: self.model.clone(),
                    source,
                },
            });
        }
        Ok(())
    }

    /// Waits for the next frame, at most the timeout.
    pub(crate) fn answer(&mut self, stage: &str) -> Result<Frame, HostError> {
        // Any limit past a century is no limit (and cannot overflow `Instant`).
        let limit = self.timeout.min(Duration::from_secs(100 * 365 * 24 * 3600));
        match self.frames.recv_timeout(limit) {
            Ok(Ok(Some(frame))) => Ok(frame),
            Ok(Ok(None)) | Err(RecvTimeoutError::Disconnected) => {
                let exited = self.exited(EXIT_GRACE);
                Err(exited.unwrap_or_else(|| self.died("it closed its output")))
            }
            Ok(Err(err)) => {
                self.kill();
                let message = format!("{err}");
                self.gone = Some(message.clone());
                Err(HostError::Protocol {
                    model: self.model.clone(),
                    message,
                })
            }
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                self.gone = Some(format!("killed after {limit:?} ({stage})"));
                Err(HostError::Timeout {
                    model: self.model.clone(),
                    stage: stage.to_owned(),
                    limit,
                    stderr: self.stderr_tail(),
                })
            }
        }
    }

    /// The error of a worker that exited, once it has (within `grace`);
    /// `None` while it still runs.
    fn exited(&mut self, grace: Duration) -> Option<HostError> {
        let deadline = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    // Let the stderr reader catch the last lines.
                    std::thread::sleep(Duration::from_millis(50));
                    let status = status.to_string();
                    self.gone = Some(status.clone());
                    kill_group(&self.child);
                    return Some(HostError::Died {
                        model: self.model.clone(),
                        status,
                        stderr: self.stderr_tail(),
                    });
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => return None,
            }
        }
    }

    /// A worker that stopped talking but still runs: killed, and said so.
    fn died(&mut self, why: &str) -> HostError {
        self.kill();
        let status = format!("{why}; killed");
        self.gone = Some(status.clone());
        HostError::Died {
            model: self.model.clone(),
            status,
            stderr: self.stderr_tail(),
        }
    }

    /// The worker's last stderr lines, as `:\n<lines>`, or empty.
    pub(crate) fn stderr_tail(&self) -> String {
        let lines = self.stderr.text();
        if lines.is_empty() {
            String::new()
        } else {
            format!(":\n{lines}")
        }
    }

    /// Kills the worker and its process group, and reaps it.
    pub(crate) fn kill(&mut self) {
        self.stdin = None;
        zoo_process::kill(&mut self.child);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // End of input asks the worker to leave the model's context and
        // exit; one that does not, in time, is killed with its group.
        self.stdin = None;
        let deadline = Instant::now() + EXIT_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                kill_group(&self.child);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }
}

/// Why the interpreter did not start: missing or not executable is a
/// wrong `ZOO_PYTHON`; anything else (too little memory, too many
/// processes) is said as it is.
fn spawn_error(spec: &HostSpec, source: std::io::Error) -> HostError {
    use std::io::ErrorKind;
    match source.kind() {
        ErrorKind::NotFound | ErrorKind::PermissionDenied => HostError::NoPython {
            python: spec.python.clone(),
            model: spec.model_name.clone(),
            source,
        },
        _ => HostError::Spawn {
            python: spec.python.clone(),
            model: spec.model_name.clone(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawn_error_is_reported_as_what_it_is() {
        let spec = HostSpec {
            python: "/venv/bin/python".into(),
            init: "/source/__init__.py".into(),
            model_name: "acme/model".into(),
            model_path: "/source/model.pt".into(),
            kwargs: Map::new(),
            load_timeout: Duration::from_secs(1),
            batch_timeout: Duration::from_secs(1),
            threads: None,
            gpu: None,
        };
        let missing = spawn_error(&spec, std::io::ErrorKind::NotFound.into());
        assert!(
            missing.to_string().contains("set `ZOO_PYTHON`"),
            "{missing}"
        );
        // E2BIG, ENOMEM, EAGAIN: the interpreter is fine, say what failed.
        for errno in [7, 12, 11] {
            let error = spawn_error(&spec, std::io::Error::from_raw_os_error(errno));
            let message = error.to_string();
            assert!(!message.contains("ZOO_PYTHON"), "{message}");
            assert!(message.contains("`/venv/bin/python`"), "{message}");
            let cause = std::error::Error::source(&error).map(ToString::to_string);
            assert_eq!(
                cause,
                Some(std::io::Error::from_raw_os_error(errno).to_string())
            );
        }
    }
}
