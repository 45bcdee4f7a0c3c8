//! Three replicated members in one process, each a whole server (its HTTP listener, Raft over
//! real loopback HTTP, its data directory) with its own injectable clock and a switch that
//! cuts it off from the others: the cases a real-process test cannot set up (a clock 60 s off,
//! a leader isolated while it keeps running). `server/tests/cluster.rs` kills real processes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::app::Shared;
use crate::cli::Cli;
use crate::clock::Clock;
use crate::run;

const TOKEN: &str = "in-process-token";

struct Node {
    id: usize,
    /// Its command line, to start it again on the same directory and address.
    args: Vec<String>,
    shared: Arc<Shared>,
    clock: Arc<Clock>,
    base: String,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<Result<(), String>>,
}

impl Node {
    async fn launch(id: usize, args: Vec<String>, listener: tokio::net::TcpListener) -> Self {
        let cli = Cli::try_parse_from(&args).expect("flags parse");
        let clock = Arc::new(Clock::new());
        let shared = run::open(&cli, &listener, clock.clone())
            .await
            .expect("the member starts");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(run::serve_on(shared.clone(), listener, None, async {
            let _ = stopped.await;
        }));
        Self {
            id,
            args,
            shared,
            clock,
            base,
            stop: Some(stop),
            served,
        }
    }
}

struct Cluster {
    nodes: Vec<Option<Node>>,
    dir: std::path::PathBuf,
    http: reqwest::Client,
}

impl Cluster {
    /// Starts three members; `ttl` is every lease's TTL.
    async fn start(name: &str, ttl: u64) -> Self {
        Self::start_with(name, ttl, &[]).await
    }

