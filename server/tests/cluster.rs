//! Replicated mode (docs/contract.md §8, §12) with real processes on loopback: `kill -9` the
//! leader and lose no lease; an in-flight heartbeat's ambiguous outcome; a wiped member
//! refused, then removed, added again and caught up from a snapshot; members replaced, added,
//! removed and moved while leases keep renewing; a backup under load restored; members named
//! by host name; members whose wall clocks are 90 s off (libfaketime) leading in turn.
//!
//! `WORKLEASE_FAILOVERS=N` sets the number of leader kills in the failover test (default 3);
//! docs/performance.md's failover time is the median of
//! `WORKLEASE_FAILOVERS=10 cargo test --release -p worklease-server --test cluster -- --nocapture failover`.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::cluster::{free_port, role_of, Cluster};
use support::{Client, Server, TempDir, CLUSTER_SECRET, CLUSTER_SECRET_HEADER, TOKEN};

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
    // Node 1 too: with a new directory it asks the others before it seeds anything.
    let wiped = (1..=3).find(|n| *n != leader).expect("a follower");
    let environment = cluster.node(leader).environment("self_hosted");
    for _ in 0..40 {
        cluster.node(leader).work(&environment);
    }
    cluster.wait_converged(Duration::from_secs(20));
    let converged = cluster.wipe_and_catch_up(wiped, leader, &environment, 40);
    // Reads through it still answer (forwarded to the leader), and it holds the same table.
    let listed = cluster
        .node(wiped)
        .get(&format!("/v1/environments/{environment}/work?limit=100"));
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json["data"].as_array().map(Vec::len), Some(80));
    assert_eq!(cluster.digest(wiped), converged);
    assert_eq!(cluster.digest(leader), converged);
}

