//! High availability (#14): the etcd store, against a real etcd (Debian's `etcd-server`,
//! its `/usr/bin/etcd` started here on loopback with free ports and a temporary data folder,
//! stopped when the test ends).

use crate::support::{eventually, eventually_blocking, run_in, Api, Daemon, Output};
use lumierd::local_api::Faults;
use lumierd::manifest::ResourceKey;
use lumierd::store::etcd::{EtcdError, Gateway};
use lumierd::store::{Fence, Location, Pushed, Record, Store, StoreError};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ETCD: &str = "/usr/bin/etcd";

/// A single-member etcd on loopback; killed and reaped when dropped.
pub struct Etcd {
    child: Child,
    /// How it was started, for [`Etcd::restart`].
    args: Vec<String>,
    /// `127.0.0.1:PORT` of its client listener.
    pub endpoint: String,
    _data: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    pub fn start() -> Etcd {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: install the Debian package `etcd-server` (.ci/run does)"
        );
        let data = tempfile::tempdir().unwrap();
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let args: Vec<String> = [
            "--name".to_owned(),
            "t".to_owned(),
            "--data-dir".to_owned(),
            data.path().join("data").display().to_string(),
            "--listen-client-urls".to_owned(),
            client_url.clone(),
            "--advertise-client-urls".to_owned(),
            client_url.clone(),
            "--listen-peer-urls".to_owned(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".to_owned(),
            peer_url.clone(),
            "--initial-cluster".to_owned(),
            format!("t={peer_url}"),
        ]
        .into();
        let child = Etcd::spawn(&args, data.path());
        let etcd = Etcd {
            child,
            args,
            endpoint: format!("127.0.0.1:{client}"),
            _data: data,
        };
        etcd.wait_healthy();
        etcd
    }

    fn spawn(args: &[String], dir: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("etcd.log"))
            .unwrap();
        Command::new(ETCD)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn wait_healthy(&self) {
        let health = format!("http://{}/health", self.endpoint);
        eventually_blocking(Duration::from_secs(30), "etcd answers /health", || {
            match probe::blocking_get_ok(&health) {
                true => Ok(()),
                false => Err("not yet"),
            }
        });
    }

    /// Kills it (SIGKILL) and starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.resume();
    }

    /// Kills it (SIGKILL): its clients find nobody on its port until [`Etcd::resume`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again after [`Etcd::stop`], on the same ports and data.
    pub fn resume(&mut self) {
        self.child = Etcd::spawn(&self.args, self._data.path());
        self.wait_healthy();
    }

    /// The store URL of `prefix` on this etcd.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.endpoint)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET url` answered 200 (a plain TCP probe: the tests' own blocking HTTP, no runtime).
mod probe {
    pub fn blocking_get_ok(url: &str) -> bool {
        use std::io::{Read, Write};
        let Some(rest) = url.strip_prefix("http://") else {
            return false;
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let Ok(mut s) = std::net::TcpStream::connect(host) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let req = format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")
    }
}

fn key(name: &str) -> ResourceKey {
    ResourceKey {
        app: "shop".into(),
        stage: "prod".into(),
        name: name.into(),
    }
}

const WORKER: &str = "export default { fetch() { return new Response(\"hi\") } }\n";

/// `m/dev.yaml`: app `ha`, stage `dev`, `n` workers each bound to its own namespace.
fn fleet(dir: &Path, n: usize) {
    let m = dir.join("m");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("index.js"), WORKER).unwrap();
    let mut text = "app: { name: ha }\nstage: dev\nresources:\n".to_owned();
    for i in 0..n {
        text.push_str(&format!(
            "  kv{i}: {{ type: kv }}\n  w{i}:\n    type: worker\n    entry: index.js\n    bindings:\n      K: {{ kv: kv{i} }}\n"
        ));
    }
    std::fs::write(m.join("dev.yaml"), text).unwrap();
}

fn lumierd(dir: &Path, args: &[&str]) -> Output {
    run_in(dir, args, Duration::from_secs(120))
}

