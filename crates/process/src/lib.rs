//! Child processes that run code zoo did not write (a source's hooks, the
//! model host, pip): started in their own process group and without zoo's
//! secrets, waited for with a bound, read with bounded memory, and killed
//! with everything they started.
//!
//! What it does not do: decide what may run (the caller checks trust), read
//! environment variables, or speak any protocol with the child.
//!
//! ```no_run
//! use std::process::{Command, Stdio};
//! use std::time::{Duration, Instant};
//!
//! let mut command = Command::new("python3");
//! command.arg("-c").arg("print('hi')").stderr(Stdio::piped());
//! zoo_process::isolate(&mut command);
//! let mut child = command.spawn()?;
//! let stderr = zoo_process::Tail::spawn(child.stderr.take(), 20, |_| {});
//! match zoo_process::wait_until(&mut child, Instant::now() + Duration::from_secs(5))? {
//!     Some(status) => println!("{status}: {}", stderr.text()),
//!     None => zoo_process::kill(&mut child),
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
#![warn(missing_docs)]

mod shell;

pub use shell::{shell_quote, shell_words};

use std::collections::VecDeque;
use std::io::Read;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Environment variables that hold zoo's own secrets: no child sees them.
pub const SECRETS: &[&str] = &["GITHUB_TOKEN"];

/// The most bytes of one line [`read_lines`] keeps; the rest of the line
/// is dropped (a progress bar redrawn with `\r` is one endless line).
pub const MAX_LINE_BYTES: usize = 4096;

/// Removes zoo's [`SECRETS`] from `command`'s environment.
pub fn scrub_secrets(command: &mut Command) -> &mut Command {
    for name in SECRETS {
        command.env_remove(name);
    }
    command
}

/// Prepares `command` to run a stranger's code: without zoo's
/// [`SECRETS`], and (on Unix) in a process group of its own, so that
/// [`kill`] reaches every process it starts.
pub fn isolate(command: &mut Command) -> &mut Command {
    scrub_secrets(command);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    command
}

