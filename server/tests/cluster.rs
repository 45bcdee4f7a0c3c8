//! Replicated mode (docs/contract.md §8) with three real processes on loopback: `kill -9` the leader and
//! lose no lease; an in-flight heartbeat's ambiguous outcome; a wiped follower catching up
//! from a snapshot.
//!
//! `WORKLEASE_FAILOVERS=N` sets the number of leader kills in the failover test (default 3);
//! the README's failover time is the median of
//! `WORKLEASE_FAILOVERS=10 cargo test --release -p worklease-server --test cluster -- --nocapture failover`.

mod support;

use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{Client, Server, TempDir, TOKEN};

/// Three members on loopback; a member is `None` while it is down.
struct Cluster {
    dir: TempDir,
    ports: Vec<u16>,
    nodes: Vec<Option<Server>>,
    /// Flags every member gets, then flags per member.
    extra: Vec<String>,
    own: Vec<Vec<String>>,
}

impl Cluster {
    fn start(name: &str, extra: &[&str]) -> Self {
        Self::start_with(name, extra, &[&[], &[], &[]])
    }

    fn start_with(name: &str, extra: &[&str], own: &[&[&str]; 3]) -> Self {
        let ports = (0..3)
            .map(|_| {
                TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port()
            })
            .collect();
        let mut cluster = Self {
            dir: TempDir::new(name),
            ports,
            nodes: vec![None, None, None],
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            own: own
                .iter()
                .map(|flags| flags.iter().map(|s| (*s).to_owned()).collect())
                .collect(),
        };
        for n in 1..=3 {
            cluster.launch(n);
        }
        cluster
    }

    fn data_dir(&self, n: usize) -> std::path::PathBuf {
        self.dir.0.join(format!("node{n}"))
    }

    fn launch(&mut self, n: usize) {
        let peers = (1..=3)
            .map(|m| format!("{m}=127.0.0.1:{}", self.ports[m - 1]))
            .collect::<Vec<_>>()
            .join(",");
        let listen = format!("127.0.0.1:{}", self.ports[n - 1]);
        let dir = self.data_dir(n).display().to_string();
        let id = n.to_string();
        let mut args = vec![
            "--listen",
            &listen,
            "--token",
            TOKEN,
            "--data-dir",
            &dir,
            "--node-id",
            &id,
            "--peers",
            &peers,
        ];
        args.extend(self.extra.iter().map(String::as_str));
        args.extend(self.own[n - 1].iter().map(String::as_str));
        self.nodes[n - 1] = Some(Server::start_raw(&args, &[]));
    }

    fn node(&self, n: usize) -> &Server {
        self.nodes[n - 1].as_ref().expect("the node runs")
    }

    fn alive(&self) -> Vec<usize> {
        (1..=3).filter(|n| self.nodes[n - 1].is_some()).collect()
    }

    /// `GET /cluster` of node `n`.
    fn status(&self, n: usize) -> Option<Value> {
        Client::new(&self.node(n).base)
            .call("GET", "/cluster", None)
            .map(|(_, body)| body)
    }

