//! A seeded mutation fuzzer for the manifest loader (here, beside the whole load it drives,
//! so that `manifest` does not import `source` back), on the stable toolchain (no cargo-fuzz).
//!
//! Seeds: every manifest of `tests/corpus/invalid/*` and `examples/` (with the files beside
//! it, so worker entries resolve). Each input is a seed mutated 1–4 times (byte flips, inserted
//! YAML/JSON tokens, control and bidirectional characters, deleted, repeated or spliced ranges,
//! truncation), written as `m.yaml` or `m.json` (sometimes with a mutated `.lumierdignore`)
//! into a fresh folder and loaded whole
//! ([`crate::source::load_with`]: manifests, then worker builds). Promises checked per input:
//! - no panic (the load runs on its own thread; a panic fails the run),
//! - no hang: each load finishes within [`PER_INPUT`] (else the run stops and fails),
//! - every error is `file:line:col: message` on one line, line and column ≥ 1, with no raw
//!   control character (the only error without a file is "no stage manifests", which names
//!   `--allow-empty`).
//!
//! The normal test runs for a few seconds. A long run (RELIABILITY.md, "Manifest loader"):
//! `LUMIERD_FUZZ_SECS=600 LUMIERD_FUZZ_SEED=7 cargo test --release --lib source::fuzz -- --nocapture`.

use crate::manifest::{LoadError, LoadOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest one load may take before it counts as a hang: generous, for debug builds on a
/// loaded machine (the slowest input seen took 2.4 s; a real hang never ends).
const PER_INPUT: Duration = Duration::from_secs(30);

/// Tokens worth inserting: YAML/JSON structure, anchors, tags, variables, odd scalars, and
/// characters that must be escaped in messages.
const TOKENS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "&a ",
    "*a",
    "!!str ",
    "\n",
    "\t",
    " ",
    "#",
    "---\n",
    "...\n",
    "${app}",
    "${",
    "}",
    "\u{0}",
    "\u{1b}[31m",
    "\r",
    "\u{202e}",
    "é",
    "\u{7f}",
    "\u{9b}",
    "999999999999999999999",
    "-1",
    "1e400",
    "~",
    "null",
    "true",
    "type: kv",
    "type: worker",
    "entry: ../../../etc/passwd",
    "entry: /etc/passwd",
    "entry: index.js",
    "protect: [prod]",
    "protect: [prodution]",
    "drift: report",
    "existing: { id: 0123456789abcdef0123456789abcdef }",
    "compatibility: { date: \"+202-01-01\", flags: [\" x \"] }",
    "\"App\"",
    "<<: *a",
    "app: { name: a-b }",
    "stage: b-c",
    "resources: { d: { type: kv } }",
    "? ",
    "|\n  ",
    ">-\n",
];

/// What one run saw.
#[derive(Debug, Default)]
struct Report {
    inputs: u64,
    ok: u64,
    errors: u64,
    empty: u64,
    diagnostics: u64,
    panics: u64,
    hangs: u64,
    slowest: Duration,
    failures: Vec<String>,
}

struct Seed {
    name: String,
    json: bool,
    text: Vec<u8>,
    /// Other files of the seed's folder (worker sources), copied beside the input.
    siblings: Vec<(PathBuf, Vec<u8>)>,
}

fn seeds(repo: &Path) -> Vec<Seed> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo.join("tests/corpus/invalid"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.push(repo.join("examples/my-app"));
    dirs.sort();
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        let is_manifest = |p: &Path| {
            p.extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        };
        let siblings: Vec<(PathBuf, Vec<u8>)> = files
            .iter()
            .filter(|p| !is_manifest(p) && p.is_file())
            .filter_map(|p| Some((PathBuf::from(p.file_name()?), std::fs::read(p).ok()?)))
            .chain(
                // The example's worker sources live in src/.
                std::fs::read_dir(dir.join("src"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| {
                        let p = e.path();
                        Some((
                            Path::new("src").join(p.file_name()?),
                            std::fs::read(&p).ok()?,
                        ))
                    }),
            )
            .collect();
        for file in files.iter().filter(|p| is_manifest(p) && p.is_file()) {
            let Ok(text) = std::fs::read(file) else {
                continue;
            };
            out.push(Seed {
                name: file.display().to_string(),
                json: file.extension().is_some_and(|e| e == "json"),
                text,
                siblings: siblings.clone(),
            });
        }
    }
    out
}

fn mutate(rng: &mut StdRng, text: &[u8], other: &[u8]) -> Vec<u8> {
    let mut t = text.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let len = t.len();
        let at = if len == 0 { 0 } else { rng.gen_range(0..=len) };
        match rng.gen_range(0..7) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                t[i] = rng.gen();
            }
            1 => {
                let token = TOKENS[rng.gen_range(0..TOKENS.len())].as_bytes();
                t.splice(at..at, token.iter().copied());
            }
            2 if at < len => {
                let end = rng.gen_range(at..=len.min(at + 64));
                t.drain(at..end);
            }
            3 if at < len => {
                let end = rng.gen_range(at..=len.min(at + 64));
                let chunk = t[at..end].to_vec();
                for _ in 0..rng.gen_range(1..=8) {
                    t.splice(at..at, chunk.iter().copied());
                }
            }
            4 if !other.is_empty() => {
                let from = rng.gen_range(0..other.len());
                let end = rng.gen_range(from..=other.len().min(from + 128));
                t.splice(at..at, other[from..end].iter().copied());
            }
            5 => t.truncate(at),
            _ => {
                // Re-indent a line: YAML's structure is in its indentation.
                let spaces = b"    ";
                t.splice(at..at, spaces[..rng.gen_range(1..=4)].iter().copied());
            }
        }
    }
    t
}