/// Every internal route (docs/contract.md §10) of every member refuses an admin token, however
/// it is sent, with the same 401; and a member started with another cluster secret cannot
/// join: every peer refuses it, and both it and the others say so in their logs.
#[test]
fn internal_routes_take_only_the_cluster_secret_and_a_member_with_another_cannot_join() {
    let other = "another-cluster-secret-0123456789abcdef";
    let cluster = Cluster::start_with("secret", &[], &[&[], &[], &["--cluster-secret", other]]);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    assert_ne!(leader, 3, "the member with another secret was elected");
    let environment = cluster.node(leader).environment("self_hosted");
    cluster.node(leader).work(&environment);

    let bearer = support::bearer();
    for n in 1..=3 {
        for path in [
            "/internal/raft/append",
            "/internal/raft/vote",
            "/internal/raft/snapshot",
            "/internal/digest",
            "/internal/other",
        ] {
            for headers in [
                vec![("authorization", bearer.as_str())],
                vec![("x-api-key", TOKEN)],
                vec![(CLUSTER_SECRET_HEADER, TOKEN)],
                vec![],
            ] {
                for method in ["GET", "POST"] {
                    let reply = cluster
                        .node(n)
                        .request(method, path, &headers, Some(b"\x00"));
                    assert_eq!(
                        reply.status, 401,
                        "node {n} {method} {path} {headers:?}: {}",
                        reply.text
                    );
                    assert_eq!(
                        reply.json["error"]["message"], "authentication failed",
                        "{}",
                        reply.text
                    );
                }
            }
        }
    }

    // Node 3 joins nobody: it refuses the leader's appends and says why, and the leader logs
    // that node 3 refused its secret. (A new member that is not the lowest id never calls
    // anyone before it joins; node 1 with another secret would log every peer's refusal.)
    let started = Instant::now();
    while !(cluster
        .node(3)
        .logged("refused an internal call that presented another cluster secret")
        && cluster
            .node(leader)
            .logged("peer 3 refused our cluster secret"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the refusals were not logged:\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = cluster.status(3).expect("node 3 answers /cluster");
    assert_eq!(status["leader_id"], Value::Null, "{status}");
    assert_eq!(status["last_applied_index"], 0, "{status}");
    let reply = cluster.node(3).request(
        "GET",
        "/internal/digest",
        &[(CLUSTER_SECRET_HEADER, other)],
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["last_applied_index"], 0, "{}", reply.text);
    // The two members that share the secret replicate.
    let (index, digest) = cluster.digest(leader);
    let follower = if leader == 1 { 2 } else { 1 };
    let started = Instant::now();
    while cluster.digest(follower) != (index, digest.clone()) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The member that initializes a new cluster (the lowest id), started with another cluster
/// secret, asks every peer for its vote; every peer refuses its secret, it logs each refusal,
/// and nobody leads.
#[test]
fn a_first_member_with_another_secret_logs_every_peers_refusal() {
    let other = "another-cluster-secret-0123456789abcdef";
    let cluster = Cluster::start_with(
        "secret-first",
        &[],
        &[&["--cluster-secret", other], &[], &[]],
    );
    let started = Instant::now();
    while !(cluster.node(1).logged("peer 2 refused our cluster secret")
        && cluster.node(1).logged("peer 3 refused our cluster secret"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the refusals were not logged:\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in 1..=3 {
        let status = cluster.status(n).expect("answers /cluster");
        assert_eq!(status["leader_id"], Value::Null, "node {n}: {status}");
    }
}

/// The cluster secret rotates without stopping the cluster (docs/security.md, "Rotating the
/// cluster secret"): three rolling restarts, one member at a time, with `OLD,NEW`, then
/// `NEW,OLD`, then `NEW` alone. After each restart a write through the restarted member
/// commits (its calls carry the secret it sends, which the others accept) and every member
/// converges on it; at the end the old secret opens no member's internal routes.
#[test]
fn the_cluster_secret_rotates_in_three_rolling_restarts() {
    let old = CLUSTER_SECRET;
    let new = "the-new-cluster-secret-0123456789abcdef";
    let mut cluster = Cluster::start("secret-rotation", &[]);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let environment = cluster.node(leader).environment("self_hosted");
    let body = json!({"data": {"type": "session", "id": "sess_rotation"}});
    let path = format!("/v1/environments/{environment}/work");
    let passes = [
        format!("{old},{new}"),
        format!("{new},{old}"),
        new.to_owned(),
    ];
    for (pass, secrets) in passes.into_iter().enumerate() {
        if pass == 1 {
            // Every member accepts the new secret from the first pass on.
            cluster.secret = new.to_owned();
        }
        for n in 1..=3 {
            cluster.kill_9(n);
            cluster.own[n - 1] = vec!["--cluster-secret".to_owned(), secrets.clone()];
            cluster.launch(n);
            cluster.admin_until_done(n, "POST", &path, Some(&body), 30);
            cluster.wait_converged(Duration::from_secs(30));
            let rotating = secrets.contains(',');
            assert_eq!(
                cluster.node(n).logged("a rotation is under way"),
                rotating,
                "{secrets}:\n{}",
                cluster.logs()
            );
        }
    }
    let (_, listed) = cluster.admin(1, "GET", &path, None);
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(9), "{listed}");
    for n in 1..=3 {
        for (secret, status) in [(old, 401), (new, 200)] {
            let reply = cluster.node(n).request(
                "GET",
                "/internal/digest",
                &[(CLUSTER_SECRET_HEADER, secret)],
                None,
            );
            assert_eq!(reply.status, status, "node {n}: {}", reply.text);
        }
    }
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
    let mut leases = via.leases(&environment, 5);
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

    // A wiped member (not the leader) is removed, added again and catches up from a snapshot.
    let wiped = (1..=3).find(|n| *n != new_leader).expect("a follower");
    let digest = cluster.wipe_and_catch_up(wiped, new_leader, &environment, 20);
    assert_eq!(cluster.digest(wiped).1, digest.1);
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

/// libfaketime's preload library, where the Debian package `faketime` puts it.
fn libfaketime() -> Option<std::path::PathBuf> {
    let lib = std::fs::read_dir("/usr/lib").ok()?;
    lib.filter_map(Result::ok)
        .map(|entry| entry.path().join("faketime/libfaketime.so.1"))
        .chain([std::path::PathBuf::from(
            "/usr/lib/faketime/libfaketime.so.1",
        )])
        .find(|path| path.exists())
}

/// A token (an RFC 3339 instant) as Unix microseconds.
fn token_micros(token: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(token)
        .expect("a token is an instant")
        .timestamp_micros()
}

fn real_now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[test]
fn a_leader_whose_clock_is_90_s_off_neither_shortens_nor_extends_a_lease() {
    let Some(lib) = libfaketime() else {
        println!(
            "SKIPPED: libfaketime is not installed (Debian: apt-get install faketime); this \
             test needs it to run members with their wall clocks 90 s off"
        );
        return;
    };
    let lib = lib.display().to_string();
    let skewed = |offset: &str| {
        vec![
            ("LD_PRELOAD".to_owned(), lib.clone()),
            ("FAKETIME".to_owned(), offset.to_owned()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
        ]
    };
    // Node 1's clock is right, node 2's 90 s ahead, node 3's 90 s behind.
    let mut cluster = Cluster::start_with_env(
        "skew",
        &["--default-ttl-seconds", "60"],
        &[&[], &[], &[]],
        vec![Vec::new(), skewed("+90s"), skewed("-90s")],
    );
    let mut leader = cluster.wait_for_leader(Duration::from_secs(20));
    let environment = cluster.node(leader).environment("self_hosted");
    let mut leases = cluster.node(leader).leases(&environment, 5);

    for (target, skew) in [(2, "90 s ahead"), (3, "90 s behind"), (1, "right")] {
        // The member to lead next restarts first: it leads with nothing but what it replayed
        // from its log and what it applied since.
        if target != leader {
            cluster.kill_9(target);
            cluster.launch(target);
        }
        // Every lease renewed in the last moment before the failover.
        let renew = |cluster: &Cluster, leases: &mut Vec<(String, String)>, via: usize| {
            for (work, token) in leases.iter_mut() {
                let reply = cluster
                    .node(via)
                    .post(&heartbeat_path(&environment, work, token), &json!({}));
                assert_eq!(reply.status, 200, "{}\n{}", reply.text, cluster.logs());
                *token = reply.json["last_heartbeat"]
                    .as_str()
                    .expect("a token")
                    .to_owned();
            }
        };
        // Kill the leader until the target leads. The member killed before comes back only
        // once the next leader is killed: its log then lacks the entries of the term it
        // missed, which tilts the election to the target (it led within 1 to 4 kills in
        // every run so far; plain kill-and-restart needed up to 10 and more).
        let mut kills = 0;
        let mut down: Option<usize> = None;
        while leader != target {
            assert!(kills < 12, "node {target} never led:\n{}", cluster.logs());
            cluster.wait_converged(Duration::from_secs(20));
            renew(&cluster, &mut leases, leader);
            let killed = leader;
            cluster.kill_9(killed);
            if let Some(stale) = down.take() {
                cluster.launch(stale);
            }
            leader = cluster.wait_for_leader(Duration::from_secs(20));
            down = Some(killed);
            kills += 1;
        }
        if let Some(killed) = down {
            cluster.launch(killed);
        }
        println!("node {target} (clock {skew}) leads after {kills} kill(s)");
        // Its reads and its sweeper go by the table's timeline: a lease renewed a moment ago
        // is held (a leader 90 s ahead going by its own clock would lapse every one), and
        // stays held.
        std::thread::sleep(Duration::from_secs(2));
        for (work, token) in &leases {
            let item = cluster
                .node(leader)
                .get(&format!("/v1/environments/{environment}/work/{work}"));
            assert_eq!(item.status, 200, "{}", item.text);
            assert_eq!(item.json["state"], "active", "lapsed early: {}", item.text);
            assert_eq!(
                item.json["latest_heartbeat_at"].as_str(),
                Some(token.as_str())
            );
        }
        // And its stamps are the real time, so a renewal now runs exactly one TTL from now
        // (a leader 90 s behind going by its own clock would stamp 90 s back, or freeze at
        // the latest stamp: leases would lapse late).
        renew(&cluster, &mut leases, leader);
        for (_, token) in &leases {
            let off = token_micros(token) - real_now_micros();
            assert!(
                off.abs() < 1_500_000,
                "node {target} (clock {skew}) stamped {} ms off the real time",
                off / 1000
            );
        }
        if target != 1 {
            assert!(
                cluster
                    .node(leader)
                    .logged("disagrees with the table's timeline"),
                "node {target} did not log its skew:\n{}",
                cluster.logs()
            );
        }
    }
    cluster.wait_converged(Duration::from_secs(20));
}

#[test]
fn empty_and_idle_long_polls_write_nothing_to_the_log() {
    let cluster = Cluster::start("idle-polls", &[]);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let follower = (1..=3).find(|n| *n != leader).expect("a follower");
    let environment = cluster.node(leader).environment("self_hosted");
    cluster.wait_converged(Duration::from_secs(20));
    let applied = || {
        cluster.status(leader).expect("the leader answers")["last_applied_index"]
            .as_u64()
            .expect("an index")
    };
    // Every member's log syncs, by member.
    let syncs = || -> Vec<u64> {
        (1..=3)
            .map(|n| {
                let status = cluster.status(n).expect("every member answers");
                status["log_syncs"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no log_syncs: {status}"))
            })
            .collect()
    };
    let (before, synced) = (applied(), syncs());
    // Through the leader and through a follower (which forwards to the leader).
    let servers = [cluster.node(leader), cluster.node(follower)];
    let workers = support::poll_idly(&servers, &environment, 1000, 4, Duration::from_secs(12));
    assert_eq!(applied(), before, "empty polls were logged");
    assert_eq!(syncs(), synced, "empty polls synced a member's log");
    let stats = cluster
        .node(follower)
        .get(&format!("/v1/environments/{environment}/work/stats"));
    assert_eq!(stats.json["workers_polling"], workers, "{}", stats.text);
    cluster.node(leader).work(&environment);
    cluster.node(follower).claim(&environment, "w1");
    // A command is answered as it is applied, a moment before openraft's metrics (which
    // `GET /cluster` reads) count it: wait for them. The cluster's first delivery also logs
    // the key item secrets are signed with (once).
    let started = Instant::now();
    while applied() < before + 5 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        applied(),
        before + 5,
        "create, the item-secret key, poll, ack and heartbeat are logged"
    );
    // Committed means synced on a majority: at least two members synced (so the comparison
    // above could have seen a sync).
    let grown = syncs()
        .iter()
        .zip(&synced)
        .filter(|(now, then)| now > then)
        .count();
    assert!(grown >= 2, "{grown} members synced the writes");
}

/// A removed member stops, saying why (docs/clustering.md, "Changing the membership"): one
/// removed while it runs, and one removed while it was down and then restarted on its data
/// directory (which still counts itself a voter and would stand for election after election).
/// Neither disturbs the leader. Removing the dead one of two voters is refused: it could not
/// commit.
#[test]
fn a_removed_member_stops_whether_it_ran_or_was_down_when_removed() {
    let mut cluster = Cluster::start("removed", &[]);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let environment = cluster.node(leader).environment("self_hosted");
    let followers: Vec<usize> = (1..=3).filter(|n| *n != leader).collect();
    let (running, down) = (followers[0], followers[1]);
    let term = cluster.status(leader).expect("the leader answers")["term"].clone();
    let said = |n: usize| format!("node {n}, was removed from the cluster");
    let stops = |cluster: &mut Cluster, n: usize| {
        let server = cluster.nodes[n - 1].as_mut().expect("the member runs");
        let status = server.wait_exit(Duration::from_secs(20));
        assert!(
            status.is_some_and(|status| !status.success()),
            "node {n} did not stop with an error ({status:?}):\n{}",
            cluster.logs()
        );
        assert!(cluster.node(n).logged(&said(n)), "{}", cluster.logs());
        cluster.nodes[n - 1] = None;
    };

    // Down first: removing it needs a majority of the three, the leader and `running`.
    cluster.kill_9(down);
    cluster.remove_member(leader, down);
    cluster.node(leader).work(&environment);
    cluster.launch(down);
    stops(&mut cluster, down);

    // Two voters, one of them down: removing it could never commit (a change needs a
    // majority of the current voters too), so it is refused rather than left hanging.
    cluster.kill_9(running);
    cluster.removal_refused(leader, running, "current voters");
    cluster.launch(running);
    cluster.wait_converged(Duration::from_secs(30));

    cluster.remove_member(leader, running);
    stops(&mut cluster, running);

    let status = cluster.status(leader).expect("the leader answers");
    assert_eq!(
        (status["role"].clone(), status["term"].clone()),
        (json!("leader"), term),
        "{status}"
    );
    cluster.node(leader).work(&environment);
}

/// Concurrent reads at the leader share its leadership confirmations: `GET /cluster`'s
/// `read_rounds` grows by fewer rounds than reads were answered, and every read answers the
/// item as written.
#[test]
fn concurrent_reads_share_the_leaders_confirmation_rounds() {
    let cluster = Cluster::start("read-rounds", &[]);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let environment = cluster.node(leader).environment("self_hosted");
    let work = cluster.node(leader).work(&environment);
    let path = format!("/v1/environments/{environment}/work/{work}");
    let rounds = || {
        let status = cluster.status(leader).expect("the leader answers");
        status["read_rounds"]
            .as_u64()
            .unwrap_or_else(|| panic!("no read_rounds: {status}"))
    };
    let before = rounds();
    let (clients, each) = (8, 25);
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                for _ in 0..each {
                    let reply = cluster.node(leader).get(&path);
                    assert_eq!(reply.status, 200, "{}", reply.text);
                    assert_eq!(reply.json["id"], work.as_str(), "{}", reply.text);
                }
            });
        }
    });
    let ran = rounds() - before;
    let reads = clients * each;
    assert!(
        (1..reads).contains(&ran),
        "{ran} confirmation rounds for {reads} reads"
    );
    println!("{ran} confirmation rounds for {reads} reads");
}

/// Heartbeats every lease in turn through the members in `bases` (the member changing with
/// each lease and round) until `stop` is set; each 200 advances the lease's token. A call
/// that gets no answer or 503 is tried again next round; any other answer is a lost lease.
/// Returns every token each lease was answered, oldest first, and the lost leases.
fn keep_heartbeating(
    bases: &Mutex<Vec<String>>,
    environment: &str,
    leases: Vec<(String, String)>,
    stop: &AtomicBool,
) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let mut leases: Vec<(String, Vec<String>)> = leases
        .into_iter()
        .map(|(work, token)| (work, vec![token]))
        .collect();
    let mut lost = Vec::new();
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        for (n, (work, tokens)) in leases.iter_mut().enumerate() {
            let base = {
                let bases = bases.lock().expect("bases");
                bases[(n + round) % bases.len()].clone()
            };
            let token = tokens.last().expect("a token");
            match Client::new(&base).call("POST", &heartbeat_path(environment, work, token), None) {
                Some((200, body)) => {
                    tokens.push(body["last_heartbeat"].as_str().expect("a token").to_owned());
                }
                None | Some((503, _)) => {}
                Some((status, body)) => lost.push(format!("{work} via {base}: {status} {body}")),
            }
        }
        round += 1;
    }
    (leases, lost)
}

