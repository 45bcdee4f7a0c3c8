//! docs/contract.md §8's operations endpoints: `/healthz` and `/readyz` without credentials, `/cluster` as a one-member
//! cluster, and `/metrics` parsed as Prometheus (OpenMetrics) text; §12's admin routes outside
//! a cluster.

// This file uses a part of the shared support only.
mod support;

use std::collections::BTreeMap;

use serde_json::json;
use support::{assert_error, Server};

#[test]
fn healthz_answers_without_credentials() {
    let server = Server::start(&[]);
    let reply = server.request("GET", "/healthz", &[], None);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["status"], "ok");
}

#[test]
fn readyz_answers_without_credentials_in_memory_and_durable_modes() {
    let dir = support::TempDir::new("readyz");
    let data = dir.data();
    for server in [Server::start(&[]), Server::start(&["--data-dir", &data])] {
        let reply = server.request("GET", "/readyz", &[], None);
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json["status"], "ready");
    }
}

#[test]
fn cluster_reports_one_member_and_counts_applied_changes() {
    let server = Server::start(&[]);
    assert_error(
        &server.request("GET", "/cluster", &[], None),
        401,
        "authentication_error",
        None,
    );
    let before = server.get("/cluster");
    assert_eq!(before.status, 200, "{}", before.text);
    assert_eq!(before.json["node_id"], 1);
    assert_eq!(before.json["leader_id"], 1);
    assert_eq!(before.json["term"], 0);
    assert_eq!(before.json["role"], "leader");
    let start = before.json["last_applied_index"]
        .as_u64()
        .expect("an index");

    // Seven changing requests: create environment, create work, poll, ack, heartbeat, two
    // stops; and the first delivery sets the key item secrets are signed with (one command,
    // once). Reads change nothing.
    let environment = server.environment("self_hosted");
    server.work(&environment);
    let (work, _) = server.claim(&environment, "w1");
    let base = format!("/v1/environments/{environment}/work");
    server.get(&format!("{base}/{work}"));
    server.get(&format!("{base}/stats"));
    server.get(&base);
    server.post(&format!("{base}/{work}/stop"), &json!({}));
    server.post(&format!("{base}/{work}/stop"), &json!({}));
    let after = server.get("/cluster");
    assert_eq!(
        after.json["last_applied_index"].as_u64(),
        Some(start + 8),
        "{}",
        after.text
    );
    // In memory nothing is written to disk, and a read confirms nothing with anyone.
    assert_eq!(after.json["log_syncs"], 0, "{}", after.text);
    assert_eq!(after.json["read_rounds"], 0, "{}", after.text);
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_what_happened() {
    let server = Server::start(&[]);
    assert_error(
        &server.request("GET", "/metrics", &[], None),
        401,
        "authentication_error",
        None,
    );
    let environment = server.environment("self_hosted");
    server.work(&environment);
    server.work(&environment);
    let (work, token) = server.claim(&environment, "w1");
    let beat = |query: &str| {
        server.post_with(
            &format!("/v1/environments/{environment}/work/{work}/heartbeat{query}"),
            &[],
            None,
        )
    };
    let renewed = beat(&format!("?expected_last_heartbeat={token}"));
    assert_eq!(renewed.status, 200, "{}", renewed.text);
    // The old token again: 412; a bad TTL: 400 before the table; an unknown item: 404.
    assert_eq!(
        beat(&format!("?expected_last_heartbeat={token}")).status,
        412
    );
    assert_eq!(beat("?desired_ttl_seconds=0").status, 400);
    let unknown = server.post_with(
        &format!("/api/v1/cloud/environments/{environment}/work/work_0123456789abcdef0123456789abcdef/heartbeat"),
        &[],
        None,
    );
    assert_eq!(unknown.status, 404);
    assert_eq!(server.get("/v1/nowhere").status, 404);

    let reply = server.get("/metrics");
    assert_eq!(reply.status, 200, "{}", reply.text);
    let metrics = parse(&reply.text).unwrap_or_else(|error| panic!("{error}\n{}", reply.text));
    let value = |name: &str, labels: &[(&str, &str)]| {
        metrics
            .value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}\n{}", reply.text))
    };

    // Both prefixes count under one route name. The claim's NO_HEARTBEAT beat was accepted too.
    assert_eq!(
        value(
            "worklease_http_requests_total",
            &[("route", "heartbeat"), ("status", "200")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "worklease_http_requests_total",
            &[("route", "heartbeat"), ("status", "412")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "worklease_http_requests_total",
            &[("route", "heartbeat"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "worklease_http_requests_total",
            &[("route", "create_work"), ("status", "200")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "worklease_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        value("worklease_heartbeats_total", &[("outcome", "accepted")]),
        2.0
    );
    assert_eq!(
        value(
            "worklease_heartbeats_total",
            &[("outcome", "precondition_failed")]
        ),
        1.0
    );
    assert_eq!(
        value("worklease_heartbeats_total", &[("outcome", "bad_request")]),
        1.0
    );
    assert_eq!(
        value("worklease_heartbeats_total", &[("outcome", "not_found")]),
        1.0
    );
    assert_eq!(
        value("worklease_heartbeats_total", &[("outcome", "conflict")]),
        0.0
    );
    assert_eq!(value("worklease_items", &[("state", "active")]), 1.0);
    assert_eq!(value("worklease_items", &[("state", "queued")]), 1.0);
    assert_eq!(value("worklease_items", &[("state", "stopped")]), 0.0);
    assert_eq!(value("worklease_lapses_total", &[("to", "queued")]), 0.0);
    assert_eq!(value("worklease_raft_term", &[]), 0.0);
    assert_eq!(
        value("worklease_forwarded_total", &[("outcome", "replayed")]),
        0.0
    );
    assert_eq!(value("worklease_raft_leader_id", &[]), 1.0);
    let applied = server.get("/cluster").json["last_applied_index"]
        .as_f64()
        .expect("an index");
    assert_eq!(value("worklease_last_applied_index", &[]), applied);
    assert_eq!(value("worklease_log_syncs_total", &[]), 0.0);
    assert_eq!(metrics.types["worklease_log_syncs"], "counter");
    assert_eq!(value("worklease_read_rounds_total", &[]), 0.0);
    assert_eq!(metrics.types["worklease_read_rounds"], "counter");
    // Every apply was timed: at least the changing requests above.
    let commits = value("worklease_commit_latency_seconds_count", &[]);
    assert!(commits >= applied, "{commits} < {applied}");
    assert_eq!(
        value("worklease_commit_latency_seconds_bucket", &[("le", "+Inf")]),
        commits
    );
    assert_eq!(
        metrics.types["worklease_commit_latency_seconds"],
        "histogram"
    );
    assert_eq!(metrics.types["worklease_items"], "gauge");
    assert_eq!(metrics.types["worklease_heartbeats"], "counter");
}

#[test]
fn the_metrics_parser_refuses_what_is_not_prometheus_text() {
    let good = "# TYPE a counter\n# HELP a A thing.\na_total{x=\"1\"} 3\n# EOF\n";
    let parsed = parse(good).expect("valid");
    assert_eq!(parsed.value("a_total", &[("x", "1")]), Some(3.0));
    for bad in [
        "# TYPE a counter\na_total 3\n",                // no # EOF
        "# TYPE a counter\na_total three\n# EOF\n",     // not a number
        "# TYPE a counter\nb_total 3\n# EOF\n",         // undeclared family
        "# TYPE a counter\na_total{x=1} 3\n# EOF\n",    // unquoted label
        "# TYPE a counter\na_total{x=\"1\" 3\n# EOF\n", // unclosed labels
        "# TYPE a counter\na_total 3\n# EOF\nmore 1\n", // text after # EOF
        "# TYPE a histogram\na_bucket{le=\"1\"} 2\na_bucket{le=\"+Inf\"} 1\n# EOF\n", // not cumulative
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}

/// The samples of an exposition, with each family's declared type.
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Exposition {
    /// The value of the sample with exactly these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| *v)
    }
}

/// A strict reader of the OpenMetrics text format as `prometheus-client` writes it: `# TYPE`,
/// `# HELP` and `# UNIT` lines, samples of declared families only (with the suffixes their
/// type allows), quoted label values, numeric values, cumulative histogram buckets, and a final
/// `# EOF`.
fn parse(text: &str) -> Result<Exposition, String> {
    let mut exposition = Exposition::default();
    let lines = text.lines();
    let mut ended = false;
    for line in lines {
        if ended {
            return Err(format!("text after # EOF: {line:?}"));
        }
        if line == "# EOF" {
            ended = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next(), parts.next());
            match (kind, name) {
                (Some("TYPE"), Some(name)) => {
                    let kind = parts.next().ok_or("a TYPE without a type")?;
                    if ![
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "info",
                        "stateset",
                        "unknown",
                    ]
                    .contains(&kind)
                    {
                        return Err(format!("unknown type {kind:?}"));
                    }
                    exposition.types.insert(name.to_owned(), kind.to_owned());
                }
                (Some("HELP" | "UNIT"), Some(_)) => {}
                _ => return Err(format!("bad comment line {line:?}")),
            }
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line[open..]
                    .find('}')
                    .map(|c| open + c)
                    .ok_or_else(|| format!("unclosed labels: {line:?}"))?;
                (
                    &line[..open],
                    labels(&line[open + 1..close])?,
                    &line[close + 1..],
                )
            }
            None => {
                let space = line
                    .find(' ')
                    .ok_or_else(|| format!("no value: {line:?}"))?;
                (&line[..space], BTreeMap::new(), &line[space..])
            }
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        {
            return Err(format!("bad metric name {name:?}"));
        }
        let value = rest
            .trim()
            .split(' ')
            .next()
            .ok_or_else(|| format!("no value: {line:?}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse()
                .map_err(|_| format!("bad value {other:?} in {line:?}"))?,
        };
        let declared = exposition.types.iter().any(|(family, kind)| {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_count", "_sum", "_created"],
                "summary" => &["", "_count", "_sum", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            suffixes
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(family.as_str()))
        });
        if !declared {
            return Err(format!("sample of an undeclared family: {line:?}"));
        }
        exposition.samples.push((name.to_owned(), labels, value));
    }
    if !ended {
        return Err("no # EOF at the end".to_owned());
    }
    // Histogram buckets are cumulative and the +Inf bucket equals the count.
    for (family, kind) in &exposition.types {
        if kind != "histogram" {
            continue;
        }
        let buckets: Vec<f64> = exposition
            .samples
            .iter()
            .filter(|(n, _, _)| *n == format!("{family}_bucket"))
            .map(|(_, _, v)| *v)
            .collect();
        if buckets.windows(2).any(|w| w[1] < w[0]) {
            return Err(format!("{family}: buckets are not cumulative"));
        }
        let count = exposition.value(&format!("{family}_count"), &[]);
        if let (Some(last), Some(count)) = (buckets.last(), count) {
            if *last != count {
                return Err(format!("{family}: +Inf bucket {last} != count {count}"));
            }
        }
    }
    Ok(exposition)
}

/// `a="1",b="x"` → {a: 1, b: x}; values must be quoted.
fn labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("unquoted label in {text:?}"))?;
        let end = after
            .find('"')
            .ok_or_else(|| format!("unterminated label value in {text:?}"))?;
        labels.insert(name.to_owned(), after[..end].to_owned());
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    Ok(labels)
}

#[test]
fn cluster_admin_routes_need_the_token_and_a_cluster() {
    let memory = Server::start(&[]);
    for (method, path) in [
        ("GET", "/cluster/members"),
        ("POST", "/cluster/members"),
        ("DELETE", "/cluster/members/2"),
        ("GET", "/cluster/snapshot"),
    ] {
        let anonymous = memory.request(method, path, &[], None);
        assert_error(&anonymous, 401, "authentication_error", None);
        let reply = memory.request(
            method,
            path,
            &[("authorization", &support::bearer())],
            Some(br#"{"node_id": 2, "address": "localhost:7002"}"#),
        );
        assert_error(&reply, 409, "invalid_request_error", None);
    }
    // A durable server is no cluster member, but it is backed up like one.
    let dir = support::TempDir::new("durable-admin");
    let data = dir.data();
    let durable = Server::start(&["--data-dir", &data]);
    let members = durable.post(
        "/cluster/members",
        &json!({"node_id": 2, "address": "localhost:7002"}),
    );
    assert_error(&members, 409, "invalid_request_error", None);
    let (status, backup) = durable.get_bytes("/cluster/snapshot");
    assert_eq!(status, 200);
    assert_eq!(&backup[..4], b"WLBK");
}
