//! Shared test support: running the real `lumierd` binary with a deadline.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `lumierd` binary cargo built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lumierd"))
}

/// The repository root (where `examples/` lives).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a finished run printed, and how it ended.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `lumierd ARGS` in `cwd`, killing it after `deadline`.
pub fn run_in(cwd: &Path, args: &[&str], deadline: Duration) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lumierd");
    let code = wait_with_deadline(&mut child, deadline);
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout).expect("read stdout");
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr).expect("read stderr");
    }
    Output {
        code,
        stdout,
        stderr,
    }
}

/// Runs `lumierd ARGS` in the repository root with a 60 s deadline.
pub fn run(args: &[&str]) -> Output {
    run_in(&repo(), args, Duration::from_secs(60))
}

/// Waits for `child`, killing it (and failing the test) past `deadline`.
pub fn wait_with_deadline(child: &mut Child, deadline: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lumierd did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
