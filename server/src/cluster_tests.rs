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
/// What the members present to each other (`--cluster-secret`).
const CLUSTER_SECRET: &str = "in-process-cluster-secret-0123456789";

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
                format!("--cluster-secret={CLUSTER_SECRET}"),
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

    /// Partitions members `a` and `b` from each other (both directions), or heals that.
    fn split(&self, a: usize, b: usize, cut: bool) {
        self.links(a).set_cut_from(b as u64, cut);
        self.links(b).set_cut_from(a as u64, cut);
    }

    /// Heals every cut.
    fn heal(&self) {
        for node in self.running() {
            let links = self.links(node.id);
            links.set_cut(false);
            for peer in 1..=3 {
                links.set_cut_from(peer, false);
            }
        }
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

    /// Waits until every running member applied the same index and holds the same table (the
    /// same digest, `GET /internal/digest`'s, at that index).
    async fn converged(&self) {
        let started = Instant::now();
        loop {
            let digests: Vec<_> = self
                .running()
                .map(|n| {
                    let (bytes, index) = n.shared.submit.local_snapshot();
                    (index, crate::http::table_digest(&bytes))
                })
                .collect();
            if digests.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "replicas differ: {digests:?}"
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

/// Sends `request`: its status and JSON body (`Null` when the body is not JSON; `None`: no
/// answer).
async fn answer(request: reqwest::RequestBuilder) -> Option<(u16, Value)> {
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.ok()?;
    Some((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
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
    answer(request).await
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
async fn a_read_on_a_leader_briefly_out_of_touch_waits_instead_of_answering_503() {
    let cluster = Cluster::start("read-patience", 60).await;
    let leader = cluster.leader(None).await;
    let (environment, leases) = cluster.leases(leader, 1).await;
    cluster.converged().await;
    let term = cluster.node(leader).shared.submit.cluster_status().term;

    // Out of touch for less than a follower waits before it stands for election: the leader's
    // first rounds to confirm its leadership fail, and it tries again.
    cluster.links(leader).set_cut(true);
    let read = cluster.spawn_call(
        leader,
        reqwest::Method::GET,
        &format!("/v1/environments/{environment}/work/{}", leases[0].0),
        Duration::from_secs(10),
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    cluster.links(leader).set_cut(false);
    let (status, body) = read.await.expect("the task").expect("an answer");
    let now = cluster.node(leader).shared.submit.cluster_status();
    // An election meanwhile (a very slow machine) would make 503 the right answer.
    assert_eq!(
        (now.role, now.term),
        ("leader", term),
        "the leadership changed"
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "active", "{body}");
    cluster.shutdown().await;
}

/// A failover to a member whose clock is `skew_micros` off: nothing changes in the failover, a
/// renewal through the new leader is stamped at the real time (on the table's timeline), and
/// a lease left alone lapses at its deadline, neither early nor late.
async fn failover_to_a_skewed_clock(name: &str, skew_micros: i64) {
    let mut cluster = Cluster::start(name, 10).await;
    let old = cluster.leader(None).await;
    let (environment, leases) = cluster.leases(old, 2).await;
    let (renewed, left) = (&leases[0], &leases[1]);
    let left_deadline = micros(&left.1) + 10_000_000;
    cluster.converged().await;
    let before = cluster.item(old, &environment, &left.0).await;
    for node in cluster.running().filter(|n| n.id != old) {
        node.clock.set_skew_micros(skew_micros);
    }
    cluster.stop(old).await;
    let new = cluster.leader(None).await;

    // Nothing changed in the failover: a read at the new leader already goes by the table's
    // timeline (an uncorrected clock 60 s ahead would show the lease lapsed).
    assert_eq!(cluster.item(new, &environment, &left.0).await, before);
    // A renewal through the new leader is stamped on the table's timeline, not 60 s off:
    // its lease runs a full TTL from now.
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
    let offset = cluster.node(new).clock.offset_micros();
    assert!(
        (offset + skew_micros).abs() < 1_500_000,
        "the new leader's offset is {offset} µs for a skew of {skew_micros} µs"
    );
    // The lease left alone lapses at its deadline, not 60 s before or after it.
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
    cluster.converged().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_60_s_behind_neither_shortens_nor_extends_a_lease() {
    failover_to_a_skewed_clock("behind", -60_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_leader_60_s_ahead_neither_shortens_nor_extends_a_lease() {
    failover_to_a_skewed_clock("ahead", 60_000_000).await;
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
    let shared = &cluster.node(follower).shared;
    let metrics = shared
        .metrics
        .render([0; 5], &shared.submit.cluster_status());
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

/// `GET /readyz` of member `id`: its status and body.
async fn readyz(cluster: &Cluster, id: usize) -> (u16, Value) {
    let response = cluster
        .http
        .get(format!("{}/readyz", cluster.node(id).base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("a body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Polls `/readyz` of member `id` until it answers `want`, for up to 20 s; its last body.
async fn wait_ready(cluster: &Cluster, id: usize, want: u16) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = readyz(cluster, id).await;
        if status == want {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "member {id}'s /readyz still answers {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_answers_503_without_a_leader_and_200_once_caught_up() {
    let cluster = Cluster::start("readyz", 60).await;
    let leader = cluster.leader(None).await;
    let follower = if leader == 1 { 2 } else { 1 };
    for id in 1..=3 {
        wait_ready(&cluster, id, 200).await;
    }
    // Cut off, the follower stops hearing from the leader and stands for election: no
    // leader is known there. It is still alive.
    cluster.links(follower).set_cut(true);
    let body = wait_ready(&cluster, follower, 503).await;
    assert_eq!(body["status"], "not_ready", "{body}");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no leader")),
        "{body}"
    );
    let alive = cluster
        .http
        .get(format!("{}/healthz", cluster.node(follower).base))
        .send()
        .await
        .expect("an answer");
    assert_eq!(alive.status().as_u16(), 200);
    // Meanwhile the others go on: the follower has entries to catch up on.
    let (environment, leases) = cluster.leases(leader, 3).await;
    cluster.links(follower).set_cut(false);
    wait_ready(&cluster, follower, 200).await;
    // Ready means caught up: its table is the leader's.
    cluster.converged().await;
    let item = cluster.item(follower, &environment, &leases[2].0).await;
    assert_eq!(item["state"], "active", "{item}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_whose_raft_core_stops_stops_serving_with_an_error() {
    let mut cluster = Cluster::start("dead-core", 60).await;
    let leader = cluster.leader(None).await;
    let victim = if leader == 1 { 2 } else { 1 };
    // The test hook: stop the member's Raft core under it, as a panic in it would.
    let node = cluster.nodes[victim - 1].take().expect("the member runs");
    node.shared
        .submit
        .durable()
        .expect("replicated")
        .raft()
        .shutdown()
        .await
        .expect("the core stops");
    // `serve_on` is what `run::main` awaits: its error is the process's failure exit.
    let served = tokio::time::timeout(Duration::from_secs(10), node.served)
        .await
        .expect("the member stops serving within 10 s")
        .expect("the serving task");
    let why = served.expect_err("it stops with an error, not cleanly");
    assert!(why.contains("raft core stopped"), "{why}");
    // The others go on.
    let leader = cluster.leader(Some(victim)).await;
    cluster.leases(leader, 1).await;
    cluster.shutdown().await;
}

/// What the clients were told: every lease's acknowledged token, and every item created.
struct Acknowledged {
    environment: String,
    leases: Vec<(String, String)>,
    created: Vec<String>,
}

impl Acknowledged {
    /// Renews every lease and creates one item through member `via`, recording what a 200
    /// acknowledged.
    async fn step(&mut self, cluster: &Cluster, via: usize) {
        for (work, token) in &mut self.leases {
            let beat = cluster.beat(via, &self.environment, work, token).await;
            *token = beat["last_heartbeat"].as_str().expect("a token").to_owned();
        }
        let created = cluster
            .ok(
                via,
                reqwest::Method::POST,
                &format!("/v1/environments/{}/work", self.environment),
                Some(json!({"data": {"type": "session", "id": "sess_p"}})),
            )
            .await;
        self.created
            .push(created["id"].as_str().expect("an id").to_owned());
    }

    /// Every acknowledged change, read through member `id`.
    async fn check(&self, cluster: &Cluster, id: usize) {
        for (work, token) in &self.leases {
            let item = cluster.item(id, &self.environment, work).await;
            assert_eq!(item["state"], "active", "{item}");
            assert_eq!(
                item["latest_heartbeat_at"].as_str(),
                Some(token.as_str()),
                "{item}"
            );
        }
        let listed = cluster
            .ok(
                id,
                reqwest::Method::GET,
                &format!("/v1/environments/{}/work?limit=100", self.environment),
                None,
            )
            .await;
        let held: Vec<&str> = listed["data"]
            .as_array()
            .expect("a page")
            .iter()
            .filter_map(|item| item["id"].as_str())
            .collect();
        for id in &self.created {
            assert!(
                held.contains(&id.as_str()),
                "{id} was acknowledged and lost"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_lose_no_acknowledged_change_and_every_table_agrees_after_healing() {
    let cluster = Cluster::start("partitions", 60).await;
    let mut leader = cluster.leader(None).await;
    let (environment, leases) = cluster.leases(leader, 3).await;
    let mut acked = Acknowledged {
        environment,
        leases,
        created: Vec::new(),
    };
    acked.step(&cluster, leader).await;
    let others = |leader: usize| -> (usize, usize) {
        let mut rest = (1..=3).filter(|id| *id != leader);
        (
            rest.next().expect("two others"),
            rest.next().expect("two others"),
        )
    };

    // 1. The leader is isolated: the others elect a new one and go on; a heartbeat sent to
    //    the isolated leader is never acknowledged.
    let isolated = leader;
    cluster.links(isolated).set_cut(true);
    leader = cluster.leader(Some(isolated)).await;
    let (work, token) = acked.leases[0].clone();
    let unacknowledged = cluster.spawn_call(
        isolated,
        reqwest::Method::POST,
        &heartbeat(&acked.environment, &work, &token),
        Duration::from_secs(15),
    );
    acked.step(&cluster, leader).await;
    acked.step(&cluster, leader).await;
    let (status, body) = unacknowledged.await.expect("the task").expect("an answer");
    assert_eq!(status, 503, "the isolated leader acknowledged: {body}");
    cluster.heal();
    cluster.converged().await;

    // 2. The followers are split from each other; the leader still reaches both.
    let (f1, f2) = others(leader);
    cluster.split(f1, f2, true);
    acked.step(&cluster, leader).await;
    // 3. And the leader loses one of them: it goes on with the other.
    cluster.split(leader, f2, true);
    acked.step(&cluster, leader).await;
    cluster.heal();
    cluster.converged().await;

    // 4. The leader is split from both followers (each link cut, not the node): they elect
    //    a new leader and go on.
    let (f1, f2) = others(leader);
    cluster.split(leader, f1, true);
    cluster.split(leader, f2, true);
    let cut_off = leader;
    leader = cluster.leader(Some(cut_off)).await;
    acked.step(&cluster, leader).await;

    // Healed: every member holds the same table (by digest, at the same applied index), and
    // every acknowledged change is in it.
    cluster.heal();
    cluster.converged().await;
    for id in 1..=3 {
        acked.check(&cluster, id).await;
    }
    cluster.converged().await;
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
            .header(crate::cluster_secret::HEADER, CLUSTER_SECRET)
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

/// One request to member `id` tagged with `origin` (a replay when `replay`): its status and
/// JSON body, `None` when the connection gave no answer.
async fn tagged(
    cluster: &Cluster,
    id: usize,
    (method, path): (reqwest::Method, &str),
    body: Option<&[u8]>,
    origin: u128,
    replay: bool,
) -> Option<(u16, Value)> {
    // As a member sends it: only a member's origin tags are honoured.
    let secret = Some(CLUSTER_SECRET);
    tagged_by(cluster, id, (method, path), body, (origin, replay), secret).await
}

/// [`tagged`], sending `secret` in the cluster secret's header (`None`: no header).
async fn tagged_by(
    cluster: &Cluster,
    id: usize,
    (method, path): (reqwest::Method, &str),
    body: Option<&[u8]>,
    (origin, replay): (u128, bool),
    secret: Option<&str>,
) -> Option<(u16, Value)> {
    let mut request = cluster
        .http
        .request(method, format!("{}{path}", cluster.node(id).base))
        .bearer_auth(TOKEN)
        .header(
            crate::origin::ORIGIN_HEADER,
            crate::origin::RequestOrigin::header(origin),
        )
        .timeout(Duration::from_secs(10));
    if replay {
        request = request.header(crate::origin::REPLAY_HEADER, "1");
    }
    if let Some(secret) = secret {
        request = request.header(crate::cluster_secret::HEADER, secret);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_vec());
    }
    answer(request).await
}

/// The origin and replay tags are a member's to send (docs/contract.md §10): from a client
/// without the cluster secret they are ignored, so a "replay" of a heartbeat the leader has a
/// record of is served as a new heartbeat (412: its token moved), where a member's replay is
/// answered from the record (200).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn origin_tags_are_honoured_only_with_the_cluster_secret() {
    let cluster = Cluster::start("origin-tags", 60).await;
    let leader = cluster.leader(None).await;
    let (environment, leases) = cluster.leases(leader, 1).await;
    let (work, token) = &leases[0];
    let origin = 0x0a11_0000_0000_0000_0000_0000_0000_0001;
    let beat = heartbeat(&environment, work, token);
    let post = reqwest::Method::POST;
    let first = tagged(&cluster, leader, (post.clone(), &beat), None, origin, false).await;
    assert_eq!(first.as_ref().map(|a| a.0), Some(200), "{first:?}");
    for secret in [None, Some("not-the-cluster-secret-0123456789abcdef")] {
        let (status, body) = tagged_by(
            &cluster,
            leader,
            (post.clone(), &beat),
            None,
            (origin, true),
            secret,
        )
        .await
        .expect("an answer");
        assert_eq!(status, 412, "{secret:?}: {body}");
    }
    let member = tagged(&cluster, leader, (post.clone(), &beat), None, origin, true).await;
    assert_eq!(member.map(|a| a.0), Some(200));
    let _ = std::fs::remove_dir_all(&cluster.dir);
}

/// The error type of an error envelope.
fn error_type(body: &Value) -> Option<&str> {
    body["error"]["type"].as_str()
}

/// A replay tagged with an earlier request's origin id but sent on another route, or on the
/// same route for another item, is refused with 409 and changes nothing; a replay that
/// repeats the request is answered as its first attempt was. (A poll replayed so used to
/// reach an `unreachable!` and drop the connection; a stop was answered with the recorded
/// answer of an ack and stopped nothing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_tagged_with_an_earlier_origin_on_a_different_route_answers_409() {
    let cluster = Cluster::start("replay-mismatch", 60).await;
    let leader = cluster.leader(None).await;
    let (environment, leases) = cluster.leases(leader, 2).await;
    let (work, token) = &leases[0];
    let (other, _) = &leases[1];
    let origin = 0x0c0f_fee0_0000_0000_0000_0000_0000_0001;
    let items = format!("/v1/environments/{environment}/work");
    let beat = heartbeat(&environment, work, token);
    let post = reqwest::Method::POST;
    let (status, first) = tagged(&cluster, leader, (post.clone(), &beat), None, origin, false)
        .await
        .expect("an answer");
    assert_eq!(status, 200, "{first}");

    for (route, body) in [
        (
            (post.clone(), format!("{items}/{work}/stop")),
            Some(&b"{}"[..]),
        ),
        ((post.clone(), format!("{items}/{work}/ack")), None),
        ((reqwest::Method::GET, format!("{items}/poll")), None),
        ((post.clone(), heartbeat(&environment, other, token)), None),
        (
            (post.clone(), items.clone()),
            Some(&br#"{"data": {"type": "session", "id": "sess_x"}}"#[..]),
        ),
    ] {
        let (status, body) = tagged(
            &cluster,
            leader,
            (route.0.clone(), &route.1),
            body,
            origin,
            true,
        )
        .await
        .expect("an answer, not a dropped connection");
        assert_eq!(status, 409, "{} {}: {body}", route.0, route.1);
        assert_eq!(error_type(&body), Some("invalid_request_error"), "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("first used for a heartbeat request"),
            "{message}"
        );
    }
    // The stop stopped nothing.
    let item = cluster.item(leader, &environment, work).await;
    assert_eq!(item["state"], "active", "{item}");
    // The same request replayed is still answered from the record.
    let (status, replayed) = tagged(&cluster, leader, (post, &beat), None, origin, true)
        .await
        .expect("an answer");
    assert_eq!((status, &replayed), (200, &first));
    cluster.shutdown().await;
}

/// A small deterministic generator (xorshift64*), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random (origin, route, body) requests, replays or first attempts, against one leader:
/// every one is answered with a well-formed HTTP answer (JSON, an error envelope when it is
/// refused, never a dropped connection or a 500), and a replay whose origin was last recorded
/// for another request is refused with 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_replays_against_a_leader_are_answered_and_mismatches_refused() {
    const SEED: u64 = 0x5eed_cafe_f00d_0001;
    const ROUNDS: usize = 300;
    let cluster = Cluster::start("replay-random", 60).await;
    let leader = cluster.leader(None).await;
    let (environment, leases) = cluster.leases(leader, 3).await;
    let items = format!("/v1/environments/{environment}/work");
    let mut rng = Rng(SEED);
    // What each origin's record was last known to hold: (route kind, work index).
    let mut recorded: std::collections::HashMap<u128, Option<(usize, usize)>> =
        std::collections::HashMap::new();
    // How many mismatched replays were checked for their 409.
    let mut checked = 0;
    let mut history: std::collections::HashMap<u128, Vec<String>> =
        std::collections::HashMap::new();
    let bodies: [&[u8]; 4] = [b"{}", b"not json", br#"{"force": true}"#, b"[1,2"];
    for round in 0..ROUNDS {
        let origin = 1 + rng.below(4) as u128;
        let replay = rng.below(3) > 0;
        let kind = rng.below(6);
        let item = rng.below(leases.len());
        let (work, token) = &leases[item];
        let garbage = rng.below(5) == 0;
        let (method, path, body): (reqwest::Method, String, Option<&[u8]>) = match kind {
            0 => (
                reqwest::Method::POST,
                heartbeat(&environment, work, token),
                None,
            ),
            1 => (reqwest::Method::POST, format!("{items}/{work}/ack"), None),
            2 => (
                reqwest::Method::POST,
                format!("{items}/{work}/stop"),
                Some(if garbage {
                    bodies[1 + rng.below(3)]
                } else {
                    b"{}"
                }),
            ),
            3 => (reqwest::Method::GET, format!("{items}/poll"), None),
            4 => (
                reqwest::Method::POST,
                format!("{items}/{work}"),
                Some(if garbage {
                    bodies[rng.below(4)]
                } else {
                    br#"{"metadata": {"k": "v"}}"#
                }),
            ),
            _ => (
                reqwest::Method::POST,
                items.clone(),
                Some(if garbage {
                    bodies[rng.below(4)]
                } else {
                    br#"{"data": {"type": "session", "id": "sess_r"}}"#
                }),
            ),
        };
        // Routes without an item ask the same of every item.
        let asked = (kind, if matches!(kind, 3 | 5) { 0 } else { item });
        let context = format!("seed {SEED:#x} round {round}: {method} {path} origin {origin} replay {replay} garbage {garbage}");
        let (status, answer) = tagged(&cluster, leader, (method, &path), body, origin, replay)
            .await
            .unwrap_or_else(|| panic!("{context}: no answer (a dropped connection?)"));
        assert!(status < 500, "{context}: {status} {answer}");
        // A 2xx body may be JSON `null` (a poll that found nothing); a refusal is an envelope.
        if status >= 400 {
            assert!(
                error_type(&answer).is_some(),
                "{context}: {status} {answer}"
            );
        }
        let previous = recorded.get(&origin).copied().flatten();
        let mismatch = status == 409
            && answer["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("was first used for"));
        if replay && !garbage {
            if let Some(previous) = previous.filter(|previous| *previous != asked) {
                checked += 1;
                assert!(
                    mismatch,
                    "{context}: recorded {previous:?}: {status} {answer}\nthis origin so far: {:#?}",
                    history.get(&origin)
                );
            }
        }
        history.entry(origin).or_default().push(format!(
            "round {round}: {kind} on {item}, replay {replay}, garbage {garbage}: {status} {}",
            error_type(&answer).unwrap_or("")
        ));
        // What the record holds now: this request's, when it was surely applied and
        // recorded (a 2xx that went to the log: a first poll may find nothing and write
        // nothing); unknown after any other answer but a refused replay, which records
        // nothing.
        match (status, kind, replay) {
            _ if mismatch => {}
            (200..=299, 3, false) => {
                recorded.insert(origin, None);
            }
            (200..=299, ..) if !(replay && previous.is_some()) => {
                recorded.insert(origin, Some(asked));
            }
            (200..=299, ..) => {}
            _ => {
                recorded.insert(origin, None);
            }
        }
    }
    assert!(checked >= 20, "only {checked} mismatched replays were sent");
    cluster.shutdown().await;
}

/// A Raft message as a member would send it to member `id`'s `route`: with `secret` in the
/// cluster secret's header (none: no header), the members' configuration fingerprint, and
/// `auth` as further headers; the status and the body's text.
async fn raft_call(
    cluster: &Cluster,
    id: usize,
    route: &str,
    secret: Option<&str>,
    auth: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let node = cluster.node(id);
    let config = Cli::try_parse_from(&node.args)
        .expect("flags parse")
        .config();
    let mut request = cluster
        .http
        .post(format!("{}{route}", node.base))
        .header(
            crate::raft::CONFIG_HEADER,
            crate::raft::config_fingerprint(&config),
        )
        .header("content-type", "application/octet-stream")
        .timeout(Duration::from_secs(10))
        .body(body);
    if let Some(secret) = secret {
        request = request.header(crate::cluster_secret::HEADER, secret);
    }
    for (name, value) in auth {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// An append from `leader` in `term` after `prev` (an index in the same term), carrying
/// `entries` (index, payload).
fn forged_append(
    term: u64,
    leader: u64,
    prev: Option<u64>,
    entries: Vec<(u64, openraft::EntryPayload<crate::raft::TypeConfig>)>,
) -> Vec<u8> {
    use openraft::{CommittedLeaderId, Entry, LogId, Vote};
    let id = |index| LogId::new(CommittedLeaderId::new(term, leader), index);
    crate::raft::encode_append(&openraft::raft::AppendEntriesRequest {
        vote: Vote::new_committed(term, leader),
        prev_log_id: prev.map(id),
        entries: entries
            .into_iter()
            .map(|(index, payload)| Entry {
                log_id: id(index),
                payload,
            })
            .collect(),
        leader_commit: None,
    })
}

/// Forged Raft messages (docs/contract.md §10): without the cluster secret (nothing, an admin
/// token, a wrong secret) every internal route answers the same 401, which names nothing of the
/// member's configuration, and nothing changes. With the secret but a body that does not fit
/// (truncated, entries that do not follow the log, a membership without voters, a snapshot
/// chunk out of order) the member refuses it and its Raft core keeps running. A higher term
/// with the secret is a member's word: the leader steps down, and the cluster elects again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_raft_messages_are_refused_and_no_member_stops() {
    use openraft::{BasicNode, EntryPayload, Membership};
    use std::collections::{BTreeMap, BTreeSet};

    let cluster = Cluster::start("forged", 60).await;
    let leader = cluster.leader(None).await;
    let follower = if leader == 1 { 2 } else { 1 };
    let before = cluster.node(follower).shared.submit.cluster_status();
    let term = before.term;
    let higher = forged_append(term + 100, leader as u64, None, Vec::new());

    let bearer = format!("Bearer {TOKEN}");
    let wrong = "not-the-cluster-secret-0123456789abcdef";
    for route in [
        crate::raft::APPEND_ROUTE,
        crate::raft::VOTE_ROUTE,
        crate::raft::SNAPSHOT_ROUTE,
        "/internal/digest",
        "/internal/other",
    ] {
        for (secret, auth) in [
            (None, vec![]),
            (None, vec![("authorization", bearer.as_str())]),
            (None, vec![("x-api-key", TOKEN)]),
            (Some(wrong), vec![("authorization", bearer.as_str())]),
            (Some(TOKEN), vec![]),
        ] {
            let (status, body) =
                raft_call(&cluster, follower, route, secret, &auth, higher.clone()).await;
            assert_eq!(status, 401, "{route} {secret:?} {auth:?}: {body}");
            let answer: Value = serde_json::from_str(&body).expect("an error envelope");
            assert_eq!(
                answer["error"]["message"], "authentication failed",
                "{route}: {body}"
            );
        }
    }
    let after = cluster.node(follower).shared.submit.cluster_status();
    assert_eq!((after.term, after.leader_id), (term, Some(leader as u64)));

    // With the secret: bodies that do not fit are refused, with 400, and change nothing.
    let applied = before.last_applied_index;
    let mut truncated = forged_append(term, leader as u64, None, Vec::new());
    truncated.truncate(truncated.len() / 2);
    let no_voters = Membership::new(
        Vec::<BTreeSet<u64>>::new(),
        BTreeMap::<u64, BasicNode>::new(),
    );
    let joint_of_three = Membership::new(
        vec![
            BTreeSet::from([1]),
            BTreeSet::from([2]),
            BTreeSet::from([3]),
        ],
        BTreeMap::<u64, BasicNode>::new(),
    );
    for (what, body) in [
        ("truncated", truncated),
        (
            "a gap",
            forged_append(
                term,
                leader as u64,
                Some(applied),
                vec![(applied + 2, EntryPayload::Blank)],
            ),
        ),
        (
            "a membership without voters",
            forged_append(
                term,
                leader as u64,
                Some(applied),
                vec![(applied + 1, EntryPayload::Membership(no_voters))],
            ),
        ),
        (
            "three configurations at once",
            forged_append(
                term,
                leader as u64,
                Some(applied),
                vec![(applied + 1, EntryPayload::Membership(joint_of_three))],
            ),
        ),
    ] {
        let (status, body) = raft_call(
            &cluster,
            follower,
            crate::raft::APPEND_ROUTE,
            Some(CLUSTER_SECRET),
            &[],
            body,
        )
        .await;
        assert_eq!(status, 400, "{what}: {body}");
    }
    // A snapshot chunk out of order: openraft's own refusal, answered; nothing installed.
    let members = Membership::new(
        vec![BTreeSet::from([1, 2, 3])],
        (1..=3)
            .map(|n| {
                (
                    n,
                    BasicNode::new(cluster.node(n as usize).base.trim_start_matches("http://")),
                )
            })
            .collect::<BTreeMap<_, _>>(),
    );
    let at = openraft::LogId::new(
        openraft::CommittedLeaderId::new(term, leader as u64),
        applied + 1000,
    );
    let chunk = crate::raft::encode_install(&openraft::raft::InstallSnapshotRequest {
        vote: openraft::Vote::new_committed(term, leader as u64),
        meta: openraft::SnapshotMeta {
            last_log_id: Some(at),
            last_membership: openraft::StoredMembership::new(Some(at), members),
            snapshot_id: "forged".to_owned(),
        },
        offset: 4096,
        data: vec![0; 16],
        done: false,
    });
    let (status, body) = raft_call(
        &cluster,
        follower,
        crate::raft::SNAPSHOT_ROUTE,
        Some(CLUSTER_SECRET),
        &[],
        chunk,
    )
    .await;
    assert!(
        status == 200 || status == 503,
        "a chunk out of order: {status} {body}"
    );
    let after = cluster.node(follower).shared.submit.cluster_status();
    assert_eq!(after.term, term, "{after:?}");
    assert!(after.last_applied_index < applied + 1000, "{after:?}");

    // A higher term with the secret is a member's word: the follower takes it, the leader
    // hears of it on its next append, and the cluster leads in that term or a later one, and
    // serves.
    let (status, body) = raft_call(
        &cluster,
        follower,
        crate::raft::APPEND_ROUTE,
        Some(CLUSTER_SECRET),
        &[],
        higher,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    loop {
        let statuses: Vec<_> = cluster
            .running()
            .map(|node| node.shared.submit.cluster_status())
            .collect();
        if statuses
            .iter()
            .any(|status| status.role == "leader" && status.term >= term + 100)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no leader after the forged term: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = cluster.leader(None).await;
    cluster
        .ok(
            leader,
            reqwest::Method::POST,
            "/v1/environments",
            Some(json!({"name": "after-forgeries"})),
        )
        .await;
    cluster.converged().await;
    for node in cluster.running() {
        assert!(!node.served.is_finished(), "member {} stopped", node.id);
    }
    let _ = std::fs::remove_dir_all(&cluster.dir);
}
