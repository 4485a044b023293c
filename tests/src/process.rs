//! Binaries under test run as child processes that cannot outlive the
//! test: [`ChildGuard`] kills its child when dropped, whether the test
//! passed or panicked.
//!
//! Readiness is observed, never slept for: either the port the program was
//! configured with starts accepting ([`ChildGuard::wait_for_port`]) or the
//! program prints the line that says it is ready
//! ([`ChildGuard::wait_for_line`]), and a program that exits first is
//! reported with its log.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::OnPath as _;
use crate::port::accepts;
use crate::wait::wait_blocking;
use crate::{HarnessError, Result};

/// A child process, killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

/// Which output stream of the child to read a readiness line from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

fn program_of(cmd: &Command) -> String {
    cmd.get_program().to_string_lossy().into_owned()
}

impl ChildGuard {
    /// Start `cmd` as given (its stdio settings are the caller's).
    ///
    /// # Errors
    /// [`HarnessError::Spawn`] if the program cannot be started.
    pub fn spawn(cmd: &mut Command) -> Result<Self> {
        cmd.spawn().map(Self).map_err(|source| HarnessError::Spawn {
            program: program_of(cmd),
            source,
        })
    }

    /// Start `cmd` with stdin closed and stdout and stderr appended to
    /// `log` (read back by [`read_log`] when it fails).
    ///
    /// # Errors
    /// [`HarnessError::Io`] if the log cannot be opened, else as
    /// [`ChildGuard::spawn`].
    pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .on("open the log", log)?;
        let err = file.try_clone().on("open the log", log)?;
        cmd.stdin(Stdio::null()).stdout(file).stderr(err);
        Self::spawn(cmd)
    }

    /// The child's process id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Block until the child accepts TCP on `127.0.0.1:port`, or fail if it
    /// exits first or `limit` passes; `log` supplies its output for the
    /// error.
    ///
    /// # Errors
    /// [`HarnessError::Exited`] or [`HarnessError::NotReady`].
    pub fn wait_for_port(
        &mut self,
        port: u16,
        limit: Duration,
        what: &str,
        log: impl Fn() -> String,
    ) -> Result<()> {
        let mut exited = None;
        let up = wait_blocking(limit, || {
            if accepts(port) {
                return true;
            }
            if let Ok(Some(status)) = self.0.try_wait() {
                exited = Some(status);
                return true;
            }
            false
        });
        match exited {
            Some(status) => Err(HarnessError::Exited {
                program: what.to_owned(),
                status,
                log: log(),
            }),
            None if up => Ok(()),
            None => Err(HarnessError::NotReady {
                what: format!("{what} on 127.0.0.1:{port}"),
                limit,
                log: log(),
            }),
        }
    }

    /// Read lines of the child's `stream` (which must be piped) until
    /// `ready` returns `Some`, and return that; the rest of the stream is
    /// drained in the background so the child never blocks on a full pipe.
    ///
    /// # Errors
    /// [`HarnessError::NotReady`] if no such line comes within `limit`
    /// (the lines seen are in the error), or the stream was not piped.
    pub fn wait_for_line<T: Send + 'static>(
        &mut self,
        stream: Stream,
        limit: Duration,
        mut ready: impl FnMut(&str) -> Option<T> + Send + 'static,
    ) -> Result<T> {
        let pipe: Option<Box<dyn Read + Send>> = match stream {
            Stream::Stdout => self.0.stdout.take().map(|s| Box::new(s) as _),
            Stream::Stderr => self.0.stderr.take().map(|s| Box::new(s) as _),
        };
        let what = format!("a ready line on the {stream:?} of process {}", self.id());
        let Some(pipe) = pipe else {
            return Err(HarnessError::NotReady {
                what,
                limit,
                log: "(that stream was not piped)".into(),
            });
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(pipe).lines().map_while(std::io::Result::ok) {
                let Some(sender) = tx.as_ref() else { continue };
                let found = ready(&line);
                let done = found.is_some();
                if sender.send((line, found)).is_err() || done {
                    tx = None;
                }
            }
        });
        let deadline = std::time::Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok((_, Some(value))) => return Ok(value),
                Ok((line, None)) => seen.push(line),
                Err(_) => {
                    return Err(HarnessError::NotReady {
                        what,
                        limit,
                        log: seen.join("\n"),
                    })
                }
            }
        }
    }

    /// `kill -9` and reap: no shutdown path of the child runs.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM (so the child can save its state), then SIGKILL if it has
    /// not exited within `limit`.
    ///
    /// # Errors
    /// [`HarnessError::Spawn`] if `kill` cannot be run; the child is then
    /// killed with SIGKILL, without a chance to save anything.
    pub fn terminate(&mut self, limit: Duration) -> Result<()> {
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return Ok(());
        }
        let pid = self.id().to_string();
        // std has no SIGTERM and the workspace forbids `unsafe`; kill(1)
        // is in every image the tests run on.
        if let Err(source) = Command::new("kill").args(["-TERM", &pid]).status() {
            self.kill9();
            return Err(HarnessError::Spawn {
                program: "kill".into(),
                source,
            });
        }
        let exited = wait_blocking(limit, || matches!(self.0.try_wait(), Ok(Some(_))));
        if !exited {
            self.kill9();
        }
        Ok(())
    }

    /// Whether the child has not exited yet.
    pub fn is_running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The text of a log file, or an empty string if it cannot be read (for
/// error messages only).
#[must_use]
pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Run `cmd` to completion; its stdout, or [`HarnessError::Failed`].
///
/// # Errors
/// [`HarnessError::Spawn`] when it cannot start, [`HarnessError::Failed`]
/// when it exits unsuccessfully.
pub fn run_ok(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|source| HarnessError::Spawn {
        program: format!("{cmd:?}"),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(HarnessError::Failed {
            command: format!("{cmd:?}"),
            status: out.status,
            output: format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(stdout)
}

/// Runs `cmd` to completion and asserts that it exited successfully: the
/// check of a test whose verdict is the tool's own (a linter, `nft -f`, a
/// CLI step). The panic names `what` and shows the command's stdout and
/// stderr; the output is returned for further checks.
///
/// # Panics
/// When the command cannot be started or exits unsuccessfully.
#[track_caller]
pub fn assert_success(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({cmd:?}): {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_line_is_found_and_the_child_is_killed_on_drop() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo starting; echo 'listening on 127.0.0.1:4242'; sleep 30",
        ])
        .stdout(Stdio::piped());
        let mut child = ChildGuard::spawn(&mut cmd).unwrap();
        let port: u16 = child
            .wait_for_line(Stream::Stdout, Duration::from_secs(10), |l| {
                l.strip_prefix("listening on 127.0.0.1:")?.parse().ok()
            })
            .unwrap();
        assert_eq!(port, 4242);
        assert!(child.is_running());
        child.kill9();
        assert!(!child.is_running());
    }

    #[test]
    fn a_child_that_exits_before_listening_is_reported() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]);
        let mut child = ChildGuard::spawn(&mut cmd).unwrap();
        let port = crate::port::free_port().unwrap();
        let err = child
            .wait_for_port(port, Duration::from_secs(10), "sh", || "no log".into())
            .unwrap_err();
        assert!(matches!(err, HarnessError::Exited { .. }), "{err}");
    }
}