#[test]
fn members_are_replaced_added_and_removed_while_30_leases_keep_renewing() {
    let mut cluster = Cluster::start("membership", &["--snapshot-every", "20"]);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let environment = cluster.node(leader).environment("self_hosted");
    let leases = cluster.node(leader).leases(&environment, 30);
    let bases = Arc::new(Mutex::new(
        (1..=3)
            .map(|n| cluster.node(n).base.clone())
            .collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (bases, stop, environment) = (bases.clone(), stop.clone(), environment.clone());
        std::thread::spawn(move || keep_heartbeating(&bases, &environment, leases, &stop))
    };
    let serve_through = |cluster: &Cluster, n: usize, serves: bool| {
        let base = cluster.node(n).base.clone();
        let mut bases = bases.lock().expect("bases");
        bases.retain(|b| *b != base);
        if serves {
            bases.push(base);
        }
    };
    let voters = |members: &Value| -> Vec<u64> {
        members["data"]
            .as_array()
            .expect("members")
            .iter()
            .filter(|m| m["role"] == "voter")
            .map(|m| m["node_id"].as_u64().expect("an id"))
            .collect()
    };

    // Replace a dead member: kill -9 a follower, remove it, add a new member under a new id;
    // it catches up from a snapshot (the log behind it is purged).
    let dead = (1..=3).find(|n| *n != leader).expect("a follower");
    serve_through(&cluster, dead, false);
    std::thread::sleep(Duration::from_millis(500));
    cluster.kill_9(dead);
    let survivor = (1..=3)
        .find(|n| *n != leader && *n != dead)
        .expect("a survivor");
    // With one of three down, removing a live member would leave one of two reachable: no
    // majority, refused.
    cluster.removal_refused(leader, survivor, "majority");
    // Through a follower: forwarded to the leader like any change.
    let members = cluster.remove_member(survivor, dead);
    assert_eq!(voters(&members).len(), 2, "{members}");
    let replacement = cluster.new_member();
    cluster.launch(replacement);
    let members = cluster.add_member(survivor, replacement);
    assert_eq!(voters(&members).len(), 3, "{members}");
    serve_through(&cluster, replacement, true);

    // Grow to five, then shrink back to three.
    let (fourth, fifth) = (cluster.new_member(), cluster.new_member());
    for n in [fourth, fifth] {
        cluster.launch(n);
        cluster.add_member(leader, n);
        serve_through(&cluster, n, true);
    }
    let (status, members) = cluster.admin(fourth, "GET", "/cluster/members", None);
    assert_eq!(status, 200, "{members}");
    assert_eq!(voters(&members).len(), 5, "{members}");
    assert_eq!(members["leader_id"], leader, "{members}");
    for n in [fourth, fifth] {
        serve_through(&cluster, n, false);
        std::thread::sleep(Duration::from_millis(500));
        let removed = cluster.remove_member(leader, n);
        assert!(!voters(&removed).contains(&(n as u64)), "{removed}");
        cluster.kill_9(n);
    }
    // Move a member to another address: a member added there under a new id, then the old
    // one removed (docs/clustering.md, "Moving a member to a new address").
    let moved = cluster.new_member();
    cluster.launch(moved);
    cluster.add_member(survivor, moved);
    serve_through(&cluster, moved, true);
    serve_through(&cluster, replacement, false);
    std::thread::sleep(Duration::from_millis(500));
    cluster.remove_member(survivor, replacement);
    cluster.kill_9(replacement);
    let replacement = moved;

    let members = cluster.admin(leader, "GET", "/cluster/members", None).1;
    let mut ids = voters(&members);
    ids.sort_unstable();
    let mut expected: Vec<u64> = vec![leader as u64, survivor as u64, replacement as u64];
    expected.sort_unstable();
    assert_eq!(ids, expected, "{members}");

    stop.store(true, Ordering::Relaxed);
    let (leases, lost) = client.join().expect("the client");
    assert!(lost.is_empty(), "leases lost: {lost:?}\n{}", cluster.logs());
    cluster.wait_converged(Duration::from_secs(30));
    assert!(
        cluster
            .node(replacement)
            .logged("snapshot installed from the leader"),
        "the moved member did not catch up from a snapshot:\n{}",
        cluster.logs()
    );
    // Every lease is held with its latest token, and its previous token is refused.
    for (work, tokens) in &leases {
        assert!(tokens.len() > 1, "{work} was never renewed");
        let (previous, token) = (&tokens[tokens.len() - 2], &tokens[tokens.len() - 1]);
        let via = cluster.node(replacement);
        let stale = via.post(&heartbeat_path(&environment, work, previous), &json!({}));
        assert_eq!(
            stale.status, 412,
            "a stale token was accepted: {}",
            stale.text
        );
        let fresh = via.post(&heartbeat_path(&environment, work, token), &json!({}));
        assert_eq!(fresh.status, 200, "{work} was lost: {}", fresh.text);
    }
    cluster.wait_converged(Duration::from_secs(30));
}

#[test]
fn a_cluster_named_by_host_names_elects_fails_over_and_rejoins() {
    let mut cluster = Cluster::start_on(
        "localhost",
        "hostnames",
        &[],
        &[&[], &[], &[]],
        vec![Vec::new(); 3],
    );
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let (status, members) = cluster.admin(leader, "GET", "/cluster/members", None);
    assert_eq!(status, 200, "{members}");
    assert!(
        members["data"]
            .as_array()
            .expect("members")
            .iter()
            .all(|m| m["address"]
                .as_str()
                .is_some_and(|a| a.starts_with("localhost:"))),
        "{members}"
    );
    let follower = (1..=3).find(|n| *n != leader).expect("a follower");
    let environment = cluster.node(follower).environment("self_hosted");
    cluster.node(follower).work(&environment);
    cluster.kill_9(leader);
    let new_leader = cluster.wait_for_leader(Duration::from_secs(20));
    assert_ne!(new_leader, leader);
    cluster.node(follower).work(&environment);
    cluster.launch(leader);
    cluster.wait_converged(Duration::from_secs(30));
    let listed = cluster
        .node(leader)
        .get(&format!("/v1/environments/{environment}/work?limit=10"));
    assert_eq!(
        listed.json["data"].as_array().map(Vec::len),
        Some(2),
        "{}",
        listed.text
    );

    // The leader removes itself (asked through a follower): it steps down once the change is
    // committed, and the two others elect a leader between them.
    let via = (1..=3).find(|n| *n != new_leader).expect("a follower");
    let members = cluster.remove_member(via, new_leader);
    assert_eq!(role_of(&members, new_leader), None, "{members}");
    cluster.kill_9(new_leader);
    let last = cluster.wait_for_leader(Duration::from_secs(20));
    assert_ne!(last, new_leader);
    cluster.node(via).work(&environment);
    cluster.wait_converged(Duration::from_secs(30));
}

#[test]
fn a_backup_under_load_restores_a_server_that_answers_as_the_cluster_did() {
    let cluster = Cluster::start("backup", &["--snapshot-every", "50"]);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let followers: Vec<usize> = (1..=3).filter(|n| *n != leader).collect();
    let environment = cluster.node(leader).environment("self_hosted");
    let leases = cluster.node(leader).leases(&environment, 20);
    let (alone, busy) = leases.split_at(10);
    let before: Vec<Value> = alone
        .iter()
        .map(|(work, _)| {
            let item = cluster
                .node(leader)
                .get(&format!("/v1/environments/{environment}/work/{work}"));
            item.json
        })
        .collect();

    // Ten leases renew through a follower while the other follower takes the backup.
    let bases = Arc::new(Mutex::new(vec![cluster.node(followers[0]).base.clone()]));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (stop, environment, busy) = (stop.clone(), environment.clone(), busy.to_vec());
        std::thread::spawn(move || keep_heartbeating(&bases, &environment, busy, &stop))
    };
    std::thread::sleep(Duration::from_millis(500));
    let (status, bytes) = cluster.node(followers[1]).get_bytes("/cluster/snapshot");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (renewed, lost) = client.join().expect("the client");
    assert!(lost.is_empty(), "{lost:?}");
    // The file: magic, version, index, term, the table's length and bytes, a SHA-256.
    assert_eq!(&bytes[..4], b"WLBK");
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let (index, length) = (word(6), word(22) as usize);
    assert!(index > 0);
    let table = &bytes[30..30 + length];

    let dir = TempDir::new("restored");
    let restored_dir = dir.0.join("data");
    let file = dir.0.join("backup.wlbk");
    std::fs::create_dir_all(&dir.0).expect("a directory");
    std::fs::write(&file, &bytes).expect("writes the backup");
    let restore = Command::new(support::binary())
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored_dir)
        .output()
        .expect("restore runs");
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    // Twice is refused: the directory is not empty any more.
    let again = Command::new(support::binary())
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored_dir)
        .output()
        .expect("restore runs");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // The restored directory starts a one-member cluster.
    let data = restored_dir.display().to_string();
    let (one, two) = (free_port(), free_port());
    let seed = format!("1=127.0.0.1:{one}");
    let listen = format!("127.0.0.1:{one}");
    let refused = Command::new(support::binary())
        .args([
            "--listen",
            &listen,
            "--token",
            TOKEN,
            "--data-dir",
            &data,
            "--node-id",
            "1",
        ])
        .args(["--peers", &format!("{seed},2=127.0.0.1:{two}")])
        .args(["--cluster-secret", CLUSTER_SECRET])
        .output()
        .expect("the server runs");
    assert!(
        !refused.status.success(),
        "a restored directory seeded two members"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("one-member cluster"));
    let server = Server::start_raw(
        &[
            "--listen",
            &listen,
            "--token",
            TOKEN,
            "--data-dir",
            &data,
            "--node-id",
            "1",
            "--peers",
            &seed,
            "--cluster-secret",
            CLUSTER_SECRET,
        ],
        &[],
    );
    // The restored table is the backup's, byte for byte.
    let digest = server.get_with(
        "/internal/digest",
        &[(CLUSTER_SECRET_HEADER, CLUSTER_SECRET)],
    );
    assert_eq!(digest.json["digest"], sha256_hex(table), "{}", digest.text);
    // The leases no one renewed answer exactly as the cluster did; each renewed one holds a
    // token the cluster answered, renews with it, and refuses the one before it.
    for ((work, _), before) in alone.iter().zip(&before) {
        let item = server.get(&format!("/v1/environments/{environment}/work/{work}"));
        assert_eq!(&item.json, before, "{work}");
    }
    for (work, tokens) in &renewed {
        let item = server.get(&format!("/v1/environments/{environment}/work/{work}"));
        let held = item.json["latest_heartbeat_at"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", item.text));
        let at = tokens
            .iter()
            .position(|token| token == held)
            .unwrap_or_else(|| panic!("{work} holds {held}, which the cluster never answered"));
        if at > 0 {
            let stale = server.post(
                &heartbeat_path(&environment, work, &tokens[at - 1]),
                &json!({}),
            );
            assert_eq!(stale.status, 412, "{}", stale.text);
        }
        let beat = server.post(&heartbeat_path(&environment, work, held), &json!({}));
        assert_eq!(beat.status, 200, "{}", beat.text);
    }

    // Then it grows: a member added to it gets the restored table from a snapshot.
    let second_dir = dir.0.join("second").display().to_string();
    let second = Server::start_raw(
        &[
            "--listen",
            &format!("127.0.0.1:{two}"),
            "--token",
            TOKEN,
            "--data-dir",
            &second_dir,
            "--node-id",
            "2",
            "--peers",
            &format!("{seed},2=127.0.0.1:{two}"),
            "--cluster-secret",
            CLUSTER_SECRET,
        ],
        &[],
    );
    let added = Client::new(&server.base).call(
        "POST",
        "/cluster/members",
        Some(&json!({"node_id": 2, "address": format!("127.0.0.1:{two}")})),
    );
    assert_eq!(
        added.as_ref().map(|(status, _)| *status),
        Some(200),
        "{added:?}"
    );
    let started = Instant::now();
    loop {
        let member = [(CLUSTER_SECRET_HEADER, CLUSTER_SECRET)];
        let (ours, theirs) = (
            server.get_with("/internal/digest", &member),
            second.get_with("/internal/digest", &member),
        );
        assert_eq!((ours.status, theirs.status), (200, 200), "{}", ours.text);
        if ours.json["digest"] == theirs.json["digest"]
            && ours.json["last_applied_index"] == theirs.json["last_applied_index"]
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} {}\n{}",
            ours.text,
            theirs.text,
            second.stderr.lock()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(second.logged("snapshot installed from the leader"));
}