fn once(dir: &Path, api: &Api, store: &str, state: &str) -> Output {
    let out = lumierd(
        dir,
        &[
            "run",
            "--once",
            "--manifests",
            "m",
            "--state",
            state,
            "--store",
            store,
            "--api-url",
            &api.base,
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    out
}

/// `status --json` of `store` (`--store URL`, or a sled `--state DIR`): (name, state) pairs.
fn status(dir: &Path, args: &[&str]) -> Vec<(String, String)> {
    let mut all = vec!["status", "--json"];
    all.extend_from_slice(args);
    let out = lumierd(dir, &all);
    assert_eq!(out.code, 0, "{out:?}");
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let mut rows: Vec<(String, String)> = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Records, meta values and the outbox round-trip through etcd; a fenced write fails once
/// the fence key is not the one it names.
#[test]
fn the_typed_store_round_trips_through_etcd() {
    let etcd = Etcd::start();
    let Location::Etcd(url) = Location::parse(&etcd.url("rt")).unwrap() else {
        panic!("an etcd URL parses as etcd")
    };
    let store = Store::open_etcd(&url).unwrap();
    let rec = Record {
        create_pending: true,
        ..Record::default()
    };
    store.put(&key("cache"), &rec).unwrap();
    store.put(&key("api"), &Record::default()).unwrap();
    store.set_load_error(Some("bad.yaml:1:1: oops")).unwrap();
    store.flush().unwrap();
    // A second handle (another replica) sees all of it.
    let other = Store::open_etcd(&url).unwrap();
    assert_eq!(other.keys().unwrap(), vec![key("api"), key("cache")]);
    assert!(other.get(&key("cache")).unwrap().unwrap().create_pending);
    assert_eq!(other.all().unwrap().len(), 2);
    assert_eq!(
        other.load_error().unwrap().as_deref(),
        Some("bad.yaml:1:1: oops")
    );
    other.set_load_error(None).unwrap();
    assert_eq!(store.load_error().unwrap(), None);
    other.remove(&key("api")).unwrap();
    assert!(store.get(&key("api")).unwrap().is_none());

    assert_eq!(
        store.outbox_push("a", b"one").unwrap(),
        Pushed::Queued { dropped: 0 }
    );
    assert_eq!(store.outbox_push("a", b"again").unwrap(), Pushed::Duplicate);
    store.outbox_push("b", b"two").unwrap();
    assert_eq!(other.outbox_len().unwrap(), 2);
    let (first, bytes) = other.outbox_next(None, |_| true).unwrap().unwrap();
    assert_eq!(bytes, b"one");
    let (_, only_two) = other.outbox_next(None, |b| b == b"two").unwrap().unwrap();
    assert_eq!(only_two, b"two");
    other.outbox_ack(first).unwrap();
    assert_eq!(store.outbox_len().unwrap(), 1);
    assert_eq!(other.outbox_push("a", b"one").unwrap(), Pushed::Duplicate);

    // Replicas share one installation id: the first proposal wins.
    let id = store.shared_installation_id("1111").unwrap().unwrap();
    assert_eq!(id, "1111");
    assert_eq!(other.shared_installation_id("2222").unwrap().unwrap(), id);

    // A fence naming a leader key that is not there (or not this one) refuses the write.
    store.set_fence(Some(Fence {
        key: b"/rt/leader".to_vec(),
        create_revision: 12345,
    }));
    let err = store.put(&key("cache"), &Record::default()).unwrap_err();
    assert!(matches!(err, StoreError::Etcd(EtcdError::Fenced)), "{err}");
    assert!(other.get(&key("cache")).unwrap().unwrap().create_pending);
    store.set_fence(None);
    store.put(&key("cache"), &Record::default()).unwrap();

    // A newer schema is refused, as with sled.
    let Location::Etcd(newer) = Location::parse(&etcd.url("newer")).unwrap() else {
        unreachable!()
    };
    let gw = Gateway::connect(newer.clone()).unwrap();
    gw.put(&gw.key(b"meta/schema_version"), b"99").unwrap();
    let err = Store::open_etcd(&newer).err().unwrap();
    assert!(
        err.to_string()
            .contains("schema version 99, newer than this lumierd understands"),
        "{err}"
    );
}

/// `run --once` keeps its records in etcd (none in the state folder), `status --store` reads
/// them with no daemon, a second run against the same etcd writes nothing, and
/// `migrate-state` moves the state to sled and back with the same outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_status_and_migrate_state_through_etcd() {
    let etcd = Etcd::start();
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    fleet(&d, 3);
    let url = etcd.url("lumierd/prod");
    let api_ref = &api;
    let first = tokio::task::block_in_place(|| once(&d, api_ref, &url, "a"));
    assert!(!d.join("a/db").exists(), "records went to etcd: {first:?}");
    let rows = tokio::task::block_in_place(|| status(&d, &["--store", &url]));
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert!(rows.iter().all(|(_, s)| s == "Ready"), "{rows:?}");

    // Another replica's host (another state folder) sees the same records: nothing to write.
    api.clear_log();
    tokio::task::block_in_place(|| once(&d, api_ref, &url, "b"));
    assert_eq!(api.writes(), Vec::<String>::new());
    let etcd_resync = api.log().len();
    assert_eq!(api.namespaces().await.len(), 3);
    assert_eq!(api.scripts().await.len(), 3);

    // etcd → sled: same records, same installation id; a sled run then writes nothing.
    let sled = d.join("moved");
    let out = tokio::task::block_in_place(|| {
        lumierd(
            &d,
            &[
                "migrate-state",
                "--from",
                &url,
                "--to",
                &format!("sled:{}", sled.display()),
            ],
        )
    });
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("migrated 6 records"), "{out:?}");
    let moved_rows =
        tokio::task::block_in_place(|| status(&d, &["--state", sled.to_str().unwrap()]));
    assert_eq!(moved_rows, rows);
    api.clear_log();
    let sled_state = sled.to_str().unwrap().to_owned();
    let out = tokio::task::block_in_place(|| {
        lumierd(
            &d,
            &[
                "run",
                "--once",
                "--manifests",
                "m",
                "--state",
                &sled_state,
                "--api-url",
                &api_ref.base,
            ],
        )
    });
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        api.writes(),
        Vec::<String>::new(),
        "the installation id moved too"
    );
    // A resync costs the same requests on either store.
    let sled_resync = api.log().len();
    eprintln!("resync of 6 resources: {etcd_resync} requests on etcd, {sled_resync} on sled");
    assert_eq!(etcd_resync, sled_resync);

    // sled → a fresh etcd prefix, and a migration never merges into a store with records.
    let back = etcd.url("lumierd/back");
    let from = format!("sled:{sled_state}");
    let out = tokio::task::block_in_place(|| {
        lumierd(&d, &["migrate-state", "--from", &from, "--to", &back])
    });
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        tokio::task::block_in_place(|| status(&d, &["--store", &back])),
        rows
    );
    let again = tokio::task::block_in_place(|| {
        lumierd(&d, &["migrate-state", "--from", &from, "--to", &back])
    });
    assert_eq!(again.code, 1, "{again:?}");
    assert!(
        again.stderr.contains("already holds 6 records"),
        "{again:?}"
    );
    api.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Replicas
