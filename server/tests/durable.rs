//! Durable mode (`--data-dir`) with real processes: `kill -9` at random moments under
//! concurrent load, restarts on the same directory, and damaged or foreign directories.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::{binary, Client, Server, TempDir, TOKEN};

/// A small deterministic generator, so a failing run can be repeated from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    std::env::var("WORKLEASE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_nanos() as u64
                | 1
        })
}

/// `kill -9` the server's process, then reap it.
fn kill_9(server: Server) {
    let status = Command::new("kill")
        .args(["-9", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -9 failed");
    drop(server);
}

/// What the client knows about one item: the item as its last 2xx showed it.
#[derive(Debug, Clone)]
struct Known {
    id: String,
    /// The item object of the last 2xx that returned one (create, poll, ack, stop, metadata).
    item: Value,
    /// The token of the last 2xx heartbeat, when that was the last 2xx on this item.
    beat: Option<Value>,
    /// A poll delivered it (it stays `queued` until acknowledged).
    delivered: bool,
    /// A request on it was sent but never answered (the server died): it may or may not have
    /// been applied.
    pending: bool,
}

/// One client thread's environment and items (threads never share items).
#[derive(Debug, Clone)]
struct Lane {
    environment: String,
    items: Vec<Known>,
    created: u64,
}

fn work(lane: &Lane, rest: &str) -> String {
    format!("/v1/environments/{}/work{rest}", lane.environment)
}

/// Fields a 2xx item object and a later GET must agree on.
const FIELDS: [&str; 10] = [
    "id",
    "state",
    "lease_epoch",
    "metadata",
    "created_at",
    "acknowledged_at",
    "started_at",
    "latest_heartbeat_at",
    "stop_requested_at",
    "stopped_at",
];

/// Runs one lane until `stop` or until the server stops answering. Panics on an answer the
/// model says is wrong.
fn drive(client: &Client, lane: &mut Lane, rng: &mut Rng, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let live: Vec<usize> = (0..lane.items.len())
            .filter(|&i| lane.items[i].item["state"] != "stopped")
            .collect();
        if live.len() < 3 || rng.below(6) == 0 {
            lane.created += 1;
            let n = lane.created;
            let body = json!({
                "data": {"type": "session", "id": format!("sess_{n}")},
                "metadata": {"n": n.to_string()},
            });
            let Some((status, item)) = client.call("POST", &work(lane, ""), Some(&body)) else {
                return;
            };
            assert_eq!(status, 200, "create: {item}");
            lane.items.push(Known {
                id: item["id"].as_str().expect("an id").to_owned(),
                item,
                beat: None,
                delivered: false,
                pending: false,
            });
            continue;
        }
        let index = live[rng.below(live.len() as u64) as usize];
        let known = lane.items[index].clone();
        let id = known.id.as_str();
        let state = known.item["state"].as_str().unwrap_or_default().to_owned();
        lane.items[index].pending = true;
        let reply = match state.as_str() {
            "queued" if known.delivered => {
                client.call("POST", &work(lane, &format!("/{id}/ack")), None)
            }
            "queued" => {
                // Delivers this lane's oldest queued item, which may be another one.
                let Some((status, item)) = client.call("GET", &work(lane, "/poll"), None) else {
                    return;
                };
                lane.items[index].pending = false;
                assert_eq!(status, 200, "poll: {item}");
                if let Some(delivered) = item["id"].as_str() {
                    let delivered = delivered.to_owned();
                    match lane.items.iter_mut().find(|k| k.id == delivered) {
                        Some(other) => {
                            other.item = item;
                            other.beat = None;
                            other.delivered = true;
                        }
                        // Created by a request whose answer the kill lost: it was applied.
                        None => lane.items.push(Known {
                            id: delivered,
                            item,
                            beat: None,
                            delivered: true,
                            pending: false,
                        }),
                    }
                }
                continue;
            }
            "starting" | "active" => match rng.below(10) {
                0..=5 => {
                    let expected = known
                        .beat
                        .clone()
                        .unwrap_or_else(|| known.item["latest_heartbeat_at"].clone());
                    let expected = expected.as_str().unwrap_or("NO_HEARTBEAT").to_owned();
                    let Some((status, beat)) = client.call(
                        "POST",
                        &work(
                            lane,
                            &format!("/{id}/heartbeat?expected_last_heartbeat={expected}"),
                        ),
                        None,
                    ) else {
                        return;
                    };
                    assert_eq!(status, 200, "heartbeat {id}: {beat}");
                    let known = &mut lane.items[index];
                    known.pending = false;
                    known.item["state"] = beat["state"].clone();
                    known.item["lease_epoch"] = beat["lease_epoch"].clone();
                    known.beat = Some(beat["last_heartbeat"].clone());
                    continue;
                }
                6 | 7 => client.call(
                    "POST",
                    &work(lane, &format!("/{id}")),
                    Some(&json!({"metadata": {"m": rng.next().to_string()}})),
                ),
                8 => client.call("POST", &work(lane, &format!("/{id}/stop")), None),
                _ => client.call(
                    "POST",
                    &work(lane, &format!("/{id}/stop")),
                    Some(&json!({"force": true})),
                ),
            },
            _ => client.call(
                "POST",
                &work(lane, &format!("/{id}/stop")),
                Some(&json!({"force": true})),
            ),
        };
        let Some((status, item)) = reply else { return };
        assert_eq!(status, 200, "{state} {id}: {item}");
        let known = &mut lane.items[index];
        known.pending = false;
        known.item = item;
        known.beat = None;
        known.delivered = false;
    }
}

/// Checks every item of `lane` against what its last 2xx said, then learns the item as the
/// restarted server shows it (for the items a lost request may have changed).
fn verify(client: &Client, lane: &mut Lane, round: usize) {
    for known in &mut lane.items {
        let path = format!("/v1/environments/{}/work/{}", lane.environment, known.id);
        let (status, now) = client.call("GET", &path, None).expect("the server answers");
        assert_eq!(status, 200, "round {round}: {} is gone: {now}", known.id);
        if known.pending {
            let before = known.item["lease_epoch"].as_u64().unwrap_or(0);
            let after = now["lease_epoch"].as_u64().unwrap_or(0);
            assert!(after >= before, "round {round}: {} lost an epoch", known.id);
        } else if let Some(token) = &known.beat {
            for field in ["state", "lease_epoch", "metadata"] {
                assert_eq!(
                    now[field], known.item[field],
                    "round {round}: {field} of {now}"
                );
            }
            assert_eq!(&now["latest_heartbeat_at"], token, "round {round}: {now}");
            // The last acknowledged token still holds the lease.
            let (status, beat) = client
                .call(
                    "POST",
                    &format!(
                        "{path}/heartbeat?expected_last_heartbeat={}",
                        token.as_str().expect("a token")
                    ),
                    None,
                )
                .expect("the server answers");
            assert_eq!(status, 200, "round {round}: the token of {path}: {beat}");
            known.beat = Some(beat["last_heartbeat"].clone());
            known.pending = false;
            let (_, again) = client.call("GET", &path, None).expect("answers");
            known.item = again;
            continue;
        } else {
            for field in FIELDS {
                assert_eq!(
                    now[field], known.item[field],
                    "round {round}: {field} of {}: was {}, now {now}",
                    known.id, known.item
                );
            }
        }
        known.item = now;
        known.pending = false;
        known.beat = None;
    }
}

fn start(data: &str) -> Server {
    // A small snapshot interval and small log segments, so kills also land around snapshots,
    // log purges, new segments and deleted ones; leases long enough that none lapses during
    // the test, however slow the machine (the model has no clock).
    Server::start(&[
        "--data-dir",
        data,
        "--snapshot-every",
        "40",
        "--log-segment-kib",
        "64",
        "--default-ttl-seconds",
        "600",
    ])
}

#[test]
fn every_acknowledged_write_survives_kill_9_and_restart() {
    const ROUNDS: usize = 24;
    const LANES: usize = 4;
    let seed = seed();
    println!("seed {seed} (repeat with WORKLEASE_TEST_SEED={seed})");
    let mut rng = Rng(seed);
    let dir = TempDir::new("crash");
    let data = dir.data();

    let mut server = start(&data);
    let mut lanes: Vec<Lane> = (0..LANES)
        .map(|_| Lane {
            environment: server.environment("self_hosted"),
            items: Vec::new(),
            created: 0,
        })
        .collect();
    let mut term = 0;
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = lanes
            .drain(..)
            .map(|mut lane| {
                let client = Client::new(&server.base);
                let stop = stop.clone();
                let mut rng = Rng(rng.next() | 1);
                std::thread::spawn(move || {
                    drive(&client, &mut lane, &mut rng, &stop);
                    lane
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + rng.below(300)));
        kill_9(server);
        stop.store(true, Ordering::Relaxed);
        lanes = threads
            .into_iter()
            .map(|t| t.join().expect("a lane's answers match its model"))
            .collect();

        server = start(&data);
        let client = Client::new(&server.base);
        let (status, cluster) = client.call("GET", "/cluster", None).expect("answers");
        assert_eq!(status, 200);
        assert_eq!(cluster["role"], "leader", "{cluster}");
        let now = cluster["term"].as_u64().expect("a term");
        assert!(now >= term, "round {round}: the term went back: {cluster}");
        term = now;
        for lane in &mut lanes {
            verify(&client, lane, round);
        }
    }
    let items: usize = lanes.iter().map(|lane| lane.items.len()).sum();
    println!("{ROUNDS} kills, {items} items checked after each");
    assert!(items > 0);
}

#[test]
fn a_restart_answers_as_if_the_server_never_stopped() {
    let dir = TempDir::new("restart");
    let data = dir.data();
    let server = start(&data);
    let environment = server.environment("self_hosted");
    let mut ids = Vec::new();
    for n in 0..100 {
        ids.push(server.work(&environment));
        if n % 10 == 0 {
            let polled = server.get(&format!("/v1/environments/{environment}/work/poll"));
            assert_eq!(polled.status, 200);
        }
    }
    let list = |server: &Server| {
        server
            .get(&format!("/v1/environments/{environment}/work?limit=100"))
            .json
    };
    let before = list(&server);
    let stats = server
        .get(&format!("/v1/environments/{environment}/work/stats"))
        .json;
    // A clean stop (SIGTERM) and a restart.
    let status = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let mut server = server;
    assert!(server.wait_exit(Duration::from_secs(20)).is_some());
    drop(server);
    let server = start(&data);
    assert_eq!(list(&server), before);
    assert_eq!(
        server
            .get(&format!("/v1/environments/{environment}/work/stats"))
            .json,
        stats
    );
    // Ids minted after the restart still sort after the ones before it.
    let newer = server.work(&environment);
    assert!(ids.iter().all(|id| *id < newer));
    let cluster = server.get("/cluster").json;
    assert_eq!(cluster["role"], "leader");
    assert!(cluster["last_applied_index"].as_u64().unwrap_or(0) > 100);
}

/// Starts the server on `data` and expects it to refuse, naming `file`. A server that serves
/// instead is killed after a while and fails the test (rather than hanging it). Returns what
/// it printed on stderr.
fn refuses(data: &str, file: &str) -> String {
    let mut child = Command::new(binary())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--data-dir",
            data,
        ])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let started = std::time::Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("served from a damaged {file}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "served from a damaged {file}");
    assert!(stderr.contains(file), "{file} is not named: {stderr}");
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("listening"),
        "served from a damaged {file}"
    );
    stderr.into_owned()
}

