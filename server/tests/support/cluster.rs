//! Three (or more) `worklease-server` members on loopback, started as child processes with
//! data directories in a temporary directory, and what the cluster tests do to them: start,
//! `kill -9`, restart, add and remove members, wait for a leader and for the replicas to
//! converge.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Client, Server, TempDir, CLUSTER_SECRET, CLUSTER_SECRET_HEADER, TOKEN};

/// Three members on loopback (more once added); a member is `None` while it is down.
pub(crate) struct Cluster {
    pub(crate) dir: TempDir,
    pub(crate) ports: Vec<u16>,
    pub(crate) nodes: Vec<Option<Server>>,
    /// The host members are named by in `--peers` and `--listen`.
    pub(crate) host: String,
    /// Flags every member gets, then flags per member.
    pub(crate) extra: Vec<String>,
    pub(crate) own: Vec<Vec<String>>,
    /// Environment variables per member.
    pub(crate) env: Vec<Vec<(String, String)>>,
    /// The cluster secret the test presents on internal routes (`digest`).
    pub(crate) secret: String,
}

impl Cluster {
    pub(crate) fn start(name: &str, extra: &[&str]) -> Self {
        Self::start_with(name, extra, &[&[], &[], &[]])
    }

    pub(crate) fn start_with(name: &str, extra: &[&str], own: &[&[&str]; 3]) -> Self {
        Self::start_with_env(name, extra, own, vec![Vec::new(); 3])
    }

    pub(crate) fn start_with_env(
        name: &str,
        extra: &[&str],
        own: &[&[&str]; 3],
        env: Vec<Vec<(String, String)>>,
    ) -> Self {
        Self::start_on("127.0.0.1", name, extra, own, env)
    }

