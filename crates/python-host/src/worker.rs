//! The worker process: started in its own process group, spoken to through
//! framed pipes, every wait bounded, killed with its group when it hangs or
//! when it is dropped.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

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

/// A running worker.
pub(crate) struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    frames: Receiver<std::io::Result<Option<Frame>>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
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
            .arg(&spec.model_name)
            .arg(&spec.model_path)
            .arg(Value::Object(spec.kwargs.clone()).to_string())
            .arg(std::process::id().to_string())
            .arg(spec.threads.map(|n| n.to_string()).unwrap_or_default())
            .current_dir(source_dir)
            .env_remove("GITHUB_TOKEN")
            .env("PYTHONUNBUFFERED", "1")
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
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Its own process group, so a hang kills what it started too.
            command.process_group(0);
        }
        tracing::debug!(model = %spec.model_name, python = %spec.python, "starting the model host");
        let mut child = command.spawn().map_err(|source| HostError::NoPython {
            python: spec.python.clone(),
            model: spec.model_name.clone(),
            source,
        })?;
        let stdin = child.stdin.take();
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
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(pipe) = child.stderr.take() {
            let tail = Arc::clone(&stderr);
            let model = spec.model_name.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    tracing::debug!(model = %model, "model host: {line}");
                    if let Ok(mut tail) = tail.lock() {
                        if tail.len() == TAIL_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(line);
                    }
                }
            });
        }
        Ok(Self {
            child,
            stdin,
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
        let written = match self.stdin.as_mut() {
            Some(stdin) => write_frame(stdin, header, payload),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
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
        let lines: Vec<String> = self
            .stderr
            .lock()
            .map(|tail| tail.iter().cloned().collect())
            .unwrap_or_default();
        if lines.is_empty() {
            String::new()
        } else {
            format!(":\n{}", lines.join("\n"))
        }
    }

    /// Kills the worker and its process group, and reaps it.
    pub(crate) fn kill(&mut self) {
        self.stdin = None;
        kill_group(&self.child);
        // Already gone is fine.
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// Kills what is left of the worker's process group.
fn kill_group(child: &Child) {
    #[cfg(unix)]
    {
        let group = rustix::process::Pid::from_child(child);
        // No such group left is fine.
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    #[cfg(not(unix))]
    let _ = child;
}
