//! docs/contract.md §10 over HTTP, cell by cell: each credential (admin tokens, environment
//! keys, item secrets, and what is none of them) on each route, in its own environment or item
//! and in another, under both prefixes; stale deliveries, revoked keys, deleted environments.

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use support::{assert_error, bearer, Reply, Server, TempDir, TOKEN};

const PREFIXES: [&str; 2] = ["/v1", "/api/v1/cloud"];

/// A request with `credential` as the bearer (none when empty).
fn call(
    server: &Server,
    method: &str,
    path: &str,
    credential: &str,
    body: Option<&Value>,
) -> Reply {
    let auth = format!("Bearer {credential}");
    let headers: Vec<(&str, &str)> = if credential.is_empty() {
        Vec::new()
    } else {
        vec![("authorization", auth.as_str())]
    };
    let bytes = body.map(|body| serde_json::to_vec(body).unwrap());
    server.request(method, path, &headers, bytes.as_deref())
}

/// A new key for `environment`: its id and the key.
fn key(server: &Server, environment: &str) -> (String, String) {
    let reply = server.post(
        &format!("/v1/environments/{environment}/keys"),
        &json!({"name": "runners"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    (
        reply.json["id"].as_str().unwrap().to_owned(),
        reply.json["key"].as_str().unwrap().to_owned(),
    )
}

/// The `sessions_token` inside a polled item's `secret`, as the SDK decodes it.
fn sessions_token(item: &Value) -> String {
    let secret = item["secret"].as_str().expect("a polled item has a secret");
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(secret).unwrap()).unwrap();
    payload["sessions_token"].as_str().unwrap().to_owned()
}

/// Polls `environment` with `credential` (and `query`); the item it hands out.
fn poll(server: &Server, environment: &str, credential: &str, query: &str) -> Value {
    let reply = call(
        server,
        "GET",
        &format!("/v1/environments/{environment}/work/poll{query}"),
        credential,
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.json.is_object(), "an item: {}", reply.text);
    reply.json
}

#[track_caller]
fn assert_refused(reply: &Reply, status: u16, what: &str) {
    let error_type = if status == 401 {
        "authentication_error"
    } else {
        "permission_error"
    };
    assert_eq!(reply.status, status, "{what}: {}", reply.text);
    assert_error(reply, status, error_type, None);
}

#[track_caller]
fn assert_admitted(reply: &Reply, what: &str) {
    assert!(
        ![401, 403, 500].contains(&reply.status),
        "{what}: {} {}",
        reply.status,
        reply.text
    );
}

/// Every route of the API and the node, as `(method, path, body)`, on environment `env`,
/// item `work` and key `key_id`.
fn routes(
    prefix: &str,
    env: &str,
    work: &str,
    key_id: &str,
) -> Vec<(&'static str, String, Option<Value>)> {
    let e = format!("{prefix}/environments/{env}");
    let w = format!("{e}/work/{work}");
    vec![
        (
            "POST",
            format!("{prefix}/environments"),
            Some(json!({"name": "x"})),
        ),
        ("GET", format!("{prefix}/environments"), None),
        ("GET", e.clone(), None),
        ("POST", e.clone(), Some(json!({"name": "renamed"}))),
        ("DELETE", e.clone(), None),
        ("POST", format!("{e}/archive"), None),
        ("POST", format!("{e}/keys"), Some(json!({}))),
        ("GET", format!("{e}/keys"), None),
        ("DELETE", format!("{e}/keys/{key_id}"), None),
        (
            "POST",
            format!("{e}/work"),
            Some(json!({"data": {"type": "session", "id": "sess_x"}})),
        ),
        ("GET", format!("{e}/work"), None),
        ("GET", format!("{e}/work/poll"), None),
        ("GET", format!("{e}/work/stats"), None),
        ("GET", w.clone(), None),
        ("POST", w.clone(), Some(json!({"metadata": {"k": "v"}}))),
        ("POST", format!("{w}/ack"), None),
        ("POST", format!("{w}/heartbeat"), None),
        ("POST", format!("{w}/stop"), Some(json!({"force": true}))),
        ("GET", "/cluster".to_owned(), None),
        ("GET", "/metrics".to_owned(), None),
    ]
}

/// What an environment key may do in its own environment: poll, ack, heartbeat, stop, list
/// work, stats (by the path's tail).
fn opens_to_key(method: &str, path: &str) -> bool {
    let tail = path.rsplit('/').next().unwrap_or("");
    let on_work = path.contains("/work");
    match (method, tail) {
        ("GET", "poll" | "stats" | "work") => on_work,
        ("POST", "ack" | "heartbeat" | "stop") => on_work,
        _ => false,
    }
}

#[test]
fn every_credential_on_every_route_answers_as_the_access_table_says() {
    let server = Server::start(&[]);
    let (a, b) = (
        server.environment("self_hosted"),
        server.environment("self_hosted"),
    );
    let (a_key_id, a_key) = key(&server, &a);
    let (b_key_id, b_key) = key(&server, &b);
    let (a1, a2, b1) = (server.work(&a), server.work(&a), server.work(&b));
    let a1_token = sessions_token(&poll(&server, &a, &a_key, ""));
    let a2_token = sessions_token(&poll(&server, &a, &a_key, ""));
    let b1_token = sessions_token(&poll(&server, &b, &b_key, ""));

    // Refusals first: they change nothing, so every cell sees the same table.
    for prefix in PREFIXES {
        for (method, path, body) in routes(prefix, &a, &a1, &a_key_id) {
            let what = format!("{method} {path}");
            if !opens_to_key(method, &path) {
                let own_key = call(&server, method, &path, &a_key, body.as_ref());
                assert_refused(&own_key, 403, &format!("a's key on {what}"));
            }
            let other_key = call(&server, method, &path, &b_key, body.as_ref());
            assert_refused(&other_key, 403, &format!("b's key on {what}"));
            let item_route = path.ends_with("/heartbeat") || path.ends_with("/stop");
            if !item_route {
                let secret = call(&server, method, &path, &a1_token, body.as_ref());
                assert_refused(&secret, 403, &format!("a1's secret on {what}"));
            }
            for other_item in [&a2_token, &b1_token] {
                let secret = call(&server, method, &path, other_item, body.as_ref());
                assert_refused(&secret, 403, &format!("another item's secret on {what}"));
            }
            for unknown in ["", "nonsense", "wlk_", "wls_", "test-token-2"] {
                let reply = call(&server, method, &path, unknown, body.as_ref());
                assert_refused(&reply, 401, &format!("{unknown:?} on {what}"));
            }
        }
        // b's own routes with a's key and a's item secret on b's item.
        for (method, path, body) in routes(prefix, &b, &b1, &b_key_id) {
            let reply = call(&server, method, &path, &a_key, body.as_ref());
            assert_refused(&reply, 403, &format!("a's key on {method} {path}"));
            let reply = call(&server, method, &path, &a1_token, body.as_ref());
            assert_refused(&reply, 403, &format!("a1's secret on {method} {path}"));
        }
    }

    // What an environment key may do in its own environment, under both prefixes.
    for prefix in PREFIXES {
        let e = format!("{prefix}/environments/{a}");
        for path in [
            format!("{e}/work"),
            format!("{e}/work/poll"),
            format!("{e}/work/stats"),
        ] {
            assert_eq!(
                call(&server, "GET", &path, &a_key, None).status,
                200,
                "{path}"
            );
        }
    }
    let e = format!("/v1/environments/{a}");
    let acked = call(&server, "POST", &format!("{e}/work/{a1}/ack"), &a_key, None);
    assert_eq!(acked.status, 200, "{}", acked.text);
    assert_eq!(
        acked.json["secret"],
        Value::Null,
        "only a poll hands out a secret"
    );
    let beat = call(
        &server,
        "POST",
        &format!("{e}/work/{a1}/heartbeat"),
        &a_key,
        None,
    );
    assert_eq!(beat.status, 200, "{}", beat.text);

    // What an item secret may do: its own item's heartbeat and stop, under both prefixes.
    for prefix in PREFIXES {
        let path = format!("{prefix}/environments/{a}/work/{a1}/heartbeat");
        let beat = call(&server, "POST", &path, &a1_token, None);
        assert_eq!(beat.status, 200, "{}", beat.text);
        assert_eq!(beat.json["lease_extended"], true);
    }
    // The SDK also sends it as `x-api-key`.
    let path = format!("{e}/work/{a1}/heartbeat");
    let beat = server.request("POST", &path, &[("x-api-key", &a1_token)], None);
    assert_eq!(beat.status, 200, "{}", beat.text);
    let stop = call(
        &server,
        "POST",
        &format!("{e}/work/{a1}/stop"),
        &a1_token,
        Some(&json!({"force": true})),
    );
    assert_eq!(stop.status, 200, "{}", stop.text);
    assert_eq!(stop.json["state"], "stopped");
    // A secret on a queued (delivered, unacked) item: its stop is allowed too.
    let stop = call(
        &server,
        "POST",
        &format!("{e}/work/{a2}/stop"),
        &a2_token,
        None,
    );
    assert_eq!(stop.status, 200, "{}", stop.text);

    // The admin token opens every route (the destructive ones last, on `b`).
    for prefix in PREFIXES {
        for (method, path, body) in routes(prefix, &b, &b1, &b_key_id) {
            if method == "DELETE" || path.ends_with("/archive") {
                continue;
            }
            let reply = call(&server, method, &path, TOKEN, body.as_ref());
            assert_admitted(&reply, &format!("admin on {method} {path}"));
        }
    }
    let revoked = call(
        &server,
        "DELETE",
        &format!("/v1/environments/{b}/keys/{b_key_id}"),
        TOKEN,
        None,
    );
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    let archived = call(
        &server,
        "POST",
        &format!("/v1/environments/{b}/archive"),
        TOKEN,
        None,
    );
    assert_eq!(archived.status, 200, "{}", archived.text);
}

#[test]
fn keys_are_shown_once_listed_without_them_and_revoked_under_both_prefixes() {
    let server = Server::start(&[]);
    let environment = server.environment("self_hosted");
    for prefix in PREFIXES {
        let keys = format!("{prefix}/environments/{environment}/keys");
        let created = server.post(&keys, &json!({"name": "ci"}));
        assert_eq!(created.status, 200, "{}", created.text);
        let object = &created.json;
        assert_eq!(object["type"], "environment_key");
        assert_eq!(object["environment_id"], environment.as_str());
        assert_eq!(object["name"], "ci");
        assert!(object["id"].as_str().unwrap().starts_with("ekey_"));
        let key = object["key"].as_str().unwrap();
        assert!(key.starts_with("wlk_"), "{key}");
        assert!(object["created_at"].as_str().unwrap().ends_with('Z'));
        let unnamed = server.post_with(&keys, &[], None);
        assert_eq!(unnamed.status, 200, "{}", unnamed.text);
        assert_eq!(unnamed.json["name"], Value::Null);

        let listed = server.get(&keys);
        assert_eq!(listed.status, 200, "{}", listed.text);
        let data = listed.json["data"].as_array().unwrap();
        assert_eq!(data.len(), 2, "{}", listed.text);
        assert!(!listed.text.contains(key), "a list never shows a key");
        assert!(data.iter().all(|entry| entry.get("key").is_none()));
        let mut without_key = object.clone();
        without_key.as_object_mut().unwrap().remove("key");
        assert_eq!(data[0], without_key);

        let id = object["id"].as_str().unwrap();
        let revoke = format!("{keys}/{id}");
        let revoked = server.request("DELETE", &revoke, &[("authorization", &bearer())], None);
        assert_eq!(revoked.status, 200, "{}", revoked.text);
        assert_eq!(
            revoked.json,
            json!({"id": id, "type": "environment_key_deleted"})
        );
        let again = server.request("DELETE", &revoke, &[("authorization", &bearer())], None);
        assert_error(&again, 404, "not_found_error", None);
        let poll = format!("/v1/environments/{environment}/work/poll");
        assert_refused(
            &call(&server, "GET", &poll, key, None),
            401,
            "a revoked key",
        );
        let other = unnamed.json["id"].as_str().unwrap();
        let revoked = server.request(
            "DELETE",
            &format!("{keys}/{other}"),
            &[("authorization", &bearer())],
            None,
        );
        assert_eq!(revoked.status, 200, "{}", revoked.text);
    }
    for bad in [
        json!({"name": ""}),
        json!({"name": 5}),
        json!({"name": "n".repeat(257)}),
    ] {
        let reply = server.post(&format!("/v1/environments/{environment}/keys"), &bad);
        assert_error(&reply, 400, "invalid_request_error", Some("name"));
    }
    let unknown = server.post("/v1/environments/env_nope/keys", &json!({}));
    assert_error(&unknown, 404, "not_found_error", None);
}

#[test]
fn deleting_an_environment_revokes_its_keys_and_ends_its_secrets() {
    let server = Server::start(&[]);
    let environment = server.environment("self_hosted");
    let (_, key) = key(&server, &environment);
    let work = server.work(&environment);
    let token = sessions_token(&poll(&server, &environment, &key, ""));
    let stopped = call(
        &server,
        "POST",
        &format!("/v1/environments/{environment}/work/{work}/stop"),
        &token,
        None,
    );
    assert_eq!(stopped.status, 200, "{}", stopped.text);
    let deleted = server.request(
        "DELETE",
        &format!("/v1/environments/{environment}"),
        &[("authorization", &bearer())],
        None,
    );
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    let poll_path = format!("/v1/environments/{environment}/work/poll");
    assert_refused(
        &call(&server, "GET", &poll_path, &key, None),
        401,
        "a deleted environment's key",
    );
    let stop = format!("/v1/environments/{environment}/work/{work}/stop");
    assert_refused(
        &call(&server, "POST", &stop, &token, None),
        403,
        "a deleted item's secret",
    );
}

#[test]
fn a_reclaimed_delivery_ends_the_earlier_secret() {
    a_reclaimed_delivery_ends_the_earlier_secret_on(&Server::start(&[]));
}

/// The same in durable mode, whose table the check reads while the heartbeat goes through the
/// write-ahead log.
#[test]
fn a_reclaimed_delivery_ends_the_earlier_secret_in_durable_mode() {
    let dir = TempDir::new("access-durable");
    let data = dir.0.join("data");
    a_reclaimed_delivery_ends_the_earlier_secret_on(&Server::start(&[
        "--data-dir",
        data.to_str().unwrap(),
    ]));
}

fn a_reclaimed_delivery_ends_the_earlier_secret_on(server: &Server) {
    let environment = server.environment("self_hosted");
    let (_, key) = key(server, &environment);
    let work = server.work(&environment);
    let base = format!("/v1/environments/{environment}/work/{work}");
    let first = server.request(
        "GET",
        &format!("/v1/environments/{environment}/work/poll"),
        &[
            ("authorization", &format!("Bearer {key}")),
            ("worker-id", "w1"),
        ],
        None,
    );
    let first_token = sessions_token(&first.json);
    // Reclaimed at once (a window of 0 ms): the same item, delivered again, to another worker.
    let second = server.request(
        "GET",
        &format!("/v1/environments/{environment}/work/poll?reclaim_older_than_ms=0"),
        &[
            ("authorization", &format!("Bearer {key}")),
            ("worker-id", "w2"),
        ],
        None,
    );
    assert_eq!(second.json["id"], work.as_str(), "{}", second.text);
    let second_token = sessions_token(&second.json);
    assert_ne!(first_token, second_token);
    assert_refused(
        &call(server, "POST", &format!("{base}/stop"), &first_token, None),
        403,
        "reclaimed, queued",
    );
    let acked = server.request(
        "POST",
        &format!("{base}/ack"),
        &[
            ("authorization", &format!("Bearer {key}")),
            ("worker-id", "w2"),
        ],
        None,
    );
    assert_eq!(acked.status, 200, "{}", acked.text);
    assert_refused(
        &call(
            server,
            "POST",
            &format!("{base}/heartbeat"),
            &first_token,
            None,
        ),
        403,
        "reclaimed, acked by another",
    );
    let beat = call(
        server,
        "POST",
        &format!("{base}/heartbeat"),
        &second_token,
        None,
    );
    assert_eq!(beat.status, 200, "{}", beat.text);
}

#[test]
fn a_lapsed_lease_ends_its_secret_and_the_next_delivery_gets_a_new_one() {
    let server = Server::start(&["--default-ttl-seconds", "10"]);
    let environment = server.environment("self_hosted");
    let (_, key) = key(&server, &environment);
    let work = server.work(&environment);
    let base = format!("/v1/environments/{environment}/work/{work}");
    let token = sessions_token(&poll(&server, &environment, &key, ""));
    assert_eq!(
        call(&server, "POST", &format!("{base}/ack"), &key, None).status,
        200
    );
    assert_eq!(
        call(&server, "POST", &format!("{base}/heartbeat"), &token, None).status,
        200
    );
    // The 10 s lease lapses; the item is queued again.
    std::thread::sleep(std::time::Duration::from_millis(10_500));
    assert_refused(
        &call(&server, "POST", &format!("{base}/heartbeat"), &token, None),
        403,
        "a lapsed lease",
    );
    let again = poll(&server, &environment, &key, "");
    assert_eq!(again["id"], work.as_str());
    let renewed = sessions_token(&again);
    assert_refused(
        &call(&server, "POST", &format!("{base}/stop"), &token, None),
        403,
        "re-queued and delivered again",
    );
    assert_eq!(
        call(&server, "POST", &format!("{base}/stop"), &renewed, None).status,
        200
    );
}

#[test]
fn malformed_and_truncated_keys_and_secrets_answer_401_never_500() {
    let server = Server::start(&[]);
    let environment = server.environment("self_hosted");
    let (_, key) = key(&server, &environment);
    let work = server.work(&environment);
    let token = sessions_token(&poll(&server, &environment, &key, ""));
    let heartbeat = format!("/v1/environments/{environment}/work/{work}/heartbeat");
    let mut presented: Vec<String> = Vec::new();
    for credential in [&key, &token] {
        for len in (0..credential.len()).step_by(3) {
            presented.push(credential[..len].to_owned());
        }
        let mut changed: Vec<char> = credential.chars().collect();
        let last = changed.len() - 1;
        changed[last] = if changed[last] == 'a' { 'b' } else { 'a' };
        presented.push(changed.into_iter().collect());
        presented.push(format!("{credential}0"));
    }
    presented.push(format!("wls_{}", "A".repeat(4096)));
    presented.push("wls_!!!".to_owned());
    for credential in &presented {
        if credential.trim().is_empty() {
            continue;
        }
        let reply = call(&server, "POST", &heartbeat, credential, None);
        assert_refused(&reply, 401, &format!("{credential:?}"));
    }
    for header in [
        ("authorization", "Basic dXNlcjpwYXNz"),
        ("authorization", "Bearer"),
        ("x-api-key", ""),
    ] {
        let reply = server.request("POST", &heartbeat, &[header], None);
        assert_refused(&reply, 401, &format!("{header:?}"));
    }
}

#[test]
fn several_admin_tokens_each_open_everything_and_refusals_are_counted_not_logged() {
    let server = Server::start_raw(
        &["--listen", "127.0.0.1:0"],
        &[("WORKLEASE_TOKEN", "first-token,second-token")],
    );
    for token in ["first-token", "second-token"] {
        let reply = call(
            &server,
            "POST",
            "/v1/environments",
            token,
            Some(&json!({"name": "e"})),
        );
        assert_eq!(reply.status, 200, "{token}: {}", reply.text);
    }
    let environment = {
        let reply = call(
            &server,
            "POST",
            "/v1/environments",
            "first-token",
            Some(&json!({"name": "e"})),
        );
        reply.json["id"].as_str().unwrap().to_owned()
    };
    let created = call(
        &server,
        "POST",
        &format!("/v1/environments/{environment}/keys"),
        "second-token",
        None,
    );
    let key = created.json["key"].as_str().unwrap().to_owned();
    let secret_looking = "wlk_env_a_".to_owned() + &"0".repeat(64);
    // A key's shape around text that is no environment id: refused as malformed, not unknown.
    let no_environment = "wlk_env_!_".to_owned() + &"0".repeat(64);
    for credential in [
        "third-token",
        secret_looking.as_str(),
        no_environment.as_str(),
    ] {
        let reply = call(&server, "GET", "/metrics", credential, None);
        assert_refused(&reply, 401, credential);
    }
    assert_refused(
        &call(&server, "GET", "/metrics", &key, None),
        403,
        "a key on /metrics",
    );
    // The members' own routes: no API credential opens them, and the refusal is counted too.
    let internal = call(&server, "POST", "/internal/raft/vote", "first-token", None);
    assert_eq!(internal.status, 401, "{}", internal.text);
    let metrics = call(&server, "GET", "/metrics", "second-token", None);
    assert_eq!(metrics.status, 200);
    let count = |reason: &str| -> f64 {
        let series = format!("worklease_credentials_refused_total{{reason=\"{reason}\"}} ");
        metrics
            .text
            .lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .unwrap_or_else(|| panic!("{series} in {}", metrics.text))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(count("unknown"), 2.0);
    assert_eq!(count("malformed"), 1.0);
    assert_eq!(count("out_of_scope"), 1.0);
    assert_eq!(count("stale_delivery"), 0.0);
    assert_eq!(count("not_a_member"), 1.0);
    for credential in [
        key.as_str(),
        "third-token",
        secret_looking.as_str(),
        no_environment.as_str(),
        "second-token",
    ] {
        assert!(!metrics.text.contains(credential));
        assert!(!server.logged(credential), "{credential} in the log");
    }
    assert!(server.logged("environment key created"));
}