/// Kills what is left of `child`'s process group (the processes it
/// started), when it was [`isolate`]d; no group left is fine.
pub fn kill_group(child: &Child) {
    #[cfg(unix)]
    {
        let group = rustix::process::Pid::from_child(child);
        // No such group left is fine.
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    #[cfg(not(unix))]
    let _ = child;
}

/// Kills `child` and its process group, and reaps it.
pub fn kill(child: &mut Child) {
    kill_group(child);
    // Already gone is fine.
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for `child` to exit until `deadline`: its status, or `None` when
/// it still runs then (the caller decides whether to [`kill`] it).
pub fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Reads `pipe` to its end as lines, whatever its bytes: `\n` and `\r`
/// both end a line, empty lines are skipped, a line longer than
/// [`MAX_LINE_BYTES`] is cut there (marked with `…`), and bytes that are not
/// UTF-8 become `U+FFFD`. The pipe is read until the child closes it, so a
/// child that writes much never blocks on it, and memory stays bounded.
pub fn read_lines(mut pipe: impl Read, mut line_done: impl FnMut(String)) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut line = Vec::with_capacity(256);
    let mut cut = false;
    let mut finish = |line: &mut Vec<u8>, cut: &mut bool| {
        if !line.is_empty() {
            let mut text = String::from_utf8_lossy(line).into_owned();
            if *cut {
                text.push('…');
            }
            line_done(text);
        }
        line.clear();
        *cut = false;
    };
    loop {
        let read = match pipe.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &byte in &buffer[..read] {
            if matches!(byte, b'\n' | b'\r') {
                finish(&mut line, &mut cut);
            } else if line.len() < MAX_LINE_BYTES {
                line.push(byte);
            } else {
                cut = true;
            }
        }
    }
    finish(&mut line, &mut cut);
}

/// The last lines of a pipe (a child's stderr), read to its end on a
/// thread with [`read_lines`]: at most `keep` lines of at most
/// [`MAX_LINE_BYTES`] are held.
#[derive(Debug, Clone)]
pub struct Tail {
    lines: Arc<Mutex<VecDeque<String>>>,
    done: Arc<Mutex<Receiver<()>>>,
}

impl Tail {
    /// Starts reading `pipe` (nothing when `None`); `on_line` sees every
    /// line as it comes (to log it).
    pub fn spawn(
        pipe: Option<impl Read + Send + 'static>,
        keep: usize,
        mut on_line: impl FnMut(&str) + Send + 'static,
    ) -> Self {
        let lines = Arc::new(Mutex::new(VecDeque::new()));
        let (sender, done) = mpsc::channel();
        match pipe {
            Some(pipe) => {
                let tail = Arc::clone(&lines);
                std::thread::spawn(move || {
                    read_lines(pipe, |line| {
                        on_line(&line);
                        if let Ok(mut tail) = tail.lock() {
                            if tail.len() >= keep {
                                tail.pop_front();
                            }
                            if keep > 0 {
                                tail.push_back(line);
                            }
                        }
                    });
                    let _ = sender.send(());
                });
            }
            None => {
                let _ = sender.send(());
            }
        }
        Self {
            lines,
            done: Arc::new(Mutex::new(done)),
        }
    }

    /// Waits at most `limit` for the pipe's end (the child and whatever it
    /// started closed it); whether it came.
    pub fn wait(&self, limit: Duration) -> bool {
        self.done
            .lock()
            .map(|done| done.recv_timeout(limit).is_ok())
            .unwrap_or(false)
    }

    /// The lines held, joined with newlines.
    pub fn text(&self) -> String {
        self.lines
            .lock()
            .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

/// The first `limit` bytes of a pipe (a child's stdout), read to its end
/// on a thread: what comes after is read and dropped, so the child never
/// blocks, and `truncated` says so. `None` when the pipe did not end.
pub fn read_bounded(
    pipe: Option<impl Read + Send + 'static>,
    limit: usize,
) -> Receiver<(Vec<u8>, bool)> {
    let (sender, receiver) = mpsc::channel();
    match pipe {
        Some(mut pipe) => {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let mut buffer = vec![0u8; 64 * 1024];
                let mut truncated = false;
                loop {
                    match pipe.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(read) => {
                            let room = limit.saturating_sub(bytes.len());
                            bytes.extend_from_slice(&buffer[..read.min(room)]);
                            truncated |= read > room;
                        }
                        Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                        // A read error keeps what was read so far.
                        Err(_) => break,
                    }
                }
                let _ = sender.send((bytes, truncated));
            });
        }
        None => {
            let _ = sender.send((Vec::new(), false));
        }
    }
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        read_lines(bytes, |line| lines.push(line));
        lines
    }

    #[test]
    fn lines_are_bounded_whatever_the_bytes() {
        let long = vec![b'x'; MAX_LINE_BYTES * 3];
        let mut cut = "x".repeat(MAX_LINE_BYTES);
        cut.push('…');
        let mut progress = Vec::new();
        for percent in 0..3 {
            progress.extend_from_slice(format!("\r{percent}%").as_bytes());
        }
        let cases: Vec<(Vec<u8>, Vec<String>)> = vec![
            (b"one\ntwo\n".to_vec(), vec!["one".into(), "two".into()]),
            (b"no newline".to_vec(), vec!["no newline".into()]),
            (b"\r\n\n\r".to_vec(), vec![]),
            (b"crlf\r\nnext".to_vec(), vec!["crlf".into(), "next".into()]),
            (progress, vec!["0%".into(), "1%".into(), "2%".into()]),
            (
                [long.as_slice(), b"\nafter"].concat(),
                vec![cut, "after".into()],
            ),
            (
                b"bad \xff\xfe bytes\nstill read\n".to_vec(),
                vec!["bad \u{fffd}\u{fffd} bytes".into(), "still read".into()],
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                lines(&bytes),
                expected,
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    /// Bytes without end: 64 MiB without a line end give one line of
    /// [`MAX_LINE_BYTES`].
    struct Endless(usize);

    impl Read for Endless {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            let count = buffer.len().min(self.0);
            buffer[..count].fill(b'#');
            self.0 -= count;
            Ok(count)
        }
    }

    #[test]
    fn a_huge_line_is_cut() {
        let mut seen = Vec::new();
        read_lines(Endless(64 << 20), |line| seen.push(line.len()));
        assert_eq!(seen, vec![MAX_LINE_BYTES + '…'.len_utf8()]);
    }

    #[test]
    fn a_tail_keeps_the_last_lines_and_bounded_output_says_it_was_cut() {
        let tail = Tail::spawn(Some(&b"a\nb\nc\nd\n"[..]), 2, |_| {});
        assert!(tail.wait(Duration::from_secs(10)));
        assert_eq!(tail.text(), "c\nd");
        let (bytes, truncated) = read_bounded(Some(Endless(1 << 20)), 10)
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_default();
        assert_eq!((bytes.len(), truncated), (10, true));
        let (bytes, truncated) = read_bounded(Some(&b"short"[..]), 10)
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_default();
        assert_eq!((bytes, truncated), (b"short".to_vec(), false));
    }

    #[cfg(unix)]
    #[test]
    fn an_isolated_child_has_no_secrets_and_its_group_is_killed() {
        let mut command = Command::new("sh");
        command
            .args(["-c", "echo ${GITHUB_TOKEN:-none}; sleep 30 & wait"])
            .env("GITHUB_TOKEN", "secret")
            .stdout(std::process::Stdio::piped());
        isolate(&mut command);
        let mut child = command.spawn().unwrap_or_else(|err| panic!("sh: {err}"));
        let output = read_bounded(child.stdout.take(), 100);
        let deadline = Instant::now() + Duration::from_millis(200);
        assert_eq!(wait_until(&mut child, deadline).ok(), Some(None));
        kill(&mut child);
        // The `sleep` held stdout open; killed with the group, it ends.
        let (bytes, _) = output
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("the group's `sleep` outlived the kill"));
        assert_eq!(bytes, b"none\n");
    }
}
