//! Crashes, disk and signals, end to end (#11.6, #12.3, #12.7, #12.8, #12.12): the real binary
//! against the real local API served in this process over loopback, with its request log as
//! the witness of what reached the provider and when.
//!
//! Tests that need a filesystem of their own (a small tmpfs for a full disk, a loop-mounted
//! ext4 image to freeze) mount it themselves and undo it in a drop guard, also on panic; they
//! need root (CI runs as root). Without root they fail when `CI` is set, and otherwise say that
//! they were skipped.

use crate::support::{eventually, eventually_every, run_in, Api, Daemon, Output, TimedRequest};
use lumierd::local_api::Faults;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const WORKER: &str = "export default { fetch() { return new Response(\"hi\") } }\n";

/// `m/dev.yaml`: app `app`, stage `dev`, workers `w0..w{workers}` with a plain binding `V` =
/// `var(i)`; with `kv`, each worker `wi` also binds its own namespace `kvi`.
fn fleet(dir: &Path, app: &str, workers: usize, kv: bool, var: impl Fn(usize) -> String) {
    let m = dir.join("m");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("index.js"), WORKER).unwrap();
    let mut text = format!("app: {{ name: {app} }}\nstage: dev\nresources:\n");
    for i in 0..workers {
        if kv {
            text.push_str(&format!("  kv{i}: {{ type: kv }}\n"));
        }
        text.push_str(&format!(
            "  w{i}:\n    type: worker\n    entry: index.js\n    bindings:\n      V: \"{}\"\n",
            var(i)
        ));
        if kv {
            text.push_str(&format!("      K: {{ kv: kv{i} }}\n"));
        }
    }
    // Written aside and renamed in: the watch never sees half a file.
    let tmp = dir.join("dev.yaml.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, m.join("dev.yaml")).unwrap();
}

/// `lumierd run` on `m/` against `api` with state `state` (a path relative to `dir` or
/// absolute), a 1 h resync, and the admin API on an ephemeral port.
fn spawn_run(dir: &Path, api: &Api, state: &str, extra: &[&str]) -> (Daemon, String) {
    let mut args = vec![
        "run",
        "--manifests",
        "m",
        "--state",
        state,
        "--api-url",
        &api.base,
        "--debounce",
        "100ms",
        "--resync",
        "1h",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let d = Daemon::spawn_env(dir, &args, &[("RUST_LOG", "info")]);
    let admin = d.stdout_line("admin API: ", Duration::from_secs(30));
    (d, admin)
}

/// `lumierd run --once` on `m/` against `api`, to its end (2 min at most).
fn once(dir: &Path, api: &Api, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "--once",
        "--manifests",
        "m",
        "--state",
        "state",
        "--api-url",
        &api.base,
    ];
    args.extend_from_slice(extra);
    run_in(dir, &args, Duration::from_secs(120))
}

/// Seconds since the epoch, the request log's clock.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The script a request uploads (`PUT …/workers/scripts/NAME`), if it is an upload.
fn uploaded(method: &str, path: &str) -> Option<String> {
    let (_, name) = path.split_once("/workers/scripts/")?;
    (method == "PUT" && !name.contains('/')).then(|| name.to_owned())
}

/// Uploads so far (in-memory log), per script.
fn uploads(api: &Api) -> BTreeMap<String, usize> {
    let mut per = BTreeMap::new();
    for r in api.log() {
        if let Some(name) = uploaded(&r.method, &r.path) {
            *per.entry(name).or_insert(0) += 1;
        }
    }
    per
}

