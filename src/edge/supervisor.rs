//! Runs workerd: one process per config generation, all of them listening on the one socket
//! the edge bound at start (passed as `--socket-fd http=FD`), so a reload never refuses a
//! connection: the kernel's accept queue belongs to the socket, not to a process.
//!
//! A reload starts the new generation beside the old one and waits for its `listen` event on
//! `--control-fd` (workerd sends it once every service is built and the socket is served).
//! Then the old one gets SIGTERM (SIGKILL after [`STOP_WAIT`]). If the new one exits first, or
//! is not ready within [`READY_TIMEOUT`], it is killed and the old one keeps serving; its
//! output is returned with the services it blamed (workerd prints `service NAME: …` for a
//! Worker that fails to load, e.g. a syntax error).
//!
//! workerd's stdout and stderr go to lumierd's log line by line (target `workerd`, see
//! [`super::logs`]); a line naming a served script (`service NAME: …`) carries that worker's
//! app, stage and name.
//!
//! Both the listening socket and each generation's control pipe are inherited by the child:
//! their close-on-exec flag is cleared. lumierd spawns no other processes, so nothing else
//! inherits them.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::config::{Origin, WorkerdConfig, SOCKET_NAME};
use super::EdgeError;

/// Longest wait for a new generation to report that it listens (it builds every Worker
/// first: a few hundred ms for a handful). Bounded well under the daemon's stop grace, as the
/// run loop waits for a reload before it handles a signal.
pub const READY_TIMEOUT: Duration = Duration::from_secs(8);
/// Longest wait for a generation to exit after SIGTERM before it is killed.
pub const STOP_WAIT: Duration = Duration::from_secs(2);
/// Most output lines of a failed start kept for the error.
const MAX_START_LINES: usize = 40;

/// Why a generation did not start.
#[derive(Debug)]
pub struct StartFailure {
    /// workerd's output until it exited (at most [`MAX_START_LINES`] lines).
    pub output: String,
    /// Script name → the lines workerd printed about it.
    pub services: BTreeMap<String, String>,
}

/// Owns the listening socket and the running workerd generation.
pub struct Supervisor {
    binary: PathBuf,
    listener: std::net::TcpListener,
    dir: tempfile::TempDir,
    generation: u64,
    running: Option<Child>,
    /// The running generation's config folder.
    running_dir: Option<PathBuf>,
}

impl Supervisor {
    /// Keeps `listener` (bound by the edge) for every generation; configs are written under a
    /// private temporary folder, removed when the supervisor is dropped.
    pub fn new(binary: PathBuf, listener: std::net::TcpListener) -> Result<Supervisor, EdgeError> {
        set_inheritable(listener.as_raw_fd())
            .map_err(|e| EdgeError::Io(format!("edge socket: {e}")))?;
        let dir = tempfile::Builder::new()
            .prefix("lumierd-edge-")
            .tempdir()
            .map_err(|e| EdgeError::Io(format!("edge config folder: {e}")))?;
        Ok(Supervisor {
            binary,
            listener,
            dir,
            generation: 0,
            running: None,
            running_dir: None,
        })
    }

    /// Starts `config` as a new generation and, once it listens, stops the previous one.
    /// `origins` names the served scripts' app/stage/name for the log.
    pub async fn start(
        &mut self,
        config: &WorkerdConfig,
        origins: Arc<BTreeMap<String, Origin>>,
    ) -> Result<(), StartFailure> {
        self.generation += 1;
        let dir = self.dir.path().join(format!("gen-{}", self.generation));
        if let Err(e) = write_config(&dir, config) {
            return Err(StartFailure {
                output: format!("writing the workerd config: {e}"),
                services: BTreeMap::new(),
            });
        }
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (child, control, readers) = match self.spawn(&dir, &origins, &lines) {
            Ok(spawned) => spawned,
            Err(e) => {
                return Err(StartFailure {
                    output: format!("starting {}: {e}", self.binary.display()),
                    services: BTreeMap::new(),
                })
            }
        };
        if wait_ready(control).await {
            if let Some(old) = self.running.replace(child) {
                stop_child(old).await;
            }
            // Only the running generation's folder is kept (it holds secret texts).
            if let Some(old_dir) = self.running_dir.replace(dir) {
                let _ = std::fs::remove_dir_all(old_dir);
            }
            return Ok(());
        }
        stop_child(child).await;
        let _ = std::fs::remove_dir_all(&dir);
        // The output readers see EOF once the process is gone; give them a moment to finish.
        let _ = tokio::time::timeout(Duration::from_millis(500), readers).await;
        let output: Vec<String> = lines.lock().map(|l| l.clone()).unwrap_or_default();
        Err(StartFailure {
            services: blame(&output, &origins),
            output: output.join("\n"),
        })
    }