// ---------------------------------------------------------------------------------------------

/// `lumierd run` as replica `id` on `m/` against `api`, its records in `store`, with its own
/// state folder and the lease TTL `ttl`.
fn replica(dir: &Path, api: &Api, store: &str, id: &str, ttl: &str) -> Daemon {
    replica_with(dir, api, store, id, ttl, &[])
}

fn replica_with(dir: &Path, api: &Api, store: &str, id: &str, ttl: &str, extra: &[&str]) -> Daemon {
    let state = format!("state-{id}");
    let mut args = vec![
        "run",
        "--manifests",
        "m",
        "--state",
        &state,
        "--store",
        store,
        "--api-url",
        &api.base,
        "--instance-id",
        id,
        "--lease-ttl",
        ttl,
        "--resync",
        "1h",
        "--debounce",
        "100ms",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Daemon::spawn_env(dir, &args, &[("RUST_LOG", "info")])
}

/// Replica `a`, once it leads, then replica `b`, once it follows (TTL `ttl`, `extra` flags).
fn leader_and_follower(
    dir: &Path,
    api: &Api,
    store: &str,
    ttl: &str,
    extra: &[&str],
) -> (Daemon, Daemon) {
    let a = replica_with(dir, api, store, "a", ttl, extra);
    a.wait_for_line("this replica leads", Duration::from_secs(30));
    let b = replica_with(dir, api, store, "b", ttl, extra);
    b.wait_for_line("leader: following", Duration::from_secs(30));
    (a, b)
}

/// The instance id in a request's User-Agent (`lumierd/V (instance ID)`), if any.
fn instance_of(ua: &str) -> Option<&str> {
    ua.split_once("(instance ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
}

/// Requests per instance id, writes only (anything but GET).
fn writers(api: &Api) -> BTreeMap<String, usize> {
    let mut per = BTreeMap::new();
    for r in api.timed_log().iter().filter(|r| r.method != "GET") {
        let who = instance_of(&r.user_agent).unwrap_or("?").to_owned();
        *per.entry(who).or_insert(0) += 1;
    }
    per
}

/// Waits until the API holds `n` namespaces and `n` scripts, and checks that no title or
/// script name is there twice.
async fn converged(api: &Api, n: usize, within: Duration) {
    eventually(within, "every namespace and script exists", || async {
        let (ns, sc) = (api.namespaces().await, api.scripts().await);
        if ns.len() >= n && sc.len() >= n {
            Ok((ns, sc))
        } else {
            Err((ns.len(), sc.len()))
        }
    })
    .await;
    let titles: Vec<String> = api
        .namespaces()
        .await
        .iter()
        .map(|n| n["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    let unique: BTreeSet<&String> = titles.iter().collect();
    assert_eq!(
        unique.len(),
        titles.len(),
        "duplicate namespaces: {titles:?}"
    );
    assert_eq!(titles.len(), n, "{titles:?}");
    assert_eq!(api.scripts().await.len(), n);
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The first request (start time) of instance `id` at or after `since`.
fn first_request_of(api: &Api, id: &str, since: f64) -> Option<f64> {
    api.timed_log()
        .iter()
        .filter(|r| instance_of(&r.user_agent) == Some(id) && r.start >= since)
        .map(|r| r.start)
        .reduce(f64::min)
}

/// Two replicas: one leads and is the only one to write; the other follows. Then kill -9
/// the leader mid-converge (after `after` of its writes): the standby converges everything,
/// with no duplicate namespace or script, its first request within TTL + 2 s of the kill.
async fn kill_9_mid_converge(after: usize) {
    let etcd = Etcd::start();
    let api = Api::start(Faults {
        latency: Duration::from_millis(40),
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet(d, 12);
    let url = etcd.url("ha/kill");
    let (mut a, b) = leader_and_follower(d, &api, &url, "3s", &[]);
    eventually(
        Duration::from_secs(60),
        "the leader has written some",
        || async {
            let w = writers(&api);
            match w.get("a") {
                Some(n) if *n >= after => Ok(()),
                _ => Err(w),
            }
        },
    )
    .await;
    assert_eq!(
        writers(&api).keys().collect::<Vec<_>>(),
        ["a"],
        "only the leader writes"
    );
    a.kill();
    let killed = now();
    b.wait_for_line("this replica leads", Duration::from_secs(15));
    converged(&api, 12, Duration::from_secs(90)).await;
    let first = first_request_of(&api, "b", killed).expect("b sent requests");
    let failover = first - killed;
    eprintln!(
        "kill -9 after {after} writes: standby's first request {failover:.2} s later (TTL 3 s)"
    );
    assert!(failover <= 3.0 + 2.0, "{failover}");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_the_leader_early_in_its_converge() {
    kill_9_mid_converge(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_the_leader_mid_converge() {
    kill_9_mid_converge(8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_the_leader_late_in_its_converge() {
    kill_9_mid_converge(20).await;
}

/// SIGTERM on the leader hands over well within a TTL (the lease is revoked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_over_faster_than_a_ttl() {
    let etcd = Etcd::start();
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet(d, 2);
    let url = etcd.url("ha/term");
    let mut a = replica(d, &api, &url, "a", "10s");
    a.wait_for_line("this replica leads", Duration::from_secs(30));
    converged(&api, 2, Duration::from_secs(60)).await;
    let b = replica(d, &api, &url, "b", "10s");
    b.wait_for_line("leader: following", Duration::from_secs(30));
    // A follower with its manifests loaded is ready (it serves status, and takes over).
    let admin = b.stdout_line("admin API: ", Duration::from_secs(30));
    let readyz = format!("{admin}/readyz");
    tokio::task::block_in_place(|| {
        eventually_blocking(Duration::from_secs(15), "the follower is ready", || {
            match probe::blocking_get_ok(&readyz) {
                true => Ok(()),
                false => Err("503"),
            }
        })
    });
    // `status --store` shows who leads, from anywhere.
    let out = tokio::task::block_in_place(|| lumierd(d, &["status", "--store", &url]));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("leader: a since 20"), "{out:?}");
    let mark = b.mark();
    a.signal("TERM");
    let termed = Instant::now();
    assert_eq!(a.exit(Duration::from_secs(15)), 0);
    b.wait_for_line_since(mark, "this replica leads", Duration::from_secs(5));
    let took = termed.elapsed();
    eprintln!("SIGTERM hand-over: {took:?} (TTL 10 s)");
    assert!(took < Duration::from_secs(5), "{took:?}");
    api.stop().await;
}

/// SIGSTOP the leader past its lease, SIGCONT it: it sends no provider request that
/// started after its lease expired, and follows the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_past_its_lease_writes_nothing_when_it_thaws() {
    let etcd = Etcd::start();
    let api = Api::start(Faults {
        latency: Duration::from_millis(40),
        ..Faults::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet(d, 12);
    let url = etcd.url("ha/stop");
    let (a, b) = leader_and_follower(d, &api, &url, "3s", &[]);
    eventually(
        Duration::from_secs(60),
        "the leader has written a few",
        || async {
            let w = writers(&api);
            match w.get("a") {
                Some(n) if *n >= 4 => Ok(()),
                _ => Err(w),
            }
        },
    )
    .await;
    a.signal("STOP");
    let stopped = now();
    let mark = b.mark();
    b.wait_for_line_since(mark, "this replica leads", Duration::from_secs(15));
    let a_mark = a.mark();
    a.signal("CONT");
    a.wait_for_line_since(a_mark, "leader: ", Duration::from_secs(15));
    converged(&api, 12, Duration::from_secs(90)).await;
    // Its lease (3 s) expired at most 3 s after the stop: nothing of a's may start later.
    let late: Vec<_> = api
        .timed_log()
        .into_iter()
        .filter(|r| instance_of(&r.user_agent) == Some("a") && r.start > stopped + 3.0)
        .collect();
    assert!(late.is_empty(), "a wrote after its lease expired: {late:?}");
    api.stop().await;
}

/// The client's lease gate: shut, it sends nothing (the local API logs no request); opened up
/// to a deadline, it sends again; every request names the instance in its User-Agent.
#[tokio::test]
async fn the_lease_gate_stops_and_resumes_provider_requests() {
    let api = Api::start(Faults::default()).await;
    let client = api.client();
    client.set_instance("host-1:42");
    client.gate_until(Some(Instant::now()));
    let err = client.create_namespace("gated").await.unwrap_err();
    assert!(err.to_string().contains("leader lease"), "{err}");
    assert!(api.log().is_empty(), "{:?}", api.log());
    client.gate_until(Some(Instant::now() + Duration::from_secs(60)));
    client.create_namespace("open").await.unwrap();
    client.gate_until(None);
    client.list_namespaces().await.unwrap();
    let log = api.log();
    assert_eq!(log.len(), 2, "{log:?}");
    for r in &log {
        assert_eq!(instance_of(&r.user_agent), Some("host-1:42"), "{r:?}");
        assert!(r.user_agent.starts_with("lumierd/"), "{r:?}");
    }
    api.stop().await;
}

/// Benchmark (run with `--ignored`): failover time with the default 10 s TTL — the leader
/// killed with SIGKILL → the standby's first provider request — over 10 kills; p50 and max.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: about two minutes"]
async fn bench_failover_after_kill_9_default_ttl() {
    let etcd = Etcd::start();
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet(d, 3);
    let url = etcd.url("ha/bench");
    let mut leader = replica(d, &api, &url, "r0", "10s");
    leader.wait_for_line("this replica leads", Duration::from_secs(30));
    converged(&api, 3, Duration::from_secs(60)).await;
    let mut times = Vec::new();
    for i in 1..=10 {
        let id = format!("r{i}");
        let standby = replica(d, &api, &url, &id, "10s");
        standby.wait_for_line("leader: following", Duration::from_secs(30));
        leader.kill();
        let killed = now();
        let first = eventually(
            Duration::from_secs(30),
            "the standby's first request",
            || {
                let api = &api;
                let id = id.clone();
                async move { first_request_of(api, &id, killed).ok_or(()) }
            },
        )
        .await;
        times.push(first - killed);
        leader = standby;
    }
    times.sort_by(f64::total_cmp);
    let (p50, max) = (times[times.len() / 2], times[times.len() - 1]);
    eprintln!(
        "failover over {} kills, TTL 10 s: p50 {p50:.2} s, max {max:.2} s",
        times.len()
    );
    assert!(max <= 12.0, "{times:?}");
    api.stop().await;
}

/// etcd restarted under a running pair: the pair keeps one leader and applies an edit made
/// afterwards exactly once, with one writer at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restarted_under_a_running_pair() {
    let mut etcd = Etcd::start();
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet(d, 3);
    let url = etcd.url("ha/restart");
    let (_a, _b) = leader_and_follower(d, &api, &url, "3s", &[]);
    converged(&api, 3, Duration::from_secs(60)).await;
    tokio::task::block_in_place(|| etcd.restart());
    fleet(d, 4);
    converged(&api, 4, Duration::from_secs(60)).await;
    // Every write of the edit came from one replica at a time: never both within one pass.
    let creates: Vec<String> = api
        .timed_log()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/storage/kv/namespaces"))
        .map(|r| instance_of(&r.user_agent).unwrap_or("?").to_owned())
        .collect();
    assert_eq!(creates.len(), 4, "one create per namespace: {creates:?}");
    api.stop().await;
}

/// A hand-over is notified: every replica posts the same `leader_changed` event id, and the
/// shared outbox delivers it (#17's leadership events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_is_notified() {
    let etcd = Etcd::start();
    let api = Api::start(Faults::default()).await;
    let hook = crate::notify::Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet(d, 1);
    let url = etcd.url("ha/notify");
    let notify = ["--notify", hook.url.as_str()];
    let (mut a, b) = leader_and_follower(d, &api, &url, "10s", &notify);
    let mark = b.mark();
    a.signal("TERM");
    assert_eq!(a.exit(Duration::from_secs(15)), 0);
    b.wait_for_line_since(mark, "this replica leads", Duration::from_secs(10));
    // One event per leader: a's when it took the lease, then b's after the hand-over.
    eventually(
        Duration::from_secs(30),
        "b's leader_changed event",
        || async {
            let texts = hook.texts("leader_changed");
            if texts.iter().any(|t| t.contains("now led by b")) {
                Ok(())
            } else {
                Err(texts)
            }
        },
    )
    .await;
    hook.stop().await;
    api.stop().await;
}

// ---------------------------------------------------------------------------------------------
// What every replica reports: who leads, since when, and a stale view
// ---------------------------------------------------------------------------------------------

/// `GET url`: status code and body.
async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of the sample `line_start` (the name and labels) in a metrics exposition.
fn sample_of(metrics: &str, line_start: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

/// `status --json` of the daemon on `state` (over its status socket).
fn daemon_status(dir: &Path, state: &str) -> Value {
    let out = lumierd(dir, &["status", "--json", "--state", state]);
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(out.stdout.trim()).unwrap()
}

/// promtool (CI keeps it in `$XDG_CACHE_HOME/lumierd-ci`, see `.ci/run`) accepts `text`.
/// Without promtool the check is skipped, except under `CI=true`.
fn promtool_accepts(text: &str) {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")));
    let Some(promtool) = cache
        .map(|c| c.join("lumierd-ci/promtool"))
        .filter(|p| p.exists())
    else {
        assert!(std::env::var("CI").is_err(), "promtool is missing under CI");
        eprintln!("promtool not found: exposition not checked by promtool");
        return;
    };
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool: {out:?}\n{text}");
}

/// Every replica says who leads and since when — `/metrics` (promtool-clean), `/readyz` (a
/// follower is ready and says whom it follows), `status` (JSON and the human header) — and a
/// hand-over is counted in `lumierd_leader_changes_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_reports_who_leads_and_since_when() {
    let etcd = Etcd::start();
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet(d, 1);
    let url = etcd.url("ha/report");
    let (mut a, b) = leader_and_follower(d, &api, &url, "10s", &[]);
    let (admin_a, admin_b) = (
        a.stdout_line("admin API: ", Duration::from_secs(30)),
        b.stdout_line("admin API: ", Duration::from_secs(30)),
    );
    let metrics_b = eventually(Duration::from_secs(15), "b's metrics name a", || async {
        let (_, text) = get(&format!("{admin_b}/metrics")).await;
        match sample_of(&text, "lumierd_leader_info{leader=\"a\"}") {
            Some(_) => Ok(text),
            None => Err(text),
        }
    })
    .await;
    assert_eq!(
        sample_of(&metrics_b, "lumierd_leader{instance_id=\"b\"}"),
        Some(0.0)
    );
    let since = sample_of(&metrics_b, "lumierd_leader_since_timestamp_seconds").unwrap();
    assert!(since > now() - 120.0 && since <= now(), "{since}");
    let changes_before = sample_of(&metrics_b, "lumierd_leader_changes_total").unwrap();
    assert!(changes_before >= 1.0, "{metrics_b}");
    assert_eq!(sample_of(&metrics_b, "lumierd_status_stale"), Some(0.0));
    promtool_accepts(&metrics_b);
    let (_, metrics_a) = get(&format!("{admin_a}/metrics")).await;
    assert_eq!(
        sample_of(&metrics_a, "lumierd_leader{instance_id=\"a\"}"),
        Some(1.0)
    );

    let readyz = eventually(Duration::from_secs(15), "b is ready", || async {
        match get(&format!("{admin_b}/readyz")).await {
            (200, body) => Ok(body),
            other => Err(other),
        }
    })
    .await;
    assert!(readyz.starts_with("ready\nleader: a since 20"), "{readyz}");
    assert!(readyz.contains("this replica (b) follows"), "{readyz}");
    let (_, readyz_a) = get(&format!("{admin_a}/readyz")).await;
    assert!(
        readyz_a.contains("leader: a (this replica) since"),
        "{readyz_a}"
    );

    let v = tokio::task::block_in_place(|| daemon_status(d, "state-b"));
    assert_eq!(v["leader"]["instance"], "a", "{v}");
    assert_eq!(v["replica"]["instance"], "b", "{v}");
    assert_eq!(v["replica"]["leading"], false, "{v}");
    assert_eq!(v["stale"], false, "{v}");
    let human = tokio::task::block_in_place(|| lumierd(d, &["status", "--state", "state-b"]));
    assert!(human.stdout.starts_with("leader: a since 20"), "{human:?}");
    assert!(
        human.stdout.contains("this replica: b (following)"),
        "{human:?}"
    );

    // A hand-over: b leads, and counted it.
    a.signal("TERM");
    assert_eq!(a.exit(Duration::from_secs(15)), 0);
    eventually(
        Duration::from_secs(15),
        "b leads and counted it",
        || async {
            let (_, text) = get(&format!("{admin_b}/metrics")).await;
            let leads = sample_of(&text, "lumierd_leader{instance_id=\"b\"}") == Some(1.0);
            let changes = sample_of(&text, "lumierd_leader_changes_total").unwrap_or(0.0);
            if leads && changes > changes_before {
                Ok(())
            } else {
                Err(text)
            }
        },
    )
    .await;
    api.stop().await;
}

/// etcd stopped under a follower: its status (JSON, human, `/readyz`, `/metrics`) serves the
/// last view marked stale; etcd back: it clears. Nothing was deleted meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_serves_its_last_view_marked_stale_while_etcd_is_down() {
    let mut etcd = Etcd::start();
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet(d, 2);
    let url = etcd.url("ha/stale");
    let a = replica(d, &api, &url, "a", "3s");
    a.wait_for_line("this replica leads", Duration::from_secs(30));
    converged(&api, 2, Duration::from_secs(60)).await;
    let b = replica(d, &api, &url, "b", "3s");
    b.wait_for_line("leader: following", Duration::from_secs(30));
    let admin_b = b.stdout_line("admin API: ", Duration::from_secs(30));
    // b logs that it follows before its status socket is up: wait for its first answer.
    let fresh = tokio::task::block_in_place(|| {
        eventually_blocking(Duration::from_secs(30), "b serves its status", || {
            let out = lumierd(d, &["status", "--json", "--state", "state-b"]);
            match out.code {
                0 => serde_json::from_str::<Value>(out.stdout.trim()).map_err(|e| e.to_string()),
                _ => Err(format!("{out:?}")),
            }
        })
    });
    assert_eq!(fresh["stale"], false, "{fresh}");
    assert_eq!(fresh["resources"].as_array().unwrap().len(), 4, "{fresh}");

    tokio::task::block_in_place(|| etcd.stop());
    let stale = tokio::task::block_in_place(|| {
        eventually_blocking(Duration::from_secs(30), "b's status is stale", || {
            let v = daemon_status(d, "state-b");
            match v["stale"].as_bool() {
                Some(true) => Ok(v),
                _ => Err(v),
            }
        })
    });
    assert_eq!(
        stale["resources"], fresh["resources"],
        "the last view is served"
    );
    assert!(
        stale["staleSince"].as_str().unwrap().starts_with("20"),
        "{stale}"
    );
    assert!(
        stale["staleError"].as_str().unwrap().contains("etcd"),
        "{stale}"
    );
    let human = tokio::task::block_in_place(|| lumierd(d, &["status", "--state", "state-b"]));
    assert_eq!(human.code, 0, "{human:?}");
    assert!(
        human
            .stdout
            .contains("stale: the store cannot be read since"),
        "{human:?}"
    );
    assert!(
        human.stdout.contains("w1"),
        "the last view's table: {human:?}"
    );
    let (code, readyz) = get(&format!("{admin_b}/readyz")).await;
    assert_eq!(code, 200, "a follower serving status is ready: {readyz}");
    let (code, healthz) = get(&format!("{admin_b}/healthz")).await;
    assert_eq!(code, 200, "nor is it restarted for it: {healthz}");
    assert!(readyz.contains("stale: true since"), "{readyz}");
    let (_, metrics) = get(&format!("{admin_b}/metrics")).await;
    assert_eq!(sample_of(&metrics, "lumierd_status_stale"), Some(1.0));

    tokio::task::block_in_place(|| etcd.resume());
    tokio::task::block_in_place(|| {
        eventually_blocking(Duration::from_secs(30), "b's status is fresh again", || {
            let v = daemon_status(d, "state-b");
            match v["stale"].as_bool() {
                Some(false) => Ok(()),
                _ => Err(v),
            }
        })
    });
    // Nothing was deleted because a read failed.
    let deletes: Vec<_> = api
        .timed_log()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert!(deletes.is_empty(), "{deletes:?}");
    assert_eq!(api.namespaces().await.len(), 2);
    assert_eq!(api.scripts().await.len(), 2);
    let rows = tokio::task::block_in_place(|| status(d, &["--store", &url]));
    assert_eq!(rows.len(), 4, "{rows:?}");
    drop(a);
    drop(b);
    api.stop().await;
}

/// The revision of the whole etcd (any write, anywhere, raises it).
fn etcd_revision(gw: &Gateway) -> i64 {
    // Key "\0" with range_end "\0": every key.
    let out = gw
        .post(
            "/v3/kv/range",
            serde_json::json!({ "key": "AAA=", "range_end": "AA==", "count_only": true }),
        )
        .unwrap();
    out["header"]["revision"].as_str().unwrap().parse().unwrap()
}

/// `plan --store etcd://…` plans against the shared state (what the replicas recorded): it
/// lists only what an edit adds, takes no lease and writes nothing to etcd nor the provider,
/// while a replica leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reads_the_shared_state_and_never_writes_it() {
    let etcd = Etcd::start();
    let api = Api::start(Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet(d, 2);
    let url = etcd.url("ha/plan");
    let a = replica(d, &api, &url, "a", "10s");
    a.wait_for_line("this replica leads", Duration::from_secs(30));
    converged(&api, 2, Duration::from_secs(60)).await;
    let Location::Etcd(parsed) = Location::parse(&url).unwrap() else {
        unreachable!()
    };
    let gw = Gateway::connect(parsed).unwrap();
    let leader_before = gw.get(&gw.key(b"leader")).unwrap();
    tokio::task::block_in_place(|| {
        eventually_blocking(Duration::from_secs(30), "4 records Ready", || {
            let rows = status(d, &["--store", &url]);
            match rows.iter().filter(|(_, s)| s == "Ready").count() {
                4 => Ok(()),
                _ => Err(rows),
            }
        })
    });
    // Stop the leader, so that nothing else writes to etcd while plan runs.
    drop(a);
    fleet(d, 3);
    api.clear_log();
    let before = etcd_revision(&gw);
    let plan = tokio::task::block_in_place(|| {
        lumierd(
            d,
            &[
                "plan",
                "--manifests",
                "m",
                "--state",
                "p",
                "--store",
                &url,
                "--api-url",
                &api.base,
            ],
        )
    });
    assert_eq!(plan.code, 1, "changes pending: {plan:?}");
    let mut planned: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(' '))
        .collect();
    planned.sort();
    assert_eq!(
        planned,
        ["create ha/dev/kv2", "create ha/dev/w2"],
        "{plan:?}"
    );
    assert_eq!(etcd_revision(&gw), before, "plan wrote to etcd");
    assert_eq!(
        api.writes(),
        Vec::<String>::new(),
        "plan wrote to the provider"
    );
    assert!(leader_before.is_some());
    // A fresh prefix stays untouched too (no schema marker written).
    let empty = etcd.url("ha/never-used");
    let out = tokio::task::block_in_place(|| {
        lumierd(
            d,
            &[
                "plan",
                "--manifests",
                "m",
                "--state",
                "p",
                "--store",
                &empty,
                "--api-url",
                &api.base,
            ],
        )
    });
    // Nothing recorded there: the namespaces that exist are another installation's (refused).
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stdout.contains("refuse ha/dev/kv0"), "{out:?}");
    assert_eq!(etcd_revision(&gw), before, "plan wrote to a fresh prefix");
    api.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The shared outbox
// ---------------------------------------------------------------------------------------------

/// Two replicas pushing into one etcd outbox in turn: no entry overwrites another, push order
/// is kept, and an event both saw is queued once.
#[test]
fn two_replicas_push_to_one_outbox_without_losing_an_entry() {
    let etcd = Etcd::start();
    let Location::Etcd(url) = Location::parse(&etcd.url("ha/outbox")).unwrap() else {
        unreachable!()
    };
    let (a, b) = (
        Store::open_etcd(&url).unwrap(),
        Store::open_etcd(&url).unwrap(),
    );
    let mut pushed = Vec::new();
    for i in 0..4 {
        for (store, who) in [(&a, "a"), (&b, "b")] {
            let id = format!("{who}{i}");
            assert_eq!(
                store.outbox_push(&id, id.as_bytes()).unwrap(),
                Pushed::Queued { dropped: 0 }
            );
            pushed.push(id);
        }
    }
    assert_eq!(
        a.outbox_push("both", b"both").unwrap(),
        Pushed::Queued { dropped: 0 }
    );
    assert_eq!(b.outbox_push("both", b"both").unwrap(), Pushed::Duplicate);
    pushed.push("both".into());
    let mut queued = Vec::new();
    let mut after = None;
    while let Some((seq, bytes)) = b.outbox_next(after, |_| true).unwrap() {
        queued.push(String::from_utf8(bytes).unwrap());
        after = Some(seq);
    }
    assert_eq!(queued, pushed);
    assert_eq!(a.outbox_len().unwrap(), pushed.len());
}

/// Replicas with the same `--notify` share the outbox and only the leader POSTs: while the
/// receiver fails and then recovers, every delivery comes from the leader (its instance id in
/// the User-Agent); after a hand-over the new leader delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_delivers_the_shared_outbox() {
    let etcd = Etcd::start();
    let api = Api::start(Faults::default()).await;
    let hook = crate::notify::Receiver::start().await;
    hook.with(|s| s.down = true);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fleet(d, 1);
    let url = etcd.url("ha/deliver");
    let notify = ["--notify", hook.url.as_str()];
    let (mut a, b) = leader_and_follower(d, &api, &url, "10s", &notify);
    // Both replicas see a manifest load fail (one more event in the shared outbox).
    for r in [&a, &b] {
        r.wait_for_line("watching the manifests folder", Duration::from_secs(30));
    }
    std::fs::write(d.join("m/broken.yaml"), "app: [\n").unwrap();
    b.wait_for_line("manifests not loaded", Duration::from_secs(30));
    eventually(Duration::from_secs(30), "POSTs refused", || async {
        match hook.with(|s| s.refused) {
            n if n >= 3 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    hook.with(|s| s.down = false);
    for kind in ["leader_changed", "load_failed"] {
        hook.accepted(kind, 30).await;
    }
    let deliveries = hook.deliveries();
    for (body, agent) in &deliveries {
        assert!(agent.ends_with("(instance a)"), "{agent}: {body}");
    }
    // Hand-over: b leads and delivers what comes next.
    let mark = b.mark();
    a.signal("TERM");
    assert_eq!(a.exit(Duration::from_secs(15)), 0);
    b.wait_for_line_since(mark, "this replica leads", Duration::from_secs(10));
    eventually(
        Duration::from_secs(30),
        "b delivers its leader_changed",
        || async {
            let by_b: Vec<_> = hook
                .deliveries()
                .into_iter()
                .filter(|(body, agent)| {
                    agent.ends_with("(instance b)")
                        && body["text"]
                            .as_str()
                            .is_some_and(|t| t.contains("now led by b"))
                })
                .collect();
            match by_b.len() {
                1 => Ok(()),
                _ => Err(hook.deliveries()),
            }
        },
    )
    .await;
    hook.stop().await;
    api.stop().await;
}