/// A data directory with some history, copied fresh for each kind of damage.
fn populated(dir: &TempDir) -> PathBuf {
    let data = dir.data();
    let server = Server::start(&["--data-dir", &data, "--snapshot-every", "15"]);
    let environment = server.environment("self_hosted");
    for _ in 0..40 {
        server.work(&environment);
    }
    drop(server);
    PathBuf::from(data)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// The log's first segment file (the server's `raft::wal`).
const LOG_SEGMENT: &str = "raft-0000000001.wal";

/// A file of the data directory, what is done to it, and how.
type Damage = (&'static str, &'static str, fn(&mut Vec<u8>));

#[test]
fn a_damaged_or_foreign_data_directory_is_refused_naming_the_file() {
    let dir = TempDir::new("damaged");
    let good = populated(&dir);
    let damage: [Damage; 6] = [
        ("snapshot.wls", "truncated", |b| b.truncate(b.len() / 2)),
        ("snapshot.wls", "flipped", |b| {
            let at = b.len() - 3;
            b[at] ^= 0x40;
        }),
        ("snapshot.wls", "foreign", |b| {
            b[..4].copy_from_slice(b"JUNK");
        }),
        (LOG_SEGMENT, "truncated", |b| b.truncate(b.len() / 3)),
        // The first frame's body checksum: later frames still check, so this is damage, not
        // a write torn by a crash.
        (LOG_SEGMENT, "flipped", |b| b[36] ^= 0x01),
        (LOG_SEGMENT, "foreign", |b| {
            b.clear();
            b.extend_from_slice(b"this is not a database, just some text\n");
        }),
    ];
    for (n, (file, how, damage)) in damage.into_iter().enumerate() {
        let copy = dir.0.join(format!("copy-{n}"));
        copy_dir(&good, &copy);
        let path = copy.join(file);
        let mut bytes = std::fs::read(&path).expect("readable");
        damage(&mut bytes);
        std::fs::write(&path, &bytes).expect("writable");
        println!("{file} {how}");
        refuses(&copy.display().to_string(), file);
    }
    // A missing file is damage too.
    for file in ["snapshot.wls", LOG_SEGMENT] {
        let copy = dir.0.join(format!("missing-{file}"));
        copy_dir(&good, &copy);
        std::fs::remove_file(copy.join(file)).expect("removable");
        refuses(&copy.display().to_string(), file);
    }
    // A log in the format of an earlier build (redb) is named, not silently ignored.
    let copy = dir.0.join("earlier-format");
    copy_dir(&good, &copy);
    std::fs::write(copy.join("raft.redb"), b"redb").expect("writable");
    refuses(&copy.display().to_string(), "raft.redb");
    // The undamaged directory still serves.
    let server = Server::start(&["--data-dir", &good.display().to_string()]);
    assert_eq!(server.get("/cluster").json["role"], "leader");
}

#[test]
fn a_second_server_on_a_held_data_directory_refuses_and_the_first_loses_nothing() {
    let dir = TempDir::new("locked");
    let data = dir.data();
    let first = start(&data);
    let environment = first.environment("self_hosted");
    let before: Vec<String> = (0..10).map(|_| first.work(&environment)).collect();

    // Refused, naming the directory (which `refuses` checks) and the holder.
    let stderr = refuses(&data, &data);
    assert!(
        stderr.contains(&format!("process {}", first.pid())),
        "the holder is not named: {stderr}"
    );

    // The first serves on, and after a restart everything it acknowledged is there.
    let after: Vec<String> = (0..10).map(|_| first.work(&environment)).collect();
    kill_9(first);
    let server = start(&data);
    let listed = server.get(&format!("/v1/environments/{environment}/work?limit=100"));
    assert_eq!(listed.status, 200, "{}", listed.text);
    let held: Vec<&str> = listed.json["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|item| item["id"].as_str())
        .collect();
    for id in before.iter().chain(&after) {
        assert!(held.contains(&id.as_str()), "{id} was lost");
    }
}

#[test]
fn empty_and_idle_long_polls_write_nothing_to_the_log() {
    let dir = TempDir::new("idle-polls");
    let server = Server::start(&["--data-dir", &dir.data()]);
    let environment = server.environment("self_hosted");
    let cluster = |field: &str| {
        let status = server.get("/cluster");
        status.json[field]
            .as_u64()
            .unwrap_or_else(|| panic!("no {field}: {}", status.text))
    };
    let applied = || cluster("last_applied_index");
    let syncs = || cluster("log_syncs");
    let (before, synced) = (applied(), syncs());
    let workers = support::poll_idly(&[&server], &environment, 1000, 4, IDLE);
    assert_eq!(applied(), before, "empty polls were logged");
    assert_eq!(syncs(), synced, "empty polls synced the log");
    // Which workers poll is still counted (by the server, not the log).
    let stats = server.get(&format!("/v1/environments/{environment}/work/stats"));
    assert_eq!(stats.json["workers_polling"], workers, "{}", stats.text);
    // A poll that delivers is still a command: create, poll, ack, heartbeat; and the first
    // delivery also logs the key item secrets are signed with (once).
    server.work(&environment);
    server.claim(&environment, "w1");
    assert_eq!(applied(), before + 5);
    // Each of those is written and synced before it is answered (so the count above could
    // have seen a sync).
    assert!(syncs() > synced, "a write was answered without a log sync");
    // The metric is the same count.
    let metrics = server.get("/metrics").text;
    let counted = metrics
        .lines()
        .find_map(|line| line.strip_prefix("worklease_log_syncs_total "))
        .and_then(|value| value.parse::<u64>().ok());
    assert_eq!(counted, Some(syncs()), "{metrics}");
}

/// A poll hands out an item and nobody acknowledges it: the item waits, claimable again once
/// its reclaim window (5 s by default) ends. Only a poll acts on that, so nothing is logged
/// meanwhile: the window's end is no sweeper wake-up, so no empty sweep is written (a sweeper
/// that woke for it would find it still past after every sweep, and write one a second).
#[test]
fn a_delivered_item_nobody_acknowledges_writes_nothing_while_it_waits() {
    let dir = TempDir::new("unacked");
    let server = Server::start(&["--data-dir", &dir.data()]);
    let environment = server.environment("self_hosted");
    let work = server.work(&environment);
    let polled = server.get_with(
        &format!("/v1/environments/{environment}/work/poll"),
        &[("Worker-ID", "w1")],
    );
    assert_eq!(polled.json["id"], work.as_str(), "{}", polled.text);
    let cluster = || server.get("/cluster").json;
    let before = cluster();
    // Past the default reclaim window, and then some seconds of the sweeper's 1-s pace.
    std::thread::sleep(Duration::from_secs(8));
    let after = cluster();
    assert_eq!(
        after["last_applied_index"], before["last_applied_index"],
        "the log grew while a delivered item waited: {before} → {after}"
    );
    assert_eq!(
        after["log_syncs"], before["log_syncs"],
        "{before} → {after}"
    );
    // The item is still there to claim again, by a poll.
    let again = server.get_with(
        &format!("/v1/environments/{environment}/work/poll"),
        &[("Worker-ID", "w2")],
    );
    assert_eq!(again.json["id"], work.as_str(), "{}", again.text);
}

/// How long idle workers long-poll in the tests that count log entries.
const IDLE: Duration = Duration::from_secs(12);