    /// Spawns one generation; returns the child, the control pipe's read end, and a future
    /// that completes when both output readers are done.
    fn spawn(
        &self,
        dir: &Path,
        origins: &Arc<BTreeMap<String, Origin>>,
        lines: &Arc<Mutex<Vec<String>>>,
    ) -> std::io::Result<(
        Child,
        std::io::PipeReader,
        futures_util::future::BoxFuture<'static, ()>,
    )> {
        let (control_read, control_write) = std::io::pipe()?;
        set_inheritable(control_write.as_raw_fd())?;
        let mut command = Command::new(&self.binary);
        die_with_parent(&mut command);
        let mut child = command
            .arg("serve")
            .arg("config.capnp")
            .arg("--socket-fd")
            .arg(format!("{SOCKET_NAME}={}", self.listener.as_raw_fd()))
            .arg("--control-fd")
            .arg(control_write.as_raw_fd().to_string())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        drop(control_write);
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(forward(
                out,
                "stdout",
                Arc::clone(origins),
                Arc::clone(lines),
            )));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(forward(
                err,
                "stderr",
                Arc::clone(origins),
                Arc::clone(lines),
            )));
        }
        let done = Box::pin(async move {
            for r in readers {
                let _ = r.await;
            }
        });
        Ok((child, control_read, done))
    }

    /// Whether the current generation is still running (false before the first start and
    /// after workerd died on its own).
    pub fn is_running(&mut self) -> bool {
        self.running
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Completes when the running generation exits (never while none runs, nor after it was
    /// reaped here: then [`Supervisor::is_running`] is false until the next start).
    pub async fn exited(&mut self) {
        if !self.is_running() {
            return std::future::pending().await;
        }
        if let Some(child) = self.running.as_mut() {
            let _ = child.wait().await;
        }
    }

    /// Stops the running generation (SIGTERM, then SIGKILL after [`STOP_WAIT`]).
    pub async fn stop(&mut self) {
        if let Some(child) = self.running.take() {
            stop_child(child).await;
        }
    }
}

/// Writes `config.capnp` and the embedded files under `dir`.
fn write_config(dir: &Path, config: &WorkerdConfig) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.capnp"), &config.text)?;
    for (rel, content) in &config.files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, content)?;
    }
    Ok(())
}

/// True once the generation reports `{"event":"listen",…}` on the control pipe; false when
/// the pipe closes first (the process exited) or after [`READY_TIMEOUT`].
async fn wait_ready(mut control: std::io::PipeReader) -> bool {
    let read = tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match control.read(&mut byte) {
                Ok(0) | Err(_) => return false,
                Ok(_) if byte[0] == b'\n' => {
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    if line.contains("\"event\":\"listen\"") {
                        return true;
                    }
                    buf.clear();
                }
                Ok(_) => buf.push(byte[0]),
            }
        }
    });
    matches!(
        tokio::time::timeout(READY_TIMEOUT, read).await,
        Ok(Ok(true))
    )
}

/// SIGTERM, then SIGKILL after [`STOP_WAIT`]; reaps the process.
async fn stop_child(mut child: Child) {
    if let Some(pid) = child.id() {
        terminate(pid);
        if tokio::time::timeout(STOP_WAIT, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

/// Makes the child get SIGKILL when lumierd dies without stopping it (SIGKILL, a crash), so
/// no orphaned workerd keeps the port. Linux only (`PR_SET_PDEATHSIG`); the signal follows the
/// spawning thread, here a tokio runtime worker (the edge's task), which lives as long as the
/// runtime.
#[allow(unsafe_code)] // prctl(2) in pre_exec: see SAFETY below
fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
    // which is async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

#[allow(unsafe_code)] // kill(2): see SAFETY below
fn terminate(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers; `pid` is our own child, not yet reaped (we hold its
    // `Child`), so the id cannot have been reused.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

#[allow(unsafe_code)] // fcntl(2): see SAFETY below
fn set_inheritable(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl(2) on a descriptor we own (borrowed for the call); F_GETFD/F_SETFD only
    // read and write its flag word.
    let rc = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            flags
        } else {
            libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC)
        }
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Logs each output line ([`super::logs::log_output`]) and keeps the first
/// [`MAX_START_LINES`] message lines for a failed start.
async fn forward(
    stream: impl tokio::io::AsyncRead + Unpin,
    which: &'static str,
    origins: Arc<BTreeMap<String, Origin>>,
    keep: Arc<Mutex<Vec<String>>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let decoded = super::logs::parse_output(&line);
        if let Ok(mut kept) = keep.lock() {
            for l in decoded.text.lines() {
                if kept.len() < MAX_START_LINES {
                    kept.push(l.to_owned());
                }
            }
        }
        super::logs::log_output(&decoded, which, &origins);
    }
}

/// The service a workerd line is about: `service NAME: …`.
pub fn service_of(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("service ")?;
    let (name, _) = rest.split_once(": ")?;
    (!name.contains(' ')).then_some(name)
}

/// Groups the output lines by the served script they blame: a `service NAME:` line and the
/// indented lines after it (the stack).
pub fn blame(output: &[String], origins: &BTreeMap<String, Origin>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in output {
        if let Some(s) = service_of(line) {
            current = Some(s.to_owned()).filter(|s| origins.contains_key(s) || !s.contains(':'));
            if let Some(s) = &current {
                let text = out.entry(s.clone()).or_default();
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(line.trim());
            }
        } else if line.starts_with(' ') {
            if let Some(s) = &current {
                let text = out.entry(s.clone()).or_default();
                text.push('\n');
                text.push_str(line.trim());
            }
        } else {
            current = None;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blames_the_service_a_start_error_names() {
        let origins: BTreeMap<String, Origin> = [(
            "my-app-staging-api".to_owned(),
            Origin {
                app: "my-app".into(),
                stage: "staging".into(),
                name: "api".into(),
            },
        )]
        .into();
        let output: Vec<String> = [
            "service my-app-staging-api: Uncaught SyntaxError: missing ) after argument list",
            "  at index.js:1:56",
            "some other line",
            "service kv:abc: whatever",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let blamed = blame(&output, &origins);
        assert_eq!(
            blamed.get("my-app-staging-api").map(String::as_str),
            Some("service my-app-staging-api: Uncaught SyntaxError: missing ) after argument list\nat index.js:1:56")
        );
        assert_eq!(blamed.len(), 1, "{blamed:?}");
        assert_eq!(service_of("service a b: x"), None);
    }
}