    /// Three members named `host:PORT` (a host name or an IP address).
    pub(crate) fn start_on(
        host: &str,
        name: &str,
        extra: &[&str],
        own: &[&[&str]; 3],
        env: Vec<Vec<(String, String)>>,
    ) -> Self {
        let ports = (0..3).map(|_| free_port()).collect();
        let mut cluster = Self {
            dir: TempDir::new(name),
            ports,
            nodes: vec![None, None, None],
            host: host.to_owned(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            own: own
                .iter()
                .map(|flags| flags.iter().map(|s| (*s).to_owned()).collect())
                .collect(),
            env,
            secret: CLUSTER_SECRET.to_owned(),
        };
        for n in 1..=3 {
            cluster.launch(n);
        }
        cluster
    }

    /// Three members of which `late` is not started (the others seed the cluster without it).
    pub(crate) fn start_without(name: &str, late: usize) -> Self {
        let mut cluster = Self {
            dir: TempDir::new(name),
            ports: (0..3).map(|_| free_port()).collect(),
            nodes: vec![None, None, None],
            host: "127.0.0.1".to_owned(),
            extra: Vec::new(),
            own: vec![Vec::new(); 3],
            env: vec![Vec::new(); 3],
            secret: CLUSTER_SECRET.to_owned(),
        };
        for n in (1..=3).filter(|n| *n != late) {
            cluster.launch(n);
        }
        cluster
    }

    pub(crate) fn data_dir(&self, n: usize) -> std::path::PathBuf {
        self.dir.0.join(format!("node{n}"))
    }

    /// `host:PORT` of member `n`.
    pub(crate) fn address(&self, n: usize) -> String {
        format!("{}:{}", self.host, self.ports[n - 1])
    }

    /// Starts member `n`: the three seed members list each other in `--peers`; a member
    /// added later lists itself and node 1 (docs/clustering.md, "Growing the cluster").
    pub(crate) fn launch(&mut self, n: usize) {
        let listed: Vec<usize> = if n <= 3 {
            (1..=3).collect()
        } else {
            vec![1, n]
        };
        let peers = listed
            .iter()
            .map(|m| format!("{m}={}", self.address(*m)))
            .collect::<Vec<_>>()
            .join(",");
        let listen = self.address(n);
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
        // Every member shares the test's cluster secret unless its own flags name another.
        if !args.contains(&"--cluster-secret") {
            args.extend(["--cluster-secret", CLUSTER_SECRET]);
        }
        let env: Vec<(&str, &str)> = self.env[n - 1]
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let server = Server::start_raw(&args, &env);
        self.nodes[n - 1] = Some(server);
    }

    /// A port for a new member `n` (the next id), which is not started yet.
    pub(crate) fn new_member(&mut self) -> usize {
        self.ports.push(free_port());
        self.nodes.push(None);
        self.own.push(Vec::new());
        self.env.push(Vec::new());
        self.ports.len()
    }

    /// An admin request to member `via`.
    pub(crate) fn admin(
        &self,
        via: usize,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        Client::new(&self.node(via).base)
            .call(method, path, body)
            .unwrap_or_else(|| panic!("{method} {path} at node {via}: no answer\n{}", self.logs()))
    }

    /// `POST /cluster/members` for member `n` through `via`, sent again while it answers 503
    /// (not caught up yet); the membership it answers.
    pub(crate) fn add_member(&self, via: usize, n: usize) -> Value {
        let body = json!({"node_id": n, "address": self.address(n)});
        self.admin_until_done(via, "POST", "/cluster/members", Some(&body), 90)
    }

    /// `DELETE /cluster/members/{n}` through `via`; the membership it answers.
    pub(crate) fn remove_member(&self, via: usize, n: usize) -> Value {
        self.admin_until_done(via, "DELETE", &format!("/cluster/members/{n}"), None, 30)
    }

    /// `DELETE /cluster/members/{n}` through `via` answers 409, its message saying `why`.
    pub(crate) fn removal_refused(&self, via: usize, n: usize, why: &str) {
        let (status, refusal) = self.admin(via, "DELETE", &format!("/cluster/members/{n}"), None);
        assert_eq!(status, 409, "{refusal}");
        assert!(
            refusal["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(why)),
            "{refusal}"
        );
    }

    /// An admin call through `via`, asked again while it answers 503 (a membership change in
    /// progress), for at most `limit_s` seconds; the 200 answer.
    pub(crate) fn admin_until_done(
        &self,
        via: usize,
        method: &str,
        path: &str,
        body: Option<&Value>,
        limit_s: u64,
    ) -> Value {
        let started = Instant::now();
        loop {
            let (status, answer) = self.admin(via, method, path, body);
            if status == 200 {
                return answer;
            }
            assert!(
                status == 503 && started.elapsed() < Duration::from_secs(limit_s),
                "{method} {path}: {status} {answer}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(crate) fn node(&self, n: usize) -> &Server {
        self.nodes[n - 1].as_ref().expect("the node runs")
    }

    pub(crate) fn alive(&self) -> Vec<usize> {
        (1..=self.nodes.len())
            .filter(|n| self.nodes[n - 1].is_some())
            .collect()
    }

    /// `GET /cluster` of node `n`.
    pub(crate) fn status(&self, n: usize) -> Option<Value> {
        Client::new(&self.node(n).base)
            .call("GET", "/cluster", None)
            .map(|(_, body)| body)
    }

    /// Waits until a live node says it leads; returns its id.
    pub(crate) fn wait_for_leader(&self, limit: Duration) -> usize {
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

    pub(crate) fn kill_9(&mut self, n: usize) {
        let server = self.nodes[n - 1].take().expect("the node runs");
        let status = Command::new("kill")
            .args(["-9", &server.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        drop(server);
    }

    /// `GET /internal/digest` of node `n`: its applied index and its table's digest.
    pub(crate) fn digest(&self, n: usize) -> (u64, String) {
        let reply = self.node(n).request(
            "GET",
            "/internal/digest",
            &[(CLUSTER_SECRET_HEADER, &self.secret)],
            None,
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        (
            reply.json["last_applied_index"].as_u64().expect("an index"),
            reply.json["digest"].as_str().expect("a digest").to_owned(),
        )
    }

    /// Waits until every live node applied the same index and holds the same table (the same
    /// digest at that index); returns that index and digest.
    pub(crate) fn wait_converged(&self, limit: Duration) -> (u64, String) {
        let started = Instant::now();
        loop {
            let digests: Vec<_> = self.alive().iter().map(|n| self.digest(*n)).collect();
            if digests.windows(2).all(|w| w[0] == w[1]) {
                let logs = self.logs();
                assert!(!logs.contains("panicked"), "a member panicked:\n{logs}");
                return digests[0].clone();
            }
            assert!(
                started.elapsed() < limit,
                "replicas differ after {limit:?}: {digests:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wipes member `wiped` (kill -9, its data directory removed), creates `works` items in
    /// `environment` through `leader` while it is down, and starts it again: it is refused
    /// (it forgot its votes) and takes no part while the others go on. Then it is removed and
    /// added again through `leader` (docs/clustering.md, "Replacing a dead member"), and
    /// waited for until it caught up from the leader's snapshot; the converged index and
    /// digest.
    pub(crate) fn wipe_and_catch_up(
        &mut self,
        wiped: usize,
        leader: usize,
        environment: &str,
        works: usize,
    ) -> (u64, String) {
        self.kill_9(wiped);
        std::fs::remove_dir_all(self.data_dir(wiped)).expect("wipes the directory");
        for _ in 0..works {
            self.node(leader).work(environment);
        }
        let term = self.status(leader).expect("the leader answers")["term"].clone();
        self.launch(wiped);
        let refusal = format!("refused: node {wiped} is a voter of the cluster");
        let started = Instant::now();
        while !self.node(wiped).logged(&refusal) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the wiped member was not refused:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            self.node(wiped).logged("DELETE /cluster/members/"),
            "{}",
            self.logs()
        );
        // It disturbed nothing: the same leader in the same term, and it applied nothing.
        let status = self.status(leader).expect("the leader answers");
        assert_eq!(
            (status["role"].clone(), status["term"].clone()),
            (json!("leader"), term)
        );
        assert_eq!(self.digest(wiped).0, 0, "a refused member applies nothing");
        self.remove_member(leader, wiped);
        let members = self.add_member(leader, wiped);
        assert_eq!(role_of(&members, wiped), Some("voter"), "{members}");
        let converged = self.wait_converged(Duration::from_secs(30));
        assert!(
            self.node(wiped)
                .logged("snapshot installed from the leader"),
            "the wiped node did not install a snapshot:\n{}",
            self.logs()
        );
        converged
    }

    pub(crate) fn logs(&self) -> String {
        (1..=self.nodes.len())
            .filter_map(|n| {
                self.nodes[n - 1]
                    .as_ref()
                    .map(|s| format!("--- node {n}\n{}", s.stderr.lock()))
            })
            .collect()
    }
}

/// Node `n`'s role in a `/cluster/members` answer; `None` when it is not listed.
pub(crate) fn role_of(members: &Value, n: usize) -> Option<&str> {
    members["data"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["node_id"] == n)
        .map(|m| m["role"].as_str().expect("a role"))
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