fn total(per: &BTreeMap<String, usize>) -> usize {
    per.values().sum()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// `GET url`: its status, or the error (an answer must come within 2 s).
async fn get(url: &str) -> Result<u16, String> {
    http()
        .get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// Waits until `/healthz` answers `code`.
async fn wait_health_only(admin: &str, code: u16, within: Duration, what: &str) {
    eventually(within, what, || async {
        match get(&format!("{admin}/healthz")).await {
            Ok(c) if c == code => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

/// Waits until `/healthz` and `/readyz` both answer `code`.
async fn wait_health(admin: &str, code: u16, within: Duration, what: &str) {
    eventually(within, what, || async {
        let healthz = get(&format!("{admin}/healthz")).await;
        let readyz = get(&format!("{admin}/readyz")).await;
        if healthz == Ok(code) && readyz == Ok(code) {
            Ok(())
        } else {
            Err((healthz, readyz))
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Root, tools, mounts
// ---------------------------------------------------------------------------------------------

/// Whether this process runs as root. Without root: panics when `CI` is set (CI runs as root,
/// so a skip there would hide a failure), else prints that `test` was skipped.
fn root_or_skip(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        == Some("0");
    if root {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} mounts a filesystem and needs root; CI runs the tests as root"
    );
    eprintln!("SKIPPED {test}: it mounts a filesystem and needs root");
    false
}

/// Runs `program args`; panics with its output when it fails, naming the Debian `package`
/// when it is missing.
fn sh(package: &str, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install the Debian package `{package}`")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A filesystem mounted on `dir` for one test: unmounted (after a thaw, should it be frozen)
/// and its image deleted when dropped, also on panic.
struct Mount {
    dir: PathBuf,
    image: Option<PathBuf>,
}

impl Mount {
    /// A tmpfs of `size` (mount(8) syntax, e.g. `8m`) on `dir`.
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let dir_s = dir.to_str().unwrap();
        sh(
            "mount",
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir_s],
        );
        Mount {
            dir: dir.to_owned(),
            image: None,
        }
    }

    /// A fresh ext4 image of `size` (truncate(1) syntax) at `image`, loop-mounted on `dir`.
    fn ext4(image: &Path, dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let image_s = image.to_str().unwrap();
        sh("coreutils", "truncate", &["-s", size, image_s]);
        sh("e2fsprogs", "mkfs.ext4", &["-q", "-F", image_s]);
        // The guard exists before the mount is tried: a failed mount still deletes the image.
        let mount = Mount {
            dir: dir.to_owned(),
            image: Some(image.to_owned()),
        };
        sh(
            "mount",
            "mount",
            &["-o", "loop", image_s, dir.to_str().unwrap()],
        );
        mount
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let dir = self.dir.to_string_lossy().into_owned();
        // Frozen or not: a thaw of a filesystem that is not frozen fails harmlessly.
        let _ = Command::new("fsfreeze")
            .args(["-u", &dir])
            .stderr(Stdio::null())
            .status();
        let unmounted = Command::new("umount")
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Busy (a process still holds a file): detach it now, freed once released.
            let _ = Command::new("umount").args(["-l", &dir]).status();
        }
        if let Some(image) = &self.image {
            let _ = std::fs::remove_file(image);
        }
    }
}

/// A frozen filesystem (fsfreeze(8)): thawed when dropped, also on panic.
struct Frozen(PathBuf);

impl Frozen {
    fn freeze(dir: &Path) -> Frozen {
        sh("util-linux", "fsfreeze", &["-f", dir.to_str().unwrap()]);
        Frozen(dir.to_owned())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze")
            .arg("-u")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}

/// Fills the filesystem of `dir` with `dir/filler` until it is full (ENOSPC).
fn fill(dir: &Path) -> u64 {
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    let mut written = 0u64;
    let mut size = chunk.len();
    // Large chunks, then smaller ones down to a page, so no free page is left.
    while size >= 4096 {
        match f.write(&chunk[..size]) {
            Ok(0) => size /= 2,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => size /= 2,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    let _ = f.sync_all();
    written
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// #12.7: after SIGTERM no new provider request starts (calls in flight finish), and the
/// daemon exits 0 within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_converge_starts_no_new_provider_request() {
    let api = Api::start(Faults {
        latency: Duration::from_millis(100),
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "term", 40, false, |_| "v1".into());
    let (mut d, _admin) = spawn_run(dir.path(), &api, "state", &["--concurrency", "2"]);
    eventually_every(
        Duration::from_millis(10),
        Duration::from_secs(60),
        "4 uploads",
        || async {
            match total(&uploads(&api)) {
                n if n >= 4 => Ok(()),
                n => Err(n),
            }
        },
    )
    .await;
    let at_signal = total(&uploads(&api));
    assert!(at_signal < 40, "the converge was over before the signal");
    let signalled = now();
    let started = Instant::now();
    d.signal("TERM");
    let code = tokio::task::block_in_place(|| d.exit(Duration::from_secs(10)));
    let took = started.elapsed();
    assert_eq!(code, 0, "{}", d.stderr());
    // Signal delivery and the stop flag take a few milliseconds: 50 ms of grace.
    let log = api.timed_log();
    let late: Vec<&TimedRequest> = log.iter().filter(|r| r.start > signalled + 0.05).collect();
    assert!(
        late.is_empty(),
        "{} requests started more than 50 ms after SIGTERM, e.g. {:?} (signal at {signalled:.3})",
        late.len(),
        late.first()
    );
    let after = log.iter().filter(|r| r.start > signalled).count();
    eprintln!(
        "figures: SIGTERM after {at_signal} of 40 uploads had finished: exit {code} after {} ms; \
         {} more uploads finished (in flight at the signal); {after} requests started after \
         the signal, all within the 50 ms grace",
        took.as_millis(),
        total(&uploads(&api)) - at_signal
    );
    api.stop().await;
}

/// The text binding `V` of script `name`, as the provider has it.
async fn binding_v(api: &Api, name: &str) -> Option<String> {
    let v = api.get(&format!("/workers/scripts/{name}/settings")).await;
    let bindings = v["result"]["bindings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    bindings
        .iter()
        .find(|b| b["name"] == "V")
        .and_then(|b| b["text"].as_str().map(str::to_owned))
}

/// #11.6: once the state folder's disk is full and the store has failed, no provider write is
/// sent and `/healthz` and `/readyz` answer 503; once there is room again the daemon recovers
/// on its own (no restart, the store reopens) and converges.
///
/// Filling the folder does not make the store fail at once: sled still has part of a page to
/// write into. So the odd workers are edited, a round at a time (the next once the last pass
/// is done), until a pass fails on the full disk; a write whose intent was recorded but whose
/// outcome could not be is repeated at most once after the recovery. With
/// `edit_while_failed`, the even workers are edited while the store is failed, and each is
/// uploaded once after the recovery.
async fn disk_full(app: &str, edit_while_failed: bool) {
    if !root_or_skip(app) {
        return;
    }
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _mount = Mount::tmpfs(&state, "16m");
    fleet(dir.path(), app, 6, true, |_| "1".into());
    let (d, admin) = spawn_run(dir.path(), &api, state.to_str().unwrap(), &[]);
    wait_health(&admin, 200, Duration::from_secs(60), "the first converge").await;
    assert_eq!(total(&uploads(&api)), 6);

    let filled = fill(&state);
    api.clear_log();
    let odd = |round: usize| move |i: usize| (if i % 2 == 1 { round } else { 1 }).to_string();
    let round = std::cell::Cell::new(2);
    let mark = d.mark();
    fleet(dir.path(), app, 6, true, odd(2));
    eventually(
        Duration::from_secs(60),
        "liveness and readiness to report the full disk",
        || async {
            let healthz = get(&format!("{admin}/healthz")).await;
            let readyz = get(&format!("{admin}/readyz")).await;
            if healthz == Ok(503) && readyz == Ok(503) {
                return Ok(());
            }
            // Still writing: once this round's pass is done, edit them again.
            let r = round.get();
            if d.count_since(mark, "pass done") >= r - 1 {
                round.set(r + 1);
                fleet(dir.path(), app, 6, true, odd(r + 1));
            }
            Err((healthz, readyz, r))
        },
    )
    .await;
    let last = round.get();
    let at_failure = uploads(&api);
    api.clear_log();
    let mark = d.mark();
    let even = if edit_while_failed { 2 } else { 1 };
    if edit_while_failed {
        fleet(dir.path(), app, 6, true, |i| {
            (if i % 2 == 1 { last } else { even }).to_string()
        });
    }
    // The daemon retries meanwhile: two failed passes, and nothing written.
    let (first, _) = tokio::task::block_in_place(|| {
        d.wait_for_line_since(mark, "pass failed", Duration::from_secs(30))
    });
    tokio::task::block_in_place(|| {
        d.wait_for_line_since(first + 1, "pass failed", Duration::from_secs(30))
    });
    assert_eq!(
        api.writes(),
        Vec::<String>::new(),
        "provider writes while the store cannot write"
    );
    assert_eq!(get(&format!("{admin}/healthz")).await, Ok(503));
    assert_eq!(get(&format!("{admin}/readyz")).await, Ok(503));

    std::fs::remove_file(state.join("filler")).unwrap();
    let freed = Instant::now();
    // Same process (same admin address), healthy and ready again.
    wait_health(
        &admin,
        200,
        Duration::from_secs(60),
        "health after recovery",
    )
    .await;
    let recovered_ms = freed.elapsed().as_millis();
    // Converged: every worker has its last value at the provider, and is Ready.
    for i in 0..6 {
        let want = (if i % 2 == 1 { last } else { even }).to_string();
        let name = format!("{app}-dev-w{i}");
        assert_eq!(binding_v(&api, &name).await, Some(want), "{name}");
    }
    let out = tokio::task::block_in_place(|| {
        run_in(
            dir.path(),
            &["status", "--json", "--state", state.to_str().unwrap()],
            Duration::from_secs(30),
        )
    });
    assert!(
        !out.stdout.contains("Pending") && out.stdout.contains("Ready"),
        "{out:?}"
    );
    let per = uploads(&api);
    for i in 0..6 {
        let name = format!("{app}-dev-w{i}");
        let after = per.get(&name).copied().unwrap_or(0);
        let most = match (i % 2, edit_while_failed) {
            // An odd worker: its last edit, if the failed pass did not send it, or once more
            // for a write whose outcome the full disk kept from being recorded.
            (1, _) => 1,
            (_, true) => 1,
            (_, false) => 0,
        };
        assert!(
            after <= most,
            "{name}: {after} uploads after the recovery (at most {most}): {per:?}"
        );
        if i % 2 == 0 && edit_while_failed {
            assert_eq!(after, 1, "{name} edited while full: {per:?}");
        }
    }
    assert!(
        api.writes().iter().all(|w| w.starts_with("PUT ")),
        "{:?}",
        api.writes()
    );
    eprintln!(
        "figures ({app}): disk full ({filled} bytes of filler); the store failed in round \
         {last} of odd-worker edits (uploads until then: {at_failure:?}); while failed: 0 \
         provider writes over 2 retried passes, /healthz and /readyz 503; room again: healthy \
         {recovered_ms} ms after the filler was removed, without a restart; uploads after: \
         {per:?}"
    );
    drop(d);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_stops_provider_writes_until_the_store_can_write_again() {
    disk_full("full", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_an_edit_while_full_is_applied_once_there_is_room() {
    disk_full("fulledit", true).await;
}

/// #12.12: each resource is recorded as it converges, so kill -9 mid-converge repeats only
/// the uploads it interrupted; no namespace is ever created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_converge_repeats_only_interrupted_uploads() {
    let api = Api::start(Faults {
        latency: Duration::from_millis(50),
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "kill", 20, true, |_| "v1".into());
    let args = [
        "run",
        "--once",
        "--manifests",
        "m",
        "--state",
        "state",
        "--api-url",
        &api.base,
        "--concurrency",
        "2",
    ];
    let mut kills = Vec::new();
    for at in [3, 8, 13] {
        let mut d = Daemon::spawn(dir.path(), &args);
        eventually_every(
            Duration::from_millis(5),
            Duration::from_secs(60),
            &format!("{at} uploads"),
            || async {
                match total(&uploads(&api)) {
                    n if n >= at => Ok(()),
                    n => Err(n),
                }
            },
        )
        .await;
        kills.push(now());
        tokio::task::block_in_place(|| d.kill());
        let done = total(&uploads(&api));
        assert!(done < 20, "killed too late: {done} uploads");
    }
    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(out.code, 0, "{out:?}");

    // A kill interrupted a script's upload when it came while the upload was in flight, or
    // within SETTLE of its answer (the outcome being recorded: two flushes per write on a
    // blocking thread, which under the suite's own load on 2 cores can take most of a second).
    const SETTLE: f64 = 1.0;
    let log = api.timed_log();
    let mut report = Vec::new();
    let mut over = Vec::new();
    for i in 0..20 {
        let script = format!("kill-dev-w{i}");
        let ups: Vec<&TimedRequest> = log
            .iter()
            .filter(|r| uploaded(&r.method, &r.path).as_deref() == Some(script.as_str()))
            .collect();
        let interrupted = kills
            .iter()
            .filter(|k| ups.iter().any(|r| r.start <= **k && **k <= r.end + SETTLE))
            .count();
        report.push(format!("w{i}: {} ({interrupted})", ups.len()));
        if ups.is_empty() || ups.len() > 1 + interrupted {
            over.push(format!(
                "{script}: {} uploads, {interrupted} interrupted",
                ups.len()
            ));
        }
    }
    assert!(
        over.is_empty(),
        "uploads per script over 1 + interrupted: {over:?}"
    );
    let mut titles: Vec<String> = api
        .namespaces()
        .await
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles.len(), 20, "{titles:?}");
    titles.sort();
    titles.dedup();
    assert_eq!(titles.len(), 20, "duplicate namespaces: {titles:?}");
    assert_eq!(api.scripts().await.len(), 20);
    let total_uploads: usize = log
        .iter()
        .filter(|r| uploaded(&r.method, &r.path).is_some())
        .count();
    eprintln!(
        "figures: 3 kills (after 3, 8, 13 uploads) + a final pass: {total_uploads} uploads for \
         20 scripts, 0 duplicate namespaces; per script (interrupted): {}",
        report.join(", ")
    );
    api.stop().await;
}

/// Whether process `pid` has exited: a zombie not reaped yet (or gone). A thread stuck in a
/// write to a frozen filesystem waits there uninterruptibly, and the kernel reaps the process
/// only once it returns (at the thaw); exiting is all a process can do.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S …`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// #12.3: a frozen state disk neither silences `/healthz` nor keeps SIGTERM from ending the
/// process within 10 s (it is reaped at the thaw: see [`exited`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_process_within_10s_on_a_frozen_state_disk() {
    if !root_or_skip("sigterm_ends_the_process_within_10s_on_a_frozen_state_disk") {
        return;
    }
    let api = Api::start(Faults {
        latency: Duration::from_millis(100),
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _mount = Mount::ext4(&dir.path().join("state.img"), &state, "64M");
    fleet(dir.path(), "frozen", 40, false, |_| "v1".into());
    let (mut d, admin) = spawn_run(
        dir.path(),
        &api,
        state.to_str().unwrap(),
        &["--concurrency", "2", "--stuck-after", "2s"],
    );
    eventually_every(
        Duration::from_millis(10),
        Duration::from_secs(60),
        "3 uploads",
        || async {
            match total(&uploads(&api)) {
                n if n >= 3 => Ok(()),
                n => Err(n),
            }
        },
    )
    .await;
    // Declared after `d`, so dropped (thawed) before it, also on panic: `d` can be reaped.
    let frozen = Frozen::freeze(&state);
    let at_freeze = total(&uploads(&api));
    // Liveness keeps answering while the disk is frozen (and the pass is stuck on it).
    let mut answers = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let got = get(&format!("{admin}/healthz")).await;
        answers.push((got.clone(), t.elapsed().as_millis()));
        assert!(
            got.is_ok(),
            "/healthz does not answer on a frozen disk: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(at_freeze < 40, "the converge was over before the freeze");
    // ...and reports the pass stuck on it once --stuck-after has passed without progress, so
    // a supervisor restarts lumierd (the watchdog stops being pinged at the same moment).
    wait_health_only(
        &admin,
        503,
        Duration::from_secs(20),
        "/healthz 503: pass stuck",
    )
    .await;
    let pid = d.pid();
    let started = Instant::now();
    d.signal("TERM");
    eventually(
        Duration::from_secs(10),
        "the process to exit after SIGTERM on a frozen disk",
        || async {
            if exited(pid) {
                Ok(())
            } else {
                Err(d.stderr())
            }
        },
    )
    .await;
    let took = started.elapsed();
    drop(frozen);
    let code = tokio::task::block_in_place(|| d.exit(Duration::from_secs(10)));
    assert_eq!(code, 0, "{}", d.stderr());
    eprintln!(
        "figures: frozen state disk: /healthz {answers:?} (status, ms); SIGTERM to exit {} ms",
        took.as_millis()
    );
    api.stop().await;
}

/// #12.8: on a fresh state, `plan` lists every create `run --once` then does, workers bound
/// to namespaces that do not exist yet included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_lists_what_run_then_does_on_a_fresh_stage() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "plan", 2, true, |_| "v1".into());
    let plan = tokio::task::block_in_place(|| {
        run_in(
            dir.path(),
            &[
                "plan",
                "--manifests",
                "m",
                "--state",
                "state",
                "--api-url",
                &api.base,
            ],
            Duration::from_secs(60),
        )
    });
    assert_eq!(plan.code, 1, "changes pending: {plan:?}");
    assert_eq!(api.writes(), Vec::<String>::new(), "plan wrote");
    let mut planned: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(' '))
        .collect();
    planned.sort();
    assert_eq!(
        planned,
        [
            "create plan/dev/kv0",
            "create plan/dev/kv1",
            "create plan/dev/w0",
            "create plan/dev/w1"
        ],
        "{}",
        plan.stdout
    );

    let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(out.code, 0, "{out:?}");
    // What run did, as `create app/stage/name`.
    let mut done: Vec<String> = api
        .namespaces()
        .await
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .chain(uploads(&api).into_keys())
        .map(|name| format!("create {}", name.replacen('-', "/", 2)))
        .collect();
    done.sort();
    assert_eq!(done, planned, "plan said {planned:?}, run did {done:?}");
    // The creates; each worker's workers.dev route (`workersDev` defaults to on) is the
    // create's second step, not a resource of its own.
    let creates = api
        .writes()
        .iter()
        .filter(|w| w.starts_with("POST ") || w.starts_with("PUT "))
        .filter(|w| !w.ends_with("/subdomain"))
        .count();
    assert_eq!(creates, 4, "{:?}", api.writes());
    api.stop().await;
}

/// #11 ("applied, answer lost"): a converge against an API that applies 30 % of the writes and
/// then drops their connection (the client sees a reset after the change happened) ends with
/// every namespace created once and every script uploaded, nothing else on the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converge_whose_write_answers_are_lost_creates_nothing_twice() {
    let api = Api::start(Faults {
        applied_lost_rate: 0.3,
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "lost", 12, true, |_| "v1".into());
    // A pass that gives up on a resource exits non-zero; the next one picks up from the state.
    let mut runs = Vec::new();
    let out = eventually(
        Duration::from_secs(240),
        "a `run --once` that exits 0",
        || {
            let out = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
            runs.push(out.code);
            async move {
                if out.code == 0 {
                    Ok(out)
                } else {
                    Err(out)
                }
            }
        },
    )
    .await;
    let log = api.log();
    let lost = log.iter().filter(|r| r.answer_lost).count();
    assert!(lost > 0, "no answer was lost: {log:?}");
    let mut titles: Vec<String> = api
        .namespaces()
        .await
        .iter()
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect();
    titles.sort();
    let expected: Vec<String> = {
        let mut t: Vec<String> = (0..12).map(|i| format!("lost-dev-kv{i}")).collect();
        t.sort();
        t
    };
    assert_eq!(titles, expected, "duplicate, missing or stray namespaces");
    let mut scripts: Vec<String> = api
        .scripts()
        .await
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    scripts.sort();
    let mut declared: Vec<String> = (0..12).map(|i| format!("lost-dev-w{i}")).collect();
    declared.sort();
    assert_eq!(scripts, declared, "{}", out.stderr);
    let per = uploads(&api);
    eprintln!(
        "figures: applied-lost 0.3: {} requests, {lost} answers lost after applying; runs \
         {runs:?} (exit codes); 12 namespaces, 0 duplicates; {} uploads for 12 scripts: {per:?}",
        log.len(),
        total(&per)
    );
    api.stop().await;
}

/// #11, found by `scripts/soak.py`: a reopen of the store while its disk is full leaves an empty
/// `db/snap.<lsn>.generating` (sled snapshots the dropped database and the write is cut off);
/// sled then refuses every later open ("Read corrupted data"), also once there is room again
/// and in any later process, so the daemon never recovers. Here that leftover is made by hand
/// on a converged state; the next pass must still open the store and converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_cut_off_by_a_full_disk_does_not_make_the_store_unopenable() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "snap", 2, true, |_| "v1".into());
    let first = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(first.code, 0, "{first:?}");
    // What a snapshot write cut off by ENOSPC leaves (seen in 3 of 3 soak runs).
    std::fs::write(
        dir.path().join("state/db/snap.000000000007FF41.generating"),
        b"",
    )
    .unwrap();
    fleet(dir.path(), "snap", 2, true, |_| "v2".into());
    let second = tokio::task::block_in_place(|| once(dir.path(), &api, &[]));
    assert_eq!(second.code, 0, "the store must open: {}", second.stderr);
    assert_eq!(binding_v(&api, "snap-dev-w0").await.as_deref(), Some("v2"));
    api.stop().await;
}

/// #11.8: `plan`'s scratch store is a fresh private folder (mkdtemp), never the predictable
/// `$TMPDIR/lumierd-plan-<pid>` that another local user could have made first. Here every
/// name a predictable `plan` could pick next is taken (by a file): plan still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_never_uses_a_predictable_scratch_folder() {
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    fleet(dir.path(), "scratch", 1, true, |_| "v1".into());
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for pid in last..last + 2000 {
        std::fs::write(tmp.join(format!("lumierd-plan-{pid}")), "taken").unwrap();
    }
    let tmp_str = tmp.to_str().unwrap().to_owned();
    let mut d = Daemon::spawn_env(
        dir.path(),
        &[
            "plan",
            "--manifests",
            "m",
            "--state",
            "state",
            "--api-url",
            &api.base,
        ],
        &[("TMPDIR", tmp_str.as_str())],
    );
    let code = tokio::task::block_in_place(|| d.exit(Duration::from_secs(60)));
    let (out, err) = (d.stdout(), d.stderr());
    assert_eq!(code, 1, "changes pending, and no error: {out}\n{err}");
    assert!(out.contains("create scratch/dev/kv0"), "{out}\n{err}");
    // Nothing of plan's is left behind.
    let left: Vec<String> = std::fs::read_dir(&tmp)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    api.stop().await;
}