/// Checks one finished load against the promises in the module doc.
fn check(result: &Result<crate::source::Snapshot, LoadError>, root: &str, report: &mut Report) {
    match result {
        Ok(_) => report.ok += 1,
        Err(LoadError::Empty { .. }) => {
            report.empty += 1;
            let text = result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default();
            if !text.contains("--allow-empty") {
                report
                    .failures
                    .push(format!("empty without the fix: {text}"));
            }
        }
        Err(LoadError::Root { .. }) => report.failures.push("the root failed".into()),
        Err(LoadError::Invalid(diags)) => {
            report.errors += 1;
            report.diagnostics += diags.len() as u64;
            for d in diags {
                let line = d.to_string();
                let located = d.pos.line >= 1
                    && d.pos.col >= 1
                    && line.starts_with(&format!("{}:{}:{}: ", d.file, d.pos.line, d.pos.col))
                    && d.file.starts_with(root);
                if !located || line.chars().any(char::is_control) || d.message.is_empty() {
                    report
                        .failures
                        .push(format!("badly formed error: {line:?}"));
                }
            }
        }
    }
}

fn run(seed: u64, budget: Duration, max_inputs: u64) -> Report {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let seeds = seeds(&repo);
    assert!(seeds.len() >= 40, "only {} seeds", seeds.len());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = Report::default();
    let start = Instant::now();
    while start.elapsed() < budget && report.inputs < max_inputs && report.failures.is_empty() {
        let s = &seeds[rng.gen_range(0..seeds.len())];
        let other = &seeds[rng.gen_range(0..seeds.len())].text;
        let input = mutate(&mut rng, &s.text, other);
        let json = s.json ^ rng.gen_bool(0.1);
        let Ok(dir) = tempfile::tempdir() else {
            continue;
        };
        let root = dir.path().to_path_buf();
        for (rel, bytes) in &s.siblings {
            if let Some(parent) = root.join(rel).parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(root.join(rel), bytes);
        }
        let _ = std::fs::write(root.join(if json { "m.json" } else { "m.yaml" }), &input);
        if rng.gen_bool(0.05) {
            // Sometimes an ignore file, itself mutated.
            let ignore = mutate(&mut rng, b"# x\n*.json\n!m.json\nsrc/**\n/m.yaml\n", other);
            let _ = std::fs::write(root.join(".lumierdignore"), ignore);
        }
        report.inputs += 1;
        let (tx, rx) = mpsc::channel();
        let load_root = root.clone();
        let began = Instant::now();
        let worker = std::thread::spawn(move || {
            let result = crate::source::load_with(&load_root, &LoadOptions::default());
            let _ = tx.send(result);
        });
        match rx.recv_timeout(PER_INPUT) {
            Ok(result) => {
                report.slowest = report.slowest.max(began.elapsed());
                check(&result, &root.display().to_string(), &mut report);
                if worker.join().is_err() {
                    report
                        .failures
                        .push(format!("panic after a result, seed {}", s.name));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = worker.join();
                report.panics += 1;
                report.failures.push(format!(
                    "panic on a mutation of {}: {:?}",
                    s.name,
                    String::from_utf8_lossy(&input)
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                report.hangs += 1;
                report.failures.push(format!(
                    "hang (> {PER_INPUT:?}) on a mutation of {}: {:?}",
                    s.name,
                    String::from_utf8_lossy(&input)
                ));
                // The thread cannot be stopped; leak its folder rather than pull it away.
                std::mem::forget(dir);
                break;
            }
        }
    }
    report
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

#[test]
fn mutated_manifests_never_panic_hang_or_lose_their_location() {
    let seed = env_u64("LUMIERD_FUZZ_SEED").unwrap_or(1);
    let secs = env_u64("LUMIERD_FUZZ_SECS").unwrap_or(3);
    let max_inputs = env_u64("LUMIERD_FUZZ_INPUTS").unwrap_or(u64::MAX);
    let report = run(seed, Duration::from_secs(secs), max_inputs);
    println!(
        "fuzz seed {seed}: {} inputs in {secs} s budget: {} ok, {} invalid ({} diagnostics), {} empty, {} panics, {} hangs, slowest {:?}, {} failures",
        report.inputs,
        report.ok,
        report.errors,
        report.diagnostics,
        report.empty,
        report.panics,
        report.hangs,
        report.slowest,
        report.failures.len()
    );
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert!(report.inputs >= 20, "only {} inputs ran", report.inputs);
}
