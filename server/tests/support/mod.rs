//! Starts the server (`worklease-server`) as a child process on an ephemeral loopback
//! port and talks to it with a real HTTP client.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use ureq::http::Request;

pub(crate) mod cluster;
pub(crate) mod tls;

/// The token the tests start servers with.
pub(crate) const TOKEN: &str = "test-token-1";

/// The cluster secret the tests start replicated members with (`--cluster-secret`).
pub(crate) const CLUSTER_SECRET: &str = "test-cluster-secret-0123456789abcdef";

/// The header members send the cluster secret in.
pub(crate) const CLUSTER_SECRET_HEADER: &str = "x-worklease-cluster-secret";

/// The server binary, which cargo builds before the integration tests.
pub(crate) fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_worklease-server"))
}

/// A running server; killed when dropped.
pub(crate) struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    /// Lines of stdout after the first.
    pub(crate) stdout: Arc<Mutex<Vec<String>>>,
    /// Everything on stderr so far.
    pub(crate) stderr: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

/// A response, with the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) text: String,
    pub(crate) json: Value,
    pub(crate) request_id: Option<String>,
}

impl Server {
    /// Starts the server with `--token TOKEN --listen 127.0.0.1:0` and `args`.
    pub(crate) fn start(args: &[&str]) -> Self {
        let mut all = vec!["--listen", "127.0.0.1:0", "--token", TOKEN];
        all.extend_from_slice(args);
        Self::start_raw(&all, &[])
    }

    /// Starts the server with exactly these arguments and environment variables.
    pub(crate) fn start_raw(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary());
        command
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Only what the test names: no WORKLEASE_* setting leaks in from the environment.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("WORKLEASE_") {
                command.env_remove(name);
            }
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the server starts");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (first_tx, first_rx) = mpsc::channel();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let rest = lines.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout).lines();
            let first = reader.next().and_then(Result::ok).unwrap_or_default();
            let _ = first_tx.send(first);
            for line in reader.map_while(Result::ok) {
                rest.lock().push(line);
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut stderr = stderr;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let first = match first_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the server printed nothing within 20 s");
            }
        };
        let base = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("unexpected first line {first:?}; stderr: {}", log.lock())
            })
            .to_owned();
        // A new connection for every request: some answers (a body refused before it was read,
        // a timeout) can make the server close the connection, and a pooled connection closed
        // under the client surfaces as a transport error on the next request. Two tests failed
        // once each with a transport error under the whole suite's parallel load (never
        // reproduced); a reused connection the server had closed is the likely cause.
        let agent = trusting(
            &base,
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .max_idle_connections(0),
        )
        .build()
        .into();
        Self {
            child,
            base,
            stdout: lines,
            stderr: log,
            agent,
        }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to 3 s for `needle` to appear on stderr (a reader thread copies it over).
    pub(crate) fn logged(&self, needle: &str) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if self.stderr.lock().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Waits up to `limit` for the process to exit.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Any request: `headers` as given (no token added), `body` as bytes.
    pub(crate) fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let result = match body {
            Some(bytes) => self.agent.run(
                builder
                    .header("content-type", "application/json")
                    .body(bytes.to_vec())
                    .expect("request"),
            ),
            None => self.agent.run(builder.body(()).expect("request")),
        };
        let mut response = result.unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response
            .body_mut()
            .read_to_string()
            .expect("a readable body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            text,
            json,
            request_id,
        }
    }

    /// Writes raw bytes on a new connection and returns the response's status code.
    pub(crate) fn raw_status(&self, bytes: &[u8]) -> u16 {
        let address = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        // The server may answer and close before it has read everything.
        let _ = stream.write_all(bytes);
        let mut head = Vec::new();
        let _ = stream.take(64).read_to_end(&mut head);
        let head = String::from_utf8_lossy(&head);
        head.strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {head:?}"))
    }

    /// GET with the bearer token: the status and the body's bytes (for bodies that are not
    /// text).
    pub(crate) fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let request = Request::builder()
            .method("GET")
            .uri(format!("{}{path}", self.base))
            .header("authorization", bearer())
            .body(())
            .expect("request");
        let mut response = self
            .agent
            .run(request)
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("a readable body");
        (status, bytes)
    }

    /// GET with the bearer token.
    pub(crate) fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[("authorization", &bearer())], None)
    }

    /// GET with the bearer token and extra headers.
    pub(crate) fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let auth = bearer();
        let mut all = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        self.request("GET", path, &all, None)
    }

    /// POST a JSON body with the bearer token.
    pub(crate) fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_with(path, &[], Some(body))
    }

    /// POST with the bearer token, extra headers and an optional JSON body.
    pub(crate) fn post_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        let auth = bearer();
        let mut all = vec![("authorization", auth.as_str())];
        all.extend_from_slice(headers);
        let bytes = body.map(|body| serde_json::to_vec(body).expect("json"));
        self.request("POST", path, &all, bytes.as_deref())
    }

    /// Creates an environment of `kind` under `/v1` and returns its id.
    pub(crate) fn environment(&self, kind: &str) -> String {
        let reply = self.post(
            "/v1/environments",
            &json!({"name": "test", "config": {"type": kind}}),
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json["id"].as_str().expect("an id").to_owned()
    }

    /// Creates a queued work item and returns its id.
    pub(crate) fn work(&self, environment: &str) -> String {
        let reply = self.post(
            &format!("/v1/environments/{environment}/work"),
            &json!({"data": {"type": "session", "id": "sess_test"}}),
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json["id"].as_str().expect("an id").to_owned()
    }

    /// Creates `count` items and claims each ([`Self::claim`]) as `worker-0`, `worker-1`, …;
    /// returns their work ids and tokens.
    pub(crate) fn leases(&self, environment: &str, count: usize) -> Vec<(String, String)> {
        (0..count)
            .map(|n| {
                self.work(environment);
                self.claim(environment, &format!("worker-{n}"))
            })
            .collect()
    }

    /// Polls, acks and heartbeats (`NO_HEARTBEAT`) as `worker`; returns the work id and token.
    pub(crate) fn claim(&self, environment: &str, worker: &str) -> (String, String) {
        let polled = self.get_with(
            &format!("/v1/environments/{environment}/work/poll"),
            &[("worker-id", worker)],
        );
        assert_eq!(polled.status, 200, "{}", polled.text);
        let work = polled.json["id"]
            .as_str()
            .expect("work to claim")
            .to_owned();
        let acked = self.post_with(
            &format!("/v1/environments/{environment}/work/{work}/ack"),
            &[("worker-id", worker)],
            None,
        );
        assert_eq!(acked.status, 200, "{}", acked.text);
        let beat = self.post_with(
            &format!(
                "/v1/environments/{environment}/work/{work}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT"
            ),
            &[],
            None,
        );
        assert_eq!(beat.status, 200, "{}", beat.text);
        let token = beat.json["last_heartbeat"]
            .as_str()
            .expect("token")
            .to_owned();
        (work, token)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client for `base`: over HTTPS, it trusts the test CA (`tls::test_ca`) only.
fn trusting(
    base: &str,
    config: ureq::config::ConfigBuilder<ureq::typestate::AgentScope>,
) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    if base.starts_with("https://") {
        config.tls_config(tls::ureq_config())
    } else {
        config
    }
}

/// `Bearer TOKEN`.
pub(crate) fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// Asserts a docs/contract.md §6 envelope: status, `error.type`, `error.param`, a non-empty message and a
/// request id equal to the `request-id` header.
#[track_caller]
pub(crate) fn assert_error(reply: &Reply, status: u16, error_type: &str, param: Option<&str>) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.json["type"], "error", "{}", reply.text);
    assert_eq!(reply.json["error"]["type"], error_type, "{}", reply.text);
    assert_eq!(
        reply.json["error"]["param"],
        param.map_or(Value::Null, |p| json!(p)),
        "{}",
        reply.text
    );
    assert!(
        reply.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        reply.text
    );
    let request_id = reply.json["request_id"].as_str().expect("a request id");
    assert!(!request_id.is_empty());
    assert_eq!(reply.request_id.as_deref(), Some(request_id));
}