/// The hex SHA-256 of `bytes`, as `/internal/digest` reports a table's.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[test]
fn a_seed_member_that_starts_late_joins_as_a_learner_and_then_votes() {
    let mut cluster = Cluster::start_without("late-seed", 3);
    // Nodes 1 and 2 wait for node 3, then (after 5 s) seed the cluster without it.
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    assert!(
        cluster.node(1).logged("did not answer within"),
        "{}",
        cluster.logs()
    );
    let environment = cluster.node(leader).environment("self_hosted");
    cluster.node(leader).work(&environment);
    let role_of_3 = |cluster: &Cluster| {
        let (_, members) = cluster.admin(leader, "GET", "/cluster/members", None);
        let role = members["data"]
            .as_array()
            .expect("members")
            .iter()
            .find(|m| m["node_id"] == 3)
            .map(|m| m["role"].clone());
        (role, members)
    };
    let wait_for = |cluster: &Cluster, role: Value| {
        let started = Instant::now();
        loop {
            let (now, members) = role_of_3(cluster);
            if now.as_ref() == Some(&role) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "node 3 is not a {role}: {members}\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(&cluster, json!("learner"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        role_of_3(&cluster).0,
        Some(json!("learner")),
        "not started, it cannot vote"
    );
    cluster.launch(3);
    wait_for(&cluster, json!("voter"));
    cluster.wait_converged(Duration::from_secs(20));
}