    /// Waits until a live node says it leads; returns its id.
    fn wait_for_leader(&self, limit: Duration) -> usize {
        let started = Instant::now();
        while started.elapsed() < limit {
            for n in self.alive() {
                if self.status(n).is_some_and(|s| s["role"] == "leader") {
                    return n;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no leader within {limit:?}; logs:\n{}", self.logs());
    }

    fn kill_9(&mut self, n: usize) {
        let server = self.nodes[n - 1].take().expect("the node runs");
        let status = Command::new("kill")
            .args(["-9", &server.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        drop(server);
    }

    /// `GET /internal/digest` of node `n`: its applied index and its table's digest.
    fn digest(&self, n: usize) -> (u64, String) {
        let reply = self.node(n).get("/internal/digest");
        assert_eq!(reply.status, 200, "{}", reply.text);
        (
            reply.json["last_applied_index"].as_u64().expect("an index"),
            reply.json["digest"].as_str().expect("a digest").to_owned(),
        )
    }

    /// Waits until every live node applied the same index and holds a byte-identical table.
    fn wait_converged(&self, limit: Duration) -> String {
        let started = Instant::now();
        loop {
            let digests: Vec<_> = self.alive().iter().map(|n| self.digest(*n)).collect();
            if digests.windows(2).all(|w| w[0] == w[1]) {
                let logs = self.logs();
                assert!(!logs.contains("panicked"), "a member panicked:\n{logs}");
                return digests[0].1.clone();
            }
            assert!(
                started.elapsed() < limit,
                "replicas differ after {limit:?}: {digests:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logs(&self) -> String {
        (1..=3)
            .filter_map(|n| {
                self.nodes[n - 1]
                    .as_ref()
                    .map(|s| format!("--- node {n}\n{}", s.stderr.lock()))
            })
            .collect()
    }
}

fn heartbeat_path(environment: &str, work: &str, token: &str) -> String {
    format!("/v1/environments/{environment}/work/{work}/heartbeat?expected_last_heartbeat={token}")
}

/// Heartbeats `work` at `base` in a loop, each echoing the last token, until a call gets no
/// answer or `stop` is set. Returns the last token a 2xx gave and whether the last call went
/// unanswered (in flight when its node died).
fn hammer(
    base: &str,
    environment: &str,
    work: &str,
    token: String,
    stop: &AtomicBool,
) -> (String, bool) {
    let client = Client::new(base);
    let mut token = token;
    while !stop.load(Ordering::Relaxed) {
        match client.call("POST", &heartbeat_path(environment, work, &token), None) {
            Some((200, body)) => {
                token = body["last_heartbeat"].as_str().expect("a token").to_owned();
            }
            Some((status, body)) => panic!("a heartbeat at the leader answered {status}: {body}"),
            None => return (token, true),
        }
    }
    (token, false)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[test]
fn failover_keeps_every_lease_and_an_ambiguous_heartbeat_resolves() {
    let rounds: usize = std::env::var("WORKLEASE_FAILOVERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let mut cluster = Cluster::start("failover", &["--default-ttl-seconds", "60"]);
    let mut leader = cluster.wait_for_leader(Duration::from_secs(20));
    let follower = if leader == 1 { 2 } else { 1 };

    // 50 leases held through a follower, plus one item the hammer renews at the leader.
    let via = cluster.node(follower);
    let environment = via.environment("self_hosted");
    let mut leases: Vec<(String, String)> = Vec::new();
    for _ in 0..51 {
        via.work(&environment);
    }
    for n in 0..51 {
        leases.push(via.claim(&environment, &format!("worker-{n}")));
    }
    let (hammered, mut hammer_token) = leases.pop().expect("51 leases");
    let mut times = Vec::new();

    for round in 0..rounds {
        cluster.wait_converged(Duration::from_secs(20));
        let survivors: Vec<usize> = (1..=3).filter(|n| *n != leader).collect();
        let before: Vec<Value> = leases
            .iter()
            .map(|(work, _)| {
                let reply = cluster
                    .node(survivors[0])
                    .get(&format!("/v1/environments/{environment}/work/{work}"));
                assert_eq!(reply.status, 200, "{}", reply.text);
                reply.json
            })
            .collect();

        // A heartbeat in flight when the leader dies.
        let stop = Arc::new(AtomicBool::new(false));
        let hammer_thread = {
            let (base, environment, work, token, stop) = (
                cluster.node(leader).base.clone(),
                environment.clone(),
                hammered.clone(),
                hammer_token.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || hammer(&base, &environment, &work, token, &stop))
        };
        std::thread::sleep(Duration::from_millis(200));
        let killed_at = Instant::now();
        cluster.kill_9(leader);
        let new_leader = cluster.wait_for_leader(Duration::from_secs(20));
        let took = killed_at.elapsed().as_secs_f64();
        times.push(took);
        println!("round {round}: node {leader} killed, node {new_leader} leads after {took:.3} s");
        stop.store(true, Ordering::Relaxed);
        let (previous, in_flight) = hammer_thread.join().expect("the hammer thread");
        let epoch_before = cluster
            .node(new_leader)
            .get(&format!("/v1/environments/{environment}/work/{hammered}"))
            .json["lease_epoch"]
            .clone();

        // The client's rule: retry with the token of the last 2xx.
        let retry = cluster.node(survivors[1]).post(
            &heartbeat_path(&environment, &hammered, &previous),
            &json!({}),
        );
        println!(
            "round {round}: the retry with the previous token answered {} (a heartbeat was {}in flight)",
            retry.status,
            if in_flight { "" } else { "not " }
        );
        match retry.status {
            200 => {
                hammer_token = retry.json["last_heartbeat"]
                    .as_str()
                    .expect("a token")
                    .to_owned();
                assert!(hammer_token > previous, "{}", retry.text);
            }
            412 => {
                assert!(
                    in_flight,
                    "a 412 with no heartbeat in flight: {}",
                    retry.text
                );
                let current = &retry.json["error"]["details"]["current_state"];
                let held = current["last_heartbeat"].as_str().expect("the held token");
                assert!(held > previous.as_str(), "{}", retry.text);
                assert_eq!(current["lease_epoch"], epoch_before, "{}", retry.text);
                assert_eq!(current["state"], "active", "{}", retry.text);
                hammer_token = held.to_owned();
            }
            other => panic!("a retry answered {other}: {}", retry.text),
        }

        // Every lease as it was: state, token, epoch, every field.
        for ((work, _), before) in leases.iter().zip(&before) {
            let after = cluster
                .node(survivors[round % 2])
                .get(&format!("/v1/environments/{environment}/work/{work}"));
            assert_eq!(
                &after.json, before,
                "item {work} changed across the failover"
            );
        }
        // And the old tokens renew through any survivor.
        for (n, (work, token)) in leases.iter_mut().enumerate() {
            let reply = cluster
                .node(survivors[n % 2])
                .post(&heartbeat_path(&environment, work, token), &json!({}));
            assert_eq!(reply.status, 200, "{}", reply.text);
            *token = reply.json["last_heartbeat"]
                .as_str()
                .expect("a token")
                .to_owned();
        }

        cluster.launch(leader);
        leader = new_leader;
    }
    cluster.wait_converged(Duration::from_secs(20));
    println!(
        "failover: median {:.3} s over {rounds} kills ({times:?})",
        median(&mut times)
    );
}

#[test]
fn a_wiped_follower_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::start("catch-up", &["--snapshot-every", "8"]);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    // A follower that is not node 1 (which would initialize a new cluster on an empty
    // directory: the README says to wipe only other members).
    let wiped = (2..=3).find(|n| *n != leader).expect("a follower");
    let environment = cluster.node(leader).environment("self_hosted");
    for _ in 0..40 {
        cluster.node(leader).work(&environment);
    }
    cluster.wait_converged(Duration::from_secs(20));
    cluster.kill_9(wiped);
    std::fs::remove_dir_all(cluster.data_dir(wiped)).expect("wipes the directory");
    for _ in 0..40 {
        cluster.node(leader).work(&environment);
    }
    cluster.launch(wiped);
    let digest = cluster.wait_converged(Duration::from_secs(30));
    assert!(
        cluster
            .node(wiped)
            .logged("snapshot installed from the leader"),
        "the wiped node did not install a snapshot:\n{}",
        cluster.logs()
    );
    // Reads through it still answer (forwarded to the leader), and it holds the same table.
    let listed = cluster
        .node(wiped)
        .get(&format!("/v1/environments/{environment}/work?limit=100"));
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json["data"].as_array().map(Vec::len), Some(80));
    assert_eq!(cluster.digest(wiped).1, digest);
}

#[test]
fn a_member_with_another_table_configuration_is_refused() {
    // Node 3's flags name another default TTL: applying the same commands under it would make
    // its table drift from the others', so the others refuse its messages and it theirs.
    let cluster = Cluster::start_with("config", &[], &[&[], &[], &["--default-ttl-seconds", "30"]]);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    assert_ne!(leader, 3, "the odd member was elected");
    let environment = cluster.node(leader).environment("self_hosted");
    cluster.node(leader).work(&environment);
    assert!(
        cluster.node(3).logged("table configuration")
            || cluster.node(leader).logged("table configuration"),
        "nobody logged the mismatch:\n{}",
        cluster.logs()
    );
    let (index, _) = cluster.digest(3);
    let (leader_index, _) = cluster.digest(leader);
    assert!(index < leader_index, "node 3 applied the others' log");
}

/// Flags for a member that serves `issued` (from `ca`) and trusts `ca`, with its files in `dir`.
fn tls_flags(
    dir: &std::path::Path,
    issued: &support::tls::Issued,
    ca: &support::tls::Ca,
) -> Vec<String> {
    support::tls::Files::write_with_ca(dir, issued, ca).args()
}

#[test]
fn a_tls_cluster_elects_fails_over_and_catches_a_wiped_member_up_over_https() {
    let certificates = TempDir::new("tls-cluster-certificates");
    let ca = support::tls::test_ca();
    let flags = tls_flags(&certificates.0, &ca.issue(1), ca);
    let mut extra: Vec<&str> = flags.iter().map(String::as_str).collect();
    extra.extend(["--snapshot-every", "8"]);
    let mut cluster = Cluster::start("tls-cluster", &extra);
    for n in 1..=3 {
        assert!(cluster.node(n).base.starts_with("https://"));
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let follower = if leader == 1 { 2 } else { 1 };

    // Leases taken through a follower: forwarded to the leader over HTTPS.
    let via = cluster.node(follower);
    let environment = via.environment("self_hosted");
    let mut leases: Vec<(String, String)> = Vec::new();
    for n in 0..5 {
        via.work(&environment);
        leases.push(via.claim(&environment, &format!("worker-{n}")));
    }
    cluster.wait_converged(Duration::from_secs(20));

    // kill -9 the leader: another member leads and every lease renews through the survivors.
    cluster.kill_9(leader);
    let new_leader = cluster.wait_for_leader(Duration::from_secs(20));
    let survivors: Vec<usize> = (1..=3).filter(|n| *n != leader).collect();
    for (n, (work, token)) in leases.iter_mut().enumerate() {
        let reply = cluster
            .node(survivors[n % 2])
            .post(&heartbeat_path(&environment, work, token), &json!({}));
        assert_eq!(reply.status, 200, "{}", reply.text);
        *token = reply.json["last_heartbeat"]
            .as_str()
            .expect("a token")
            .to_owned();
    }
    cluster.launch(leader);
    cluster.wait_converged(Duration::from_secs(20));

    // A wiped member (not node 1, not the leader) catches up from a snapshot.
    let wiped = (2..=3).find(|n| *n != new_leader).expect("a follower");
    cluster.kill_9(wiped);
    std::fs::remove_dir_all(cluster.data_dir(wiped)).expect("wipes the directory");
    for _ in 0..20 {
        cluster.node(new_leader).work(&environment);
    }
    cluster.launch(wiped);
    let digest = cluster.wait_converged(Duration::from_secs(30));
    assert!(
        cluster
            .node(wiped)
            .logged("snapshot installed from the leader"),
        "the wiped node did not install a snapshot:\n{}",
        cluster.logs()
    );
    assert_eq!(cluster.digest(wiped).1, digest);
    let listed = cluster
        .node(wiped)
        .get(&format!("/v1/environments/{environment}/work?limit=100"));
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json["data"].as_array().map(Vec::len), Some(25));
}

#[test]
fn a_member_with_a_certificate_from_another_ca_cannot_join() {
    let certificates = TempDir::new("tls-foreign-certificates");
    let ca = support::tls::test_ca();
    let ours = tls_flags(&certificates.0.join("ours"), &ca.issue(1), ca);
    let stranger = support::tls::Ca::new("another cluster's CA");
    let theirs = tls_flags(
        &certificates.0.join("theirs"),
        &stranger.issue(1),
        &stranger,
    );
    let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
    let theirs: Vec<&str> = theirs.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with("tls-foreign", &[], &[&ours, &ours, &theirs]);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    assert_ne!(leader, 3, "the foreign member was elected");
    let environment = cluster.node(leader).environment("self_hosted");
    cluster.node(leader).work(&environment);
    // The two members of our CA serve; each side says why the other is refused.
    assert!(
        cluster
            .node(leader)
            .logged("cannot reach a member over TLS"),
        "the leader did not log why:\n{}",
        cluster.logs()
    );
    assert!(
        cluster.node(3).logged("cannot reach a member over TLS")
            || cluster
                .node(3)
                .logged("a client refused this server's TLS certificate"),
        "the foreign member did not log why:\n{}",
        cluster.logs()
    );
    assert!(
        !cluster.node(3).stderr.lock().contains("snapshot installed"),
        "{}",
        cluster.logs()
    );
}