/// A fresh directory under the system's temporary directory, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("worklease-{name}-{}-{nanos}", std::process::id()));
        Self(path)
    }

    pub(crate) fn data(&self) -> String {
        self.0.join("data").display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client that reports a dead server as `None` instead of panicking.
pub(crate) struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    pub(crate) fn new(base: &str) -> Self {
        let agent = trusting(
            base,
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(20))),
        )
        .build()
        .into();
        Self {
            base: base.to_owned(),
            agent,
        }
    }

    /// `(status, body)`, or `None` when no answer arrived.
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Option<(u16, Value)> {
        let builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {TOKEN}"));
        let result = match body {
            Some(body) => self.agent.run(
                builder
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(body).expect("json"))
                    .expect("request"),
            ),
            None => self.agent.run(builder.body(()).expect("request")),
        };
        let mut response = result.ok()?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().ok()?;
        Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

/// Polls an environment with no claimable work and checks every answer is an empty 200:
/// `empty` polls that answer at once (worker `w-empty`), then `threads` named workers
/// (`w-idle-0`, …) long-polling with `block_ms=999` through `servers` in turn, for `idle`.
/// Returns how many distinct workers polled.
pub(crate) fn poll_idly(
    servers: &[&Server],
    environment: &str,
    empty: usize,
    threads: usize,
    idle: Duration,
) -> usize {
    let path = format!("/v1/environments/{environment}/work/poll");
    for n in 0..empty {
        let reply = servers[n % servers.len()].get_with(&path, &[("worker-id", "w-empty")]);
        assert_eq!(
            (reply.status, &reply.json),
            (200, &Value::Null),
            "{}",
            reply.text
        );
    }
    let long = format!("{path}?block_ms=999");
    let until = std::time::Instant::now() + idle;
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let (server, long) = (servers[thread % servers.len()], &long);
            scope.spawn(move || {
                let worker = format!("w-idle-{thread}");
                while std::time::Instant::now() < until {
                    let reply = server.get_with(long, &[("worker-id", &worker)]);
                    assert_eq!(
                        (reply.status, &reply.json),
                        (200, &Value::Null),
                        "{}",
                        reply.text
                    );
                }
            });
        }
    });
    threads + usize::from(empty > 0)
}
