//! Every evaluation runs in a child process, so a config that crashes the engine cannot take
//! lumierd down. QuickJS has defects on its out-of-memory paths (a runaway allocation in a
//! two-stage config ended in a SIGSEGV inside it, depending on the heap's layout); in-process
//! that signal killed the daemon. In a child it is one config's load error: the last good
//! snapshot stays and nothing is deleted.
//!
//! The child is lumierd itself (`/proc/self/exe`, so an upgrade of the binary on disk changes
//! nothing) run as `lumierd __eval-lumier`: one [`Request`] as JSON on stdin, one answer
//! (`Result<Evaluation, Failure>`) as JSON on stdout. It starts with an empty environment
//! (no token or secret reaches it), closes every inherited descriptor but stdio, and limits
//! itself before reading the request ([`super::confine`]): its address space to what it had at
//! start plus 384 MiB, its CPU time to [`CPU_LIMIT`] + 3 s, no core file, and SIGKILL when
//! lumierd dies. Inside, the engine keeps its own bounds ([`CPU_LIMIT`],
//! [`MEMORY_LIMIT`](super::MEMORY_LIMIT)).
//!
//! | how the child ends | result |
//! | --- | --- |
//! | exits 0 with an answer | the answer (the stage's evaluation, or its failure at a place in the user's files) |
//! | still running after [`WALL_LIMIT`] (lumierd kills it; e.g. a regular expression that backtracks for ever, which the engine's interrupt does not reach) | [`FailureKind::Cpu`] at the config |
//! | killed by SIGXCPU (its CPU limit) | [`FailureKind::Cpu`] at the config |
//! | killed by any other signal (SIGSEGV, SIGABRT, SIGBUS, the kernel's OOM SIGKILL, ...) | [`FailureKind::Crash`]: "ran out of memory or crashed", at the config |
//! | cannot be started, exits non-zero or with an answer that does not parse | [`FailureKind::Io`] at the config |
//!
//! Cost: one child per stage evaluated, about 5 ms each. Measured on a shared 2-core machine
//! (load ≈ 11), `validate` of a 50-stage config, medians of 10 runs: release build 116 ms in
//! process → 347 ms in children (2.3 → 6.9 ms per stage; the binary starts in 1.6 ms, the
//! rest is the engine's and the TypeScript step's code paged in afresh in every child);
//! debug build 0.42 s → 1.75 s (8 → 35 ms per stage).

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::confine::confine;
use super::engine::{self, Evaluation, Failure, FailureKind, Input, CPU_LIMIT};
use super::hooks::display;
use crate::yaml::Pos;

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "__eval-lumier";
/// Longest a child may live (wall clock) before lumierd kills it: the engine's own limit plus
/// room for starting a process on a loaded machine.
pub const WALL_LIMIT: Duration = Duration::from_secs(CPU_LIMIT.as_secs() + 8);
/// Largest request the child reads, in bytes (four paths and a stage name).
const MAX_REQUEST: u64 = 64 * 1024;
/// Largest answer lumierd reads, in bytes.
const MAX_ANSWER: u64 = 64 * 1024 * 1024;
/// How much of the child's stderr lumierd keeps, in bytes (an internal error's message).
const MAX_STDERR: u64 = 16 * 1024;

/// What the child evaluates: an [`Input`] that crosses a pipe.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub root: PathBuf,
    pub root_display: String,
    pub config: PathBuf,
    pub stage: String,
}