    /// Starts three members with `flags` besides the usual ones.
    async fn start_with(name: &str, ttl: u64, flags: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "worklease-in-process-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos())
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("a port"),
            );
        }
        let peers = listeners
            .iter()
            .enumerate()
            .map(|(n, l)| format!("{}={}", n + 1, l.local_addr().expect("an address")))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (n, listener) in listeners.into_iter().enumerate() {
            let id = n + 1;
            let data = dir.join(format!("node{id}"));
            let mut args = vec![
                "worklease-server".to_owned(),
                format!("--listen={}", listener.local_addr().expect("an address")),
                format!("--token={TOKEN}"),
                format!("--data-dir={}", data.display()),
                format!("--node-id={id}"),
                format!("--peers={peers}"),
                format!("--default-ttl-seconds={ttl}"),
            ];
            args.extend(flags.iter().map(|flag| (*flag).to_owned()));
            nodes.push(Some(Node::launch(id, args, listener).await));
        }
        Self {
            nodes,
            dir,
            http: reqwest::Client::new(),
        }
    }

    /// Starts a stopped member again, on its directory and address.
    async fn restart(&mut self, id: usize, args: Vec<String>, address: &str) {
        assert!(self.nodes[id - 1].is_none(), "member {id} runs");
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .expect("its port is free again");
        self.nodes[id - 1] = Some(Node::launch(id, args, listener).await);
    }

    fn node(&self, id: usize) -> &Node {
        self.nodes[id - 1].as_ref().expect("the member runs")
    }

    /// Member `id`'s connections to the others (its fault injectors).
    fn links(&self, id: usize) -> &crate::raft::Links {
        self.node(id)
            .shared
            .submit
            .durable()
            .expect("replicated")
            .links()
    }

    fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flatten()
    }

    /// Waits until a running member other than `except` leads.
    async fn leader(&self, except: Option<usize>) -> usize {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            for node in self.running() {
                if Some(node.id) != except && node.shared.submit.cluster_status().role == "leader" {
                    return node.id;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no leader within 20 s");
    }

    /// Stops a member cleanly (as SIGTERM would).
    async fn stop(&mut self, id: usize) {
        let mut node = self.nodes[id - 1].take().expect("the member runs");
        let _ = node.stop.take().expect("not stopped yet").send(());
        node.served
            .await
            .expect("the serving task")
            .expect("stops cleanly");
    }

    /// Waits until every running member applied the same index and holds the same bytes.
    async fn converged(&self) {
        let started = Instant::now();
        loop {
            let tables: Vec<_> = self
                .running()
                .map(|n| n.shared.submit.local_snapshot())
                .collect();
            if tables.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "replicas differ: {:?}",
                tables.iter().map(|t| (t.1, t.0.len())).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A request to member `id`: status and JSON body (`None`: no answer in `limit`).
    async fn call(
        &self,
        id: usize,
        method: reqwest::Method,
        path: &str,
        worker: Option<&str>,
        body: Option<Value>,
        limit: Duration,
    ) -> Option<(u16, Value)> {
        send(
            self.http.clone(),
            method,
            format!("{}{path}", self.node(id).base),
            worker.map(str::to_owned),
            body,
            limit,
        )
        .await
    }

    /// A request to member `id` as a task of its own, answered later.
    fn spawn_call(
        &self,
        id: usize,
        method: reqwest::Method,
        path: &str,
        limit: Duration,
    ) -> tokio::task::JoinHandle<Option<(u16, Value)>> {
        tokio::spawn(send(
            self.http.clone(),
            method,
            format!("{}{path}", self.node(id).base),
            None,
            None,
            limit,
        ))
    }

    async fn ok(
        &self,
        id: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let (status, json) = self
            .call(id, method, path, None, body, Duration::from_secs(10))
            .await
            .expect("an answer");
        assert_eq!(status, 200, "{path}: {json}");
        json
    }

    /// An environment and `count` items claimed and heartbeat once; `(work, token)` each.
    async fn leases(&self, id: usize, count: usize) -> (String, Vec<(String, String)>) {
        let environment = self
            .ok(
                id,
                reqwest::Method::POST,
                "/v1/environments",
                Some(json!({"name": "t", "config": {"type": "self_hosted"}})),
            )
            .await["id"]
            .as_str()
            .expect("an id")
            .to_owned();
        let work = format!("/v1/environments/{environment}/work");
        let mut leases = Vec::new();
        for n in 0..count {
            let item = self
                .ok(
                    id,
                    reqwest::Method::POST,
                    &work,
                    Some(json!({"data": {"type": "session", "id": format!("sess_{n}")}})),
                )
                .await["id"]
                .as_str()
                .expect("an id")
                .to_owned();
            let (status, polled) = self
                .call(
                    id,
                    reqwest::Method::GET,
                    &format!("{work}/poll"),
                    Some("w"),
                    None,
                    Duration::from_secs(10),
                )
                .await
                .expect("an answer");
            assert_eq!((status, polled["id"].as_str()), (200, Some(item.as_str())));
            self.ok(
                id,
                reqwest::Method::POST,
                &format!("{work}/{item}/ack"),
                None,
            )
            .await;
            let beat = self
                .ok(
                    id,
                    reqwest::Method::POST,
                    &heartbeat(&environment, &item, "NO_HEARTBEAT"),
                    None,
                )
                .await;
            let token = beat["last_heartbeat"].as_str().expect("a token").to_owned();
            leases.push((item, token));
        }
        (environment, leases)
    }

    /// A heartbeat on `work` at member `id`, echoing `token`; must answer 200.
    async fn beat(&self, id: usize, environment: &str, work: &str, token: &str) -> Value {
        self.ok(
            id,
            reqwest::Method::POST,
            &heartbeat(environment, work, token),
            None,
        )
        .await
    }

    async fn item(&self, id: usize, environment: &str, work: &str) -> Value {
        self.ok(
            id,
            reqwest::Method::GET,
            &format!("/v1/environments/{environment}/work/{work}"),
            None,
        )
        .await
    }

    async fn shutdown(mut self) {
        for id in 1..=3 {
            if self.nodes[id - 1].is_some() {
                self.stop(id).await;
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One request: status and JSON body (`None`: no answer in `limit`).
async fn send(
    http: reqwest::Client,
    method: reqwest::Method,
    url: String,
    worker: Option<String>,
    body: Option<Value>,
    limit: Duration,
) -> Option<(u16, Value)> {
    let mut request = http.request(method, url).bearer_auth(TOKEN).timeout(limit);
    if let Some(worker) = worker {
        request = request.header("worker-id", worker);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).expect("json"));
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.ok()?;
    Some((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

fn heartbeat(environment: &str, work: &str, token: &str) -> String {
    format!("/v1/environments/{environment}/work/{work}/heartbeat?expected_last_heartbeat={token}")
}

/// A token (an RFC 3339 instant) as Unix microseconds.
fn micros(token: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(token)
        .expect("a token is an instant")
        .timestamp_micros()
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deposed_leader_never_renews_and_then_follows() {
    let cluster = Cluster::start("deposed", 60).await;
    let old = cluster.leader(None).await;
    let (environment, leases) = cluster.leases(old, 3).await;
    cluster.converged().await;

    // Cut the leader off while it keeps running: it still believes it leads.
    cluster.links(old).set_cut(true);
    let new = cluster.leader(Some(old)).await;

    // Heartbeats sent to it while cut off never get a 2xx (it cannot commit), nor do reads
    // (it cannot confirm its leadership).
    let sent: Vec<_> = leases
        .iter()
        .map(|(work, token)| {
            cluster.spawn_call(
                old,
                reqwest::Method::POST,
                &heartbeat(&environment, work, token),
                Duration::from_secs(15),
            )
        })
        .collect();
    let read = cluster.spawn_call(
        old,
        reqwest::Method::GET,
        &format!("/v1/environments/{environment}/work/{}", leases[0].0),
        Duration::from_secs(15),
    );
    // Meanwhile the others serve the same leases.
    let mut renewed = Vec::new();
    for (work, token) in &leases {
        let beat = cluster.beat(new, &environment, work, token).await;
        renewed.push(beat["last_heartbeat"].as_str().expect("a token").to_owned());
    }
    for answer in sent {
        let (status, body) = answer
            .await
            .expect("the task")
            .expect("an answer within 15 s");
        assert_eq!(status, 503, "a cut-off leader answered {status}: {body}");
        assert_eq!(body["error"]["type"], "api_error", "{body}");
    }
    let (status, body) = read.await.expect("the task").expect("an answer");
    assert_eq!(status, 503, "a cut-off leader served a read: {body}");

    // Back in touch, it follows the new leader and holds the same table.
    cluster.links(old).set_cut(false);
    let started = Instant::now();
    while cluster.node(old).shared.submit.cluster_status().leader_id != Some(new as u64) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "it does not follow"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.converged().await;
    for ((work, _), token) in leases.iter().zip(&renewed) {
        let item = cluster.item(old, &environment, work).await;
        assert_eq!(
            item["latest_heartbeat_at"].as_str(),
            Some(token.as_str()),
            "{item}"
        );
        assert_eq!(item["state"], "active", "{item}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_60_s_behind_neither_shortens_nor_extends_a_lease() {
    let mut cluster = Cluster::start("behind", 10).await;
    let old = cluster.leader(None).await;
    let (environment, leases) = cluster.leases(old, 2).await;
    let (renewed, left) = (&leases[0], &leases[1]);
    let left_deadline = micros(&left.1) + 10_000_000;
    cluster.converged().await;
    let before = cluster.item(old, &environment, &left.0).await;
    for node in cluster.running().filter(|n| n.id != old) {
        node.clock.set_skew_micros(-60_000_000);
    }
    cluster.stop(old).await;
    let new = cluster.leader(None).await;

    // Nothing changed in the failover.
    assert_eq!(cluster.item(new, &environment, &left.0).await, before);
    // A renewal through the new leader is stamped on the table's timeline, not 60 s back,
    // and not frozen at the last stamp: its lease runs a full TTL from now.
    let beat = cluster
        .ok(
            new,
            reqwest::Method::POST,
            &heartbeat(&environment, &renewed.0, &renewed.1),
            None,
        )
        .await;
    let stamped = micros(beat["last_heartbeat"].as_str().expect("a token"));
    assert!(
        (stamped - now_micros()).abs() < 1_500_000,
        "stamped {} ms off the real time",
        (stamped - now_micros()) / 1000
    );
    // The lease left alone lapses at its deadline, not 60 s after it.
    loop {
        let item = cluster.item(new, &environment, &left.0).await;
        if item["state"] != "active" {
            let late = now_micros() - left_deadline;
            assert!(
                (-100_000..3_000_000).contains(&late),
                "lapsed {} ms after its deadline",
                late / 1000
            );
            break;
        }
        assert!(
            now_micros() < left_deadline + 5_000_000,
            "not lapsed 5 s after its deadline: {item}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_60_s_ahead_warns_and_its_leases_lapse_early() {
    let mut cluster = Cluster::start("ahead", 30).await;
    let old = cluster.leader(None).await;
    let (environment, leases) = cluster.leases(old, 1).await;
    let (work, token) = &leases[0];
    let deadline = micros(token) + 30_000_000;
    cluster.converged().await;
    for node in cluster.running().filter(|n| n.id != old) {
        node.clock.set_skew_micros(60_000_000);
    }
    cluster.stop(old).await;
    let new = cluster.leader(None).await;
    // The new leader's first stamps jump 60 s ahead: it warns, and (as the README documents)
    // a lease due within the jump lapses at once, about 30 s early here.
    let started = Instant::now();
    loop {
        let item = cluster.item(new, &environment, work).await;
        if item["state"] != "active" {
            assert!(
                now_micros() < deadline - 20_000_000,
                "it lapsed on time, not early"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never lapsed: {item}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cluster.node(new).clock.jumps() > 0, "no warning was logged");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forwarded_heartbeat_whose_answer_is_lost_is_answered_from_the_log() {
    let cluster = Cluster::start("replay", 60).await;
    let leader = cluster.leader(None).await;
    let follower = if leader == 1 { 2 } else { 1 };
    let (environment, leases) = cluster.leases(follower, 1).await;
    let (work, token) = &leases[0];
    // The leader applies the heartbeat, but the follower never gets its answer: it replays
    // the request with the same origin id, and the leader answers from its record instead of
    // applying it again (which would answer 412: the first attempt moved the token).
    cluster.links(follower).drop_answers(1);
    let beat = cluster.beat(follower, &environment, work, token).await;
    let renewed = beat["last_heartbeat"].as_str().expect("a token");
    assert!(renewed > token.as_str(), "{beat}");
    let metrics = cluster
        .node(follower)
        .shared
        .metrics
        .render([0; 5], 0, 0, None);
    assert!(
        metrics.contains("worklease_forwarded_total{outcome=\"replayed\"} 1"),
        "{metrics}"
    );
    // Applied once: the item holds that very token.
    let item = cluster.item(leader, &environment, work).await;
    assert_eq!(
        item["latest_heartbeat_at"].as_str(),
        Some(renewed),
        "{item}"
    );
    // Lost twice: each replay is answered from the record, and the stop is applied once
    // (applied twice, the second would answer the same item unchanged, but the record is
    // what answers here).
    cluster.links(follower).drop_answers(2);
    let stopped = cluster
        .ok(
            follower,
            reqwest::Method::POST,
            &format!("/v1/environments/{environment}/work/{work}/stop"),
            Some(json!({})),
        )
        .await;
    assert_eq!(stopped["state"], "stopping", "{stopped}");
    cluster.shutdown().await;
}

/// A forwarded change whose answer was lost, retried after the members were restored from
/// snapshots that cover it: the retry is answered from the replay record the snapshot carried
/// (the first attempt's 200), and the change is applied once. Without the record, the retry
/// would be applied again and answered 412 (the first attempt moved the token).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_forwarded_change_is_answered_from_a_restored_snapshot_once() {
    let mut cluster = Cluster::start_with("replay-snapshot", 60, &["--snapshot-every=1"]).await;
    let leader = cluster.leader(None).await;
    let (environment, leases) = cluster.leases(leader, 1).await;
    let (work, token) = &leases[0];
    let origin = crate::origin::RequestOrigin::header(0x5eed_0000_0000_0000_0000_0000_0000_0001);
    let http = cluster.http.clone();
    let attempt = |replay: bool, base: &str| {
        let mut request = http
            .post(format!("{base}{}", heartbeat(&environment, work, token)))
            .bearer_auth(TOKEN)
            .header(crate::origin::ORIGIN_HEADER, &origin)
            .timeout(Duration::from_secs(10));
        if replay {
            request = request.header(crate::origin::REPLAY_HEADER, "1");
        }
        async move {
            let response = request.send().await.expect("an answer");
            let status = response.status().as_u16();
            let bytes = response.bytes().await.expect("a body");
            let body: Value = serde_json::from_slice(&bytes).expect("a JSON body");
            (status, body)
        }
    };
    // The first attempt, as the leader sees a forwarded change; its answer is then lost.
    let (status, first) = attempt(false, &cluster.node(leader).base).await;
    assert_eq!(status, 200, "{first}");
    let renewed = first["last_heartbeat"]
        .as_str()
        .expect("a token")
        .to_owned();
    cluster.converged().await;

    // Every member snapshots (`--snapshot-every=1`) past the heartbeat's entry, so after a
    // restart none applies it again from its log: what it knows of it is the snapshot's.
    let applied = cluster
        .node(leader)
        .shared
        .submit
        .cluster_status()
        .last_applied_index;
    let started = Instant::now();
    for id in 1..=3 {
        let file = cluster
            .dir
            .join(format!("node{id}"))
            .join(crate::raft::SNAPSHOT_FILE);
        while crate::raft::snapshot_file_index(&file).is_none_or(|index| index < applied) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "member {id} has no snapshot covering index {applied}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut restarts = Vec::new();
    for id in 1..=3 {
        let node = cluster.node(id);
        let address = node.base.trim_start_matches("http://").to_owned();
        restarts.push((id, node.args.clone(), address));
        cluster.stop(id).await;
    }
    for (id, args, address) in restarts {
        cluster.restart(id, args, &address).await;
    }
    let leader = cluster.leader(None).await;

    let (status, replayed) = attempt(true, &cluster.node(leader).base).await;
    assert_eq!(
        (status, &replayed),
        (200, &first),
        "the retry is answered as the first attempt was"
    );
    let item = cluster.item(leader, &environment, work).await;
    assert_eq!(
        item["latest_heartbeat_at"].as_str(),
        Some(renewed.as_str()),
        "applied once: {item}"
    );
    cluster.shutdown().await;
}
