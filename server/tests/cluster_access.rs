//! docs/contract.md §10 in replicated mode, three real processes: a follower forwards the
//! client's own credential and the leader checks it against its table, so a key revoked
//! there is refused at once through every member, and an item secret works through any.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use support::{Reply, Server, TempDir, TOKEN};

/// Three members on loopback.
struct Cluster {
    _dir: TempDir,
    nodes: Vec<Server>,
}

impl Cluster {
    fn start(name: &str) -> Self {
        let dir = TempDir::new(name);
        // Held together until all three are picked, so no port is picked twice.
        let listeners: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("bound").port())
            .collect();
        drop(listeners);
        let peers = (1..=3)
            .map(|m| format!("{m}=127.0.0.1:{}", ports[m - 1]))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (1..=3)
            .map(|n| {
                let listen = format!("127.0.0.1:{}", ports[n - 1]);
                let data = dir.0.join(format!("node{n}")).display().to_string();
                let id = n.to_string();
                Server::start_raw(
                    &[
                        "--listen",
                        &listen,
                        "--token",
                        TOKEN,
                        "--data-dir",
                        &data,
                        "--node-id",
                        &id,
                        "--peers",
                        &peers,
                    ],
                    // Members authenticate each other with the cluster secret where the build
                    // has one; a build without it ignores the variable.
                    &[(
                        "WORKLEASE_CLUSTER_SECRET",
                        "cluster-secret-of-the-access-tests",
                    )],
                )
            })
            .collect();
        Self { _dir: dir, nodes }
    }

    fn leader(&self) -> usize {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            for (n, node) in self.nodes.iter().enumerate() {
                if node.get("/cluster").json["role"] == "leader" {
                    return n;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no leader within 20 s");
    }
}

fn call(server: &Server, method: &str, path: &str, credential: &str) -> Reply {
    let auth = format!("Bearer {credential}");
    server.request(method, path, &[("authorization", &auth)], None)
}

#[test]
fn a_revoked_key_is_refused_through_every_member_at_once_and_secrets_work_through_any() {
    let cluster = Cluster::start("cluster-access");
    let leader = cluster.leader();
    let at_leader = &cluster.nodes[leader];
    let environment = at_leader.environment("self_hosted");
    let created = at_leader.post(&format!("/v1/environments/{environment}/keys"), &json!({}));
    assert_eq!(created.status, 200, "{}", created.text);
    let key = created.json["key"].as_str().unwrap().to_owned();
    let key_id = created.json["id"].as_str().unwrap().to_owned();
    let work = at_leader.work(&environment);
    let base = format!("/v1/environments/{environment}/work");

    let follower = &cluster.nodes[(leader + 1) % 3];
    let polled = call(follower, "GET", &format!("{base}/poll"), &key);
    assert_eq!(polled.status, 200, "{}", polled.text);
    assert_eq!(polled.json["id"], work.as_str());
    let secret = polled.json["secret"].as_str().unwrap();
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(secret).unwrap()).unwrap();
    let token = payload["sessions_token"].as_str().unwrap().to_owned();
    let acked = call(follower, "POST", &format!("{base}/{work}/ack"), &key);
    assert_eq!(acked.status, 200, "{}", acked.text);
    for node in &cluster.nodes {
        let beat = call(node, "POST", &format!("{base}/{work}/heartbeat"), &token);
        assert_eq!(beat.status, 200, "{}", beat.text);
    }

    // Revoked through a follower; refused at once by every member, each forwarding to the
    // leader that answered the revocation.
    let other = &cluster.nodes[(leader + 2) % 3];
    let revoked = call(
        other,
        "DELETE",
        &format!("/v1/environments/{environment}/keys/{key_id}"),
        TOKEN,
    );
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    for node in &cluster.nodes {
        let refused = call(node, "GET", &format!("{base}/stats"), &key);
        assert_eq!(refused.status, 401, "{}", refused.text);
        assert_eq!(refused.json["error"]["type"], "authentication_error");
    }
    // A key of another environment is refused by the leader, wherever it arrives.
    let elsewhere = at_leader.environment("self_hosted");
    let other_key = at_leader.post(&format!("/v1/environments/{elsewhere}/keys"), &json!({}));
    let other_key = other_key.json["key"].as_str().unwrap();
    let refused = call(follower, "GET", &format!("{base}/stats"), other_key);
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(refused.json["error"]["type"], "permission_error");
}