/// How a child ended: its status (`None`: killed after [`WALL_LIMIT`]), stdout and stderr.
struct Ended {
    status: Option<ExitStatus>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Evaluates one stage of a config in a child process; see the module doc.
pub fn evaluate(input: &Input<'_>) -> Result<Evaluation, Failure> {
    let at_config = |kind, message: String| Failure {
        kind,
        file: display(input.root, input.root_display, input.config),
        pos: Pos { line: 1, col: 1 },
        message,
    };
    let request = Request {
        root: input.root.to_path_buf(),
        root_display: input.root_display.to_owned(),
        config: input.config.to_path_buf(),
        stage: input.stage.to_owned(),
    };
    let request = serde_json::to_vec(&request).map_err(|e| {
        at_config(
            FailureKind::Io,
            format!("cannot hand the config to the evaluating process: {e}"),
        )
    })?;
    let ended = run(&request, input.root).map_err(|e| {
        at_config(
            FailureKind::Io,
            format!("cannot run the evaluating process (`lumierd {SUBCOMMAND}`): {e}"),
        )
    })?;
    answer(ended, at_config)
}

/// What a child's end means (see the module doc's table); `at_config` makes a failure at
/// the config's start.
fn answer(
    ended: Ended,
    at_config: impl Fn(FailureKind, String) -> Failure,
) -> Result<Evaluation, Failure> {
    let Some(status) = ended.status else {
        let message = format!(
            "the config ran longer than {} s (a runaway loop?); its evaluation was killed",
            WALL_LIMIT.as_secs()
        );
        return Err(at_config(FailureKind::Cpu, message));
    };
    match status.signal() {
        Some(libc::SIGXCPU) => {
            let message =
                "the config used up its CPU time (a runaway loop?); its evaluation was killed";
            return Err(at_config(FailureKind::Cpu, message.to_owned()));
        }
        Some(signal) => {
            let message = format!(
                "the config ran out of memory or crashed the JavaScript engine ({}); its evaluation was stopped",
                signal_name(signal)
            );
            return Err(at_config(FailureKind::Crash, message));
        }
        None if !status.success() => {
            let message = format!(
                "the evaluating process failed ({status}): {}",
                last_line(&ended.stderr)
            );
            return Err(at_config(FailureKind::Io, message));
        }
        None => {}
    }
    serde_json::from_slice::<Result<Evaluation, Failure>>(&ended.stdout).unwrap_or_else(|e| {
        let message = format!("lumierd could not read the evaluating process's answer: {e}");
        Err(at_config(FailureKind::Io, message))
    })
}

fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}

/// The last non-empty line of a child's stderr, at most 300 characters.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().rev().find(|l| !l.trim().is_empty());
    line.unwrap_or("no message").chars().take(300).collect()
}

/// The binary to run as the child: this very program.
fn exe() -> PathBuf {
    if cfg!(target_os = "linux") {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("lumierd"))
    }
}

/// Runs a child on `request` (in `dir`) until it ends or [`WALL_LIMIT`] passes (then kills
/// it); an error only when it cannot be started or watched.
fn run(request: &[u8], dir: &Path) -> std::io::Result<Ended> {
    let deadline = Instant::now() + WALL_LIMIT;
    let mut child = Command::new(exe())
        .arg(SUBCOMMAND)
        .env_clear()
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let result = watch(&mut child, request, deadline);
    if !matches!(
        result,
        Ok(Ended {
            status: Some(_),
            ..
        })
    ) {
        // Killed at the deadline, or lumierd could not watch it: it must not live on.
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

/// Writes the request, reads the answer (on a thread, so the deadline holds) and waits.
fn watch(child: &mut Child, request: &[u8], deadline: Instant) -> std::io::Result<Ended> {
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(std::io::Error::other("the child's pipes are missing"));
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("lumier-eval".to_owned())
        .spawn(move || {
            let out = read_bounded(stdout, MAX_ANSWER);
            let err = read_bounded(stderr, MAX_STDERR);
            let _ = tx.send((out, err));
        })?;
    // A child that died before reading breaks the pipe: its status says why.
    let _ = stdin.write_all(request);
    drop(stdin);
    let wait = deadline.saturating_duration_since(Instant::now());
    let Ok((stdout, stderr)) = rx.recv_timeout(wait) else {
        return Ok(Ended {
            status: None,
            stdout: vec![],
            stderr: vec![],
        });
    };
    // Its stdout is closed: it is exiting (a moment at most).
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    Ok(Ended {
        status,
        stdout,
        stderr,
    })
}

/// Up to `max` bytes of `from`; the rest is read and dropped (so the writer never blocks).
fn read_bounded(mut from: impl Read, max: u64) -> Vec<u8> {
    let mut kept = Vec::new();
    let _ = from.by_ref().take(max).read_to_end(&mut kept);
    let _ = std::io::copy(&mut from, &mut std::io::sink());
    kept
}

/// The child's side (`lumierd __eval-lumier`): confines itself, reads one [`Request`] from
/// stdin, evaluates it in process and writes the answer to stdout. Exit 0 with an answer,
/// 1 when it could not confine itself or read the request (said on stderr).
pub fn serve() -> i32 {
    if let Err(e) = confine() {
        eprintln!("lumierd {SUBCOMMAND}: cannot limit this process: {e}");
        return 1;
    }
    let mut text = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_REQUEST).read_to_end(&mut text) {
        eprintln!("lumierd {SUBCOMMAND}: cannot read the request: {e}");
        return 1;
    }
    let request: Request = match serde_json::from_slice(&text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lumierd {SUBCOMMAND}: not a request: {e}");
            return 1;
        }
    };
    let input = Input {
        root: &request.root,
        root_display: &request.root_display,
        config: &request.config,
        stage: &request.stage,
    };
    let answer = engine::evaluate(&input);
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut out, &answer)
        .map_err(std::io::Error::from)
        .and_then(|()| out.flush());
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lumierd {SUBCOMMAND}: cannot write the answer: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_config(kind: FailureKind, message: String) -> Failure {
        Failure {
            kind,
            file: "m/lumier.config.ts".to_owned(),
            pos: Pos { line: 1, col: 1 },
            message,
        }
    }

    fn ended(status: Option<i32>, stdout: &str) -> Ended {
        Ended {
            status: status.map(ExitStatus::from_raw),
            stdout: stdout.as_bytes().to_vec(),
            stderr: b"thread 'main' panicked\nat the end\n".to_vec(),
        }
    }

    /// The module doc's table, row by row (a raw wait status: a signal number, or the exit
    /// code shifted left by 8).
    #[test]
    fn every_end_of_the_child_is_classified() {
        let failure = at_config(FailureKind::Exception, "uncaught Error: x".to_owned());
        let mut elsewhere = failure.clone();
        elsewhere.file = "m/lib/helper.ts".to_owned();
        elsewhere.pos = Pos { line: 2, col: 13 };
        let answered = serde_json::to_string(&Err::<Evaluation, _>(elsewhere.clone())).unwrap();
        let cases: [(Option<i32>, &str, FailureKind, &str); 7] = [
            (None, "", FailureKind::Cpu, "ran longer than 10 s"),
            (
                Some(libc::SIGXCPU),
                "",
                FailureKind::Cpu,
                "used up its CPU time",
            ),
            (
                Some(libc::SIGSEGV),
                "",
                FailureKind::Crash,
                "ran out of memory or crashed the JavaScript engine (SIGSEGV)",
            ),
            (Some(libc::SIGABRT), "", FailureKind::Crash, "(SIGABRT)"),
            (
                Some(1 << 8),
                "",
                FailureKind::Io,
                "failed (exit status: 1): at the end",
            ),
            (
                Some(0),
                "running 0 tests",
                FailureKind::Io,
                "could not read the evaluating process's answer",
            ),
            (
                Some(0),
                &answered,
                FailureKind::Exception,
                "uncaught Error: x",
            ),
        ];
        for (status, stdout, kind, message) in cases {
            let got = answer(ended(status, stdout), at_config).unwrap_err();
            assert_eq!(got.kind, kind, "{status:?}: {got}");
            assert!(got.message.contains(message), "{status:?}: {got}");
        }
        // An answer's failure keeps its own file and place.
        assert_eq!(
            answer(ended(Some(0), &answered), at_config).err(),
            Some(elsewhere)
        );
    }

    #[test]
    fn an_answered_evaluation_is_returned() {
        let eval = r#"{"Ok":{"app":{"name":"my-app","protect":null},"pos":{"line":3,"col":16},"resources":[],"files":["/m/lumier.config.ts"]}}"#;
        let got = answer(ended(Some(0), eval), at_config).unwrap();
        assert_eq!(got.app.name, "my-app");
        assert_eq!(got.pos, Pos { line: 3, col: 16 });
    }
}
