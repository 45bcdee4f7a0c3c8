//! The server (`worklease-server`) driven over loopback by a real HTTP client: the
//! heartbeat page's example request, every error row of every endpoint, the whole lifecycle,
//! takeover, lapse and re-claim, long polls, both prefixes, auth and hostile input.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{assert_error, bearer, Server, TOKEN};

fn work_path(environment: &str, rest: &str) -> String {
    format!("/v1/environments/{environment}/work{rest}")
}

#[test]
fn heartbeat_page_example_request_works_verbatim() {
    let server = Server::start(&[]);
    let environment = server.environment("self_hosted");
    let work = server.work(&environment);
    let polled = server.get(&work_path(&environment, "/poll"));
    assert_eq!(polled.json["id"], work.as_str());
    let acked = server.post_with(&work_path(&environment, &format!("/{work}/ack")), &[], None);
    assert_eq!(acked.json["state"], "starting");

    // The page's curl line, with the ids this server created.
    let reply = server.request(
        "POST",
        &format!(
            "/api/v1/cloud/environments/{environment}/work/{work}/heartbeat?expected_last_heartbeat=NO_HEARTBEAT&desired_ttl_seconds=60"
        ),
        &[("Authorization", &bearer())],
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    let object = reply.json.as_object().expect("an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "last_heartbeat",
            "lease_epoch",
            "lease_extended",
            "state",
            "ttl_seconds",
            "type"
        ],
        "the documented fields, plus docs/contract.md §7.5's lease_epoch"
    );
    assert_eq!(reply.json["type"], "work_heartbeat");
    assert_eq!(reply.json["lease_extended"], true);
    assert_eq!(reply.json["state"], "active");
    assert_eq!(reply.json["ttl_seconds"], 60);
    let token = reply.json["last_heartbeat"].as_str().expect("a token");
    // RFC 3339 UTC, six fractional digits, Z: 2026-07-01T08:15:06.120394Z.
    assert_eq!(token.len(), 27, "{token}");
    assert!(
        token.ends_with('Z') && token.as_bytes()[19] == b'.',
        "{token}"
    );
    let item = server.get(&work_path(&environment, &format!("/{work}")));
    assert_eq!(item.json["latest_heartbeat_at"], token);
    assert_eq!(item.json["started_at"], token);
}

#[test]
fn every_heartbeat_error_row_has_its_status_type_and_param() {
    let server = Server::start(&[]);
    let environment = server.environment("self_hosted");
    let cloud = server.environment("cloud");
    let queued = server.work(&environment);
    let beat = |environment: &str, work: &str, query: &str| {
        server.post_with(
            &format!("/api/v1/cloud/environments/{environment}/work/{work}/heartbeat{query}"),
            &[],
            None,
        )
    };

    for ttl in ["", "0", "-5", "1.5", "abc", "%2060", "60%20"] {
        let reply = beat(
            &environment,
            &queued,
            &format!("?desired_ttl_seconds={ttl}"),
        );
        assert_error(
            &reply,
            400,
            "invalid_request_error",
            Some("desired_ttl_seconds"),
        );
    }
    for expected in ["yesterday", "no_heartbeat", "2026-07-01"] {
        let reply = beat(
            &environment,
            &queued,
            &format!("?expected_last_heartbeat={expected}"),
        );
        assert_error(
            &reply,
            400,
            "invalid_request_error",
            Some("expected_last_heartbeat"),
        );
    }
    // Parameters are checked before the environment exists.
    assert_error(
        &beat("env_nope", &queued, "?desired_ttl_seconds=0"),
        400,
        "invalid_request_error",
        Some("desired_ttl_seconds"),
    );
    assert_error(
        &beat(&cloud, &queued, ""),
        400,
        "invalid_request_error",
        None,
    );
    let unauthenticated = server.request(
        "POST",
        &work_path(&environment, &format!("/{queued}/heartbeat")),
        &[],
        None,
    );
    assert_error(&unauthenticated, 401, "authentication_error", None);
    let wrong = server.request(
        "POST",
        &work_path(&environment, &format!("/{queued}/heartbeat")),
        &[("authorization", "Bearer wrong")],
        None,
    );
    assert_error(&wrong, 401, "authentication_error", None);
    for (env, work) in [
        ("env_0123456789abcdef0123456789abcdef", queued.as_str()),
        ("not-an-env", queued.as_str()),
        (
            environment.as_str(),
            "work_0123456789abcdef0123456789abcdef",
        ),
        (environment.as_str(), "work_bad-id"),
    ] {
        assert_error(&beat(env, work, ""), 404, "not_found_error", None);
    }
    // A work item of another environment is not found in this one.
    let other = server.environment("self_hosted");
    assert_error(&beat(&other, &queued, ""), 404, "not_found_error", None);

    assert_error(
        &beat(&environment, &queued, ""),
        409,
        "invalid_request_error",
        None,
    );
    let stopped = server.work(&environment);
    server.post(
        &work_path(&environment, &format!("/{stopped}/stop")),
        &json!({}),
    );
    assert_error(
        &beat(&environment, &stopped, ""),
        409,
        "invalid_request_error",
        None,
    );

    let (held, token) = server.claim(&environment, "w1");
    let refused = beat(&environment, &held, "?expected_last_heartbeat=NO_HEARTBEAT");
    assert_error(&refused, 412, "precondition_failed_error", None);
    let details = &refused.json["error"]["details"];
    assert_eq!(details["error_code"], "heartbeat_precondition_failed");
    assert_eq!(
        details["current_state"],
        json!({"last_heartbeat": token, "state": "active", "ttl_seconds": 60, "lease_extended": false, "lease_epoch": 1})
    );
    // The same instant written with an offset and nanoseconds still matches.
    let same = beat(
        &environment,
        &held,
        &format!("?expected_last_heartbeat={}", offset_form(&token)),
    );
    assert_eq!(same.status, 200, "{}", same.text);
    // Clamping: 5 → 10, huge → 600.
    let clamped = beat(&environment, &held, "?desired_ttl_seconds=5");
    assert_eq!(clamped.json["ttl_seconds"], 10);
    let huge = beat(
        &environment,
        &held,
        &format!("?desired_ttl_seconds={}", "9".repeat(300)),
    );
    assert_eq!(huge.json["ttl_seconds"], 600);
}

/// `2026-07-01T08:15:06.120394Z` → `2026-07-01T09:15:06.120394000%2B01:00` (the same instant);
/// in the day's last hour, `…T23:…Z` → `…T22:…000-01:00`, so the date never changes.
fn offset_form(token: &str) -> String {
    let hour: u32 = token[11..13].parse().expect("hour");
    let (local, offset) = if hour < 23 {
        (hour + 1, "%2B01:00")
    } else {
        (hour - 1, "-01:00")
    };
    format!("{}{:02}{}000{offset}", &token[..11], local, &token[13..26])
}

#[test]
fn every_error_row_of_the_other_endpoints_has_its_status_type_and_param() {
    let server = Server::start(&[]);
    let environment = server.environment("self_hosted");
    let cloud = server.environment("cloud");
    let work = server.work(&environment);
    let missing_env = "env_0123456789abcdef0123456789abcdef";
    let missing_work = "work_0123456789abcdef0123456789abcdef";

    // poll
    for (query, param) in [
        ("?reclaim_older_than_ms=-1", "reclaim_older_than_ms"),
        ("?reclaim_older_than_ms=1.5", "reclaim_older_than_ms"),
        ("?block_ms=0", "block_ms"),
        ("?block_ms=1000", "block_ms"),
        ("?block_ms=abc", "block_ms"),
    ] {
        let reply = server.get(&work_path(&environment, &format!("/poll{query}")));
        assert_error(&reply, 400, "invalid_request_error", Some(param));
    }
    let spaced = server.get_with(
        &work_path(&environment, "/poll"),
        &[("worker-id", "has space")],
    );
    assert_error(&spaced, 400, "invalid_request_error", Some("worker_id"));
    assert_error(
        &server.get(&work_path(missing_env, "/poll")),
        404,
        "not_found_error",
        None,
    );
    assert_error(
        &server.get(&work_path(&cloud, "/poll")),
        400,
        "invalid_request_error",
        None,
    );

    // ack: delivered to w1, acked by w2 → 409; unknown → 404; cloud → 400.
    let delivered = server.get_with(&work_path(&environment, "/poll"), &[("worker-id", "w1")]);
    assert_eq!(delivered.json["id"], work.as_str());
    let ack = |env: &str, work: &str, worker: &str| {
        server.post_with(
            &work_path(env, &format!("/{work}/ack")),
            &[("anthropic-worker-id", worker)],
            None,
        )
    };
    assert_error(
        &ack(&environment, &work, "w2"),
        409,
        "invalid_request_error",
        None,
    );
    assert_error(
        &ack(&environment, &work, "w 2"),
        400,
        "invalid_request_error",
        Some("worker_id"),
    );
    assert_error(&ack(missing_env, &work, "w1"), 404, "not_found_error", None);
    assert_error(
        &ack(&environment, missing_work, "w1"),
        404,
        "not_found_error",
        None,
    );
    assert_error(
        &ack(&cloud, &work, "w1"),
        400,
        "invalid_request_error",
        None,
    );
    assert_eq!(ack(&environment, &work, "w1").json["state"], "starting");
    assert_eq!(
        ack(&environment, &work, "w1").status,
        200,
        "acks are retry-safe"
    );
    assert_error(
        &ack(&environment, &work, "w2"),
        409,
        "invalid_request_error",
        None,
    );
    let stopping = server.post(
        &work_path(&environment, &format!("/{work}/stop")),
        &json!({}),
    );
    assert_eq!(stopping.json["state"], "stopping");
    assert_error(
        &ack(&environment, &work, "w1"),
        409,
        "invalid_request_error",
        None,
    );

    // stop
    let stop = |env: &str, work: &str, query: &str, body: Option<&[u8]>| {
        server.request(
            "POST",
            &work_path(env, &format!("/{work}/stop{query}")),
            &[("authorization", &bearer())],
            body,
        )
    };
    assert_error(
        &stop(missing_env, &work, "", None),
        404,
        "not_found_error",
        None,
    );
    assert_error(
        &stop(&environment, missing_work, "", None),
        404,
        "not_found_error",
        None,
    );
    assert_error(
        &stop(&cloud, &work, "", None),
        400,
        "invalid_request_error",
        None,
    );
    assert_error(
        &stop(&environment, &work, "?force=yes", None),
        400,
        "invalid_request_error",
        Some("force"),
    );
    assert_error(
        &stop(&environment, &work, "", Some(b"{\"force\": ")),
        400,
        "invalid_request_error",
        None,
    );
    assert_error(
        &stop(&environment, &work, "", Some(b"{\"force\": \"yes\"}")),
        400,
        "invalid_request_error",
        None,
    );

    // list
    for (query, param) in [
        ("?limit=0", "limit"),
        ("?limit=-1", "limit"),
        ("?limit=abc", "limit"),
        ("?after_id=nope", "after_id"),
        ("?before_id=env_1", "before_id"),
        ("?page=work_a&after_id=work_b", "after_id"),
        ("?after_id=work_a&before_id=work_b", "before_id"),
    ] {
        let reply = server.get(&work_path(&environment, query));
        assert_error(&reply, 400, "invalid_request_error", Some(param));
    }
    assert_error(
        &server.get(&work_path(missing_env, "")),
        404,
        "not_found_error",
        None,
    );
    assert_error(
        &server.get(&work_path(&cloud, "")),
        400,
        "invalid_request_error",
        None,
    );

    // get
    assert_error(
        &server.get(&work_path(missing_env, &format!("/{work}"))),
        404,
        "not_found_error",
        None,
    );
    assert_error(
        &server.get(&work_path(&environment, &format!("/{missing_work}"))),
        404,
        "not_found_error",
        None,
    );
    assert_error(
        &server.get(&work_path(&cloud, &format!("/{work}"))),
        400,
        "invalid_request_error",
        None,
    );

    // update metadata
    let update = |env: &str, work: &str, body: &Value| {
        server.post(&work_path(env, &format!("/{work}")), body)
    };
    let seventeen: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    for body in [
        json!({"metadata": seventeen}),
        json!({"metadata": {"k": "x".repeat(513)}}),
        json!({"metadata": {"": "v"}}),
    ] {
        assert_error(
            &update(&environment, &work, &body),
            400,
            "invalid_request_error",
            Some("metadata"),
        );
    }
    assert_error(
        &update(&environment, &work, &json!({"metadata": {"k": 1}})),
        400,
        "invalid_request_error",
        None,
    );
    assert_error(
        &update(missing_env, &work, &json!({})),
        404,
        "not_found_error",
        None,
    );
    assert_error(
        &update(&environment, missing_work, &json!({})),
        404,
        "not_found_error",
        None,
    );
    assert_error(
        &update(&cloud, &work, &json!({})),
        400,
        "invalid_request_error",
        None,
    );

    // stats
    assert_error(
        &server.get(&work_path(missing_env, "/stats")),
        404,
        "not_found_error",
        None,
    );
    assert_error(
        &server.get(&work_path(&cloud, "/stats")),
        400,
        "invalid_request_error",
        None,
    );

    // create environment
    for body in [json!({}), json!({"name": ""}), json!({"name": 7})] {
        assert_error(
            &server.post("/v1/environments", &body),
            400,
            "invalid_request_error",
            Some("name"),
        );
    }
    assert_error(
        &server.post(
            "/v1/environments",
            &json!({"name": "x", "config": {"type": "lambda"}}),
        ),
        400,
        "invalid_request_error",
        Some("config"),
    );

    // create work
    let create = |env: &str, body: &Value| server.post(&work_path(env, ""), body);
    for body in [
        json!({}),
        json!({"data": {"type": "file", "id": "sess_1"}}),
        json!({"data": {"type": "session", "id": "session_1"}}),
        json!({"data": {"type": "session"}}),
    ] {
        assert_error(
            &create(&environment, &body),
            400,
            "invalid_request_error",
            Some("data"),
        );
    }
    assert_error(
        &create(
            &environment,
            &json!({"data": {"type": "session", "id": "sess_1"}, "metadata": {"k": "x".repeat(600)}}),
        ),
        400,
        "invalid_request_error",
        Some("metadata"),
    );
    let session = json!({"data": {"type": "session", "id": "sess_1"}});
    assert_error(&create(missing_env, &session), 404, "not_found_error", None);
    assert_error(
        &create(&cloud, &session),
        400,
        "invalid_request_error",
        None,
    );

    // Every route refuses a missing token with 401, before anything else.
    for (method, path) in [
        ("GET", work_path(&environment, "/poll")),
        ("POST", work_path(&environment, &format!("/{work}/ack"))),
        ("POST", work_path(&environment, &format!("/{work}/stop"))),
        ("GET", work_path(&environment, "")),
        ("GET", work_path(&environment, &format!("/{work}"))),
        ("POST", work_path(&environment, &format!("/{work}"))),
        ("GET", work_path(&environment, "/stats")),
        ("POST", "/v1/environments".to_owned()),
        ("POST", work_path(&environment, "")),
        ("GET", "/no/such/route".to_owned()),
    ] {
        let reply = server.request(method, &path, &[("x-api-key", "wrong")], None);
        assert_error(&reply, 401, "authentication_error", None);
    }
}

#[test]
fn a_full_drain_goes_poll_ack_heartbeat_stop_and_confirm() {
    let server = Server::start(&[]);
    let environment = server.environment("self_hosted");
    let created = server.post(
        &work_path(&environment, ""),
        &json!({"data": {"type": "session", "id": "sess_drain"}, "metadata": {"repo": "worklease"}}),
    );
    assert_eq!(created.json["state"], "queued");
    assert_eq!(created.json["type"], "work");
    assert_eq!(created.json["environment_id"], environment.as_str());
    assert_eq!(
        created.json["data"],
        json!({"type": "session", "id": "sess_drain"})
    );
    assert_eq!(created.json["metadata"], json!({"repo": "worklease"}));
    let work = created.json["id"].as_str().expect("id").to_owned();

    let polled = server.get_with(&work_path(&environment, "/poll"), &[("worker-id", "w1")]);
    assert_eq!(polled.json["id"], work.as_str());
    assert_eq!(polled.json["state"], "queued");
    let acked = server.post_with(
        &work_path(&environment, &format!("/{work}/ack")),
        &[("worker-id", "w1")],
        None,
    );
    assert_eq!(acked.json["state"], "starting");
    assert!(acked.json["acknowledged_at"].is_string());

    let heartbeat = |expected: &str| {
        server.post_with(
            &work_path(
                &environment,
                &format!("/{work}/heartbeat?expected_last_heartbeat={expected}"),
            ),
            &[],
            None,
        )
    };
    let first = heartbeat("NO_HEARTBEAT");
    assert_eq!(first.json["state"], "active");
    let mut token = first.json["last_heartbeat"]
        .as_str()
        .expect("token")
        .to_owned();
    for _ in 0..3 {
        let next = heartbeat(&token);
        assert_eq!(next.status, 200, "{}", next.text);
        let renewed = next.json["last_heartbeat"]
            .as_str()
            .expect("token")
            .to_owned();
        assert!(
            renewed > token,
            "tokens strictly increase: {renewed} after {token}"
        );
        token = renewed;
    }

    let stop = server.post(
        &work_path(&environment, &format!("/{work}/stop")),
        &json!({}),
    );
    assert_eq!(stop.json["state"], "stopping");
    assert!(stop.json["stop_requested_at"].is_string());
    // The holder is told to drain; its lease is not renewed (docs/contract.md §3.3).
    let draining = heartbeat(&token);
    assert_eq!(draining.json["state"], "stopping");
    assert_eq!(draining.json["lease_extended"], false);
    assert_eq!(draining.json["last_heartbeat"], token.as_str());
    let confirmed = server.post_with(
        &work_path(&environment, &format!("/{work}/stop")),
        &[],
        None,
    );
    assert_eq!(confirmed.json["state"], "stopped");
    let stopped_at = confirmed.json["stopped_at"].clone();
    assert!(stopped_at.is_string());
    let again = server.post(
        &work_path(&environment, &format!("/{work}/stop")),
        &json!({"force": true}),
    );
    assert_eq!(again.status, 200);
    assert_eq!(again.json["stopped_at"], stopped_at, "unchanged");

    let item = server.get(&work_path(&environment, &format!("/{work}")));
    assert_eq!(item.json, again.json);
    let stats = server.get(&work_path(&environment, "/stats"));
    assert_eq!(
        stats.json,
        json!({"type": "work_queue_stats", "depth": 0, "pending": 0, "oldest_queued_at": null, "workers_polling": 1})
    );
    let listed = server.get(&work_path(&environment, ""));
    assert_eq!(listed.json["data"], json!([item.json]));
    assert_eq!(
        server.get(&work_path(&environment, "/poll")).json,
        Value::Null
    );
}

#[test]
fn takeover_refuses_the_old_holder_with_412() {
    let server = Server::start(&[]);
    let environment = server.environment("self_hosted");
    server.work(&environment);
    let (work, old_token) = server.claim(&environment, "w1");
    let path = |query: &str| work_path(&environment, &format!("/{work}/heartbeat{query}"));
    // Another worker heartbeats unconditionally: it now holds the lease.
    let taken = server.post_with(&path("?desired_ttl_seconds=30"), &[], None);
    assert_eq!(taken.status, 200);
    let new_token = taken.json["last_heartbeat"].as_str().expect("token");
    let refused = server.post_with(
        &path(&format!("?expected_last_heartbeat={old_token}")),
        &[],
        None,
    );
    assert_error(&refused, 412, "precondition_failed_error", None);
    assert_eq!(
        refused.json["error"]["details"]["current_state"],
        json!({"last_heartbeat": new_token, "state": "active", "ttl_seconds": 30, "lease_extended": false, "lease_epoch": 1})
    );
    let holder = server.post_with(
        &path(&format!("?expected_last_heartbeat={new_token}")),
        &[],
        None,
    );
    assert_eq!(holder.status, 200);
}

#[test]
fn a_lapsed_lease_is_requeued_logged_and_reclaimed() {
    let server = Server::start(&["--default-ttl-seconds", "10"]);
    let environment = server.environment("self_hosted");
    server.work(&environment);
    let (work, old_token) = server.claim(&environment, "w1");
    let claimed_at = Instant::now();

    // Worker 2 long-polls until the lease lapses (10 s after the heartbeat); the sweeper wakes it.
    let mut reclaimed = None;
    while claimed_at.elapsed() < Duration::from_secs(20) {
        let polled = server.get_with(
            &work_path(&environment, "/poll?block_ms=999"),
            &[("worker-id", "w2")],
        );
        assert_eq!(polled.status, 200, "{}", polled.text);
        if !polled.json.is_null() {
            reclaimed = Some((polled.json, claimed_at.elapsed()));
            break;
        }
    }
    let (item, after) = reclaimed.expect("the lapsed item is claimable again within 20 s");
    assert_eq!(item["id"], work.as_str());
    assert_eq!(item["state"], "queued");
    assert_eq!(item["acknowledged_at"], Value::Null);
    assert_eq!(item["latest_heartbeat_at"], Value::Null);
    assert!(
        after >= Duration::from_millis(9_500),
        "lapsed too early: {after:?}"
    );
    assert!(
        after < Duration::from_millis(11_500),
        "lapse noticed late: {after:?}"
    );
    assert!(
        server.logged(&format!(
            "lease lapsed environment_id={environment} work_id={work} from=active to=queued lapses=1"
        )),
        "the sweeper logs the lapse: {}",
        server.stderr.lock()
    );

    let path = |query: &str| work_path(&environment, &format!("/{work}/heartbeat{query}"));
    let old = format!("?expected_last_heartbeat={old_token}");
    // The old holder finds the item queued again: 409.
    assert_error(
        &server.post_with(&path(&old), &[], None),
        409,
        "invalid_request_error",
        None,
    );
    let acked = server.post_with(
        &work_path(&environment, &format!("/{work}/ack")),
        &[("worker-id", "w2")],
        None,
    );
    assert_eq!(acked.json["state"], "starting");
    let claimed = server.post_with(&path("?expected_last_heartbeat=NO_HEARTBEAT"), &[], None);
    assert_eq!(claimed.json["state"], "active");
    // Now another worker heartbeated it: 412 for the old holder.
    assert_error(
        &server.post_with(&path(&old), &[], None),
        412,
        "precondition_failed_error",
        None,
    );
}

#[test]
fn a_long_poll_wakes_the_moment_work_is_created() {
    let server = Server::start(&[]);
    let environment = server.environment("self_hosted");

    let started = Instant::now();
    let empty = server.get(&work_path(&environment, "/poll?block_ms=300"));
    let waited = started.elapsed();
    assert_eq!(empty.json, Value::Null);
    assert!(
        waited >= Duration::from_millis(290),
        "returned after {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(900),
        "returned after {waited:?}"
    );

    std::thread::scope(|scope| {
        let poller = scope.spawn(|| {
            let started = Instant::now();
            let reply = server.get(&work_path(&environment, "/poll?block_ms=999"));
            (reply, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(250));
        let work = server.work(&environment);
        let created = Instant::now();
        let (reply, waited) = poller.join().expect("the poller");
        assert_eq!(reply.json["id"], work.as_str(), "{}", reply.text);
        assert!(
            waited >= Duration::from_millis(200),
            "did not block: {waited:?}"
        );
        assert!(
            created.elapsed() < Duration::from_millis(400),
            "woken late: {:?} after creation",
            created.elapsed()
        );
    });
}

#[test]
fn both_prefixes_serve_the_same_table() {
    let server = Server::start(&[]);
    let created = server.post(
        "/api/v1/cloud/environments",
        &json!({"name": "both", "config": {"type": "self_hosted"}}),
    );
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.json["type"], "environment");
    assert_eq!(created.json["name"], "both");
    assert_eq!(created.json["config"], json!({"type": "self_hosted"}));
    let environment = created.json["id"].as_str().expect("id").to_owned();
    assert!(environment.starts_with("env_"));
    let cloud = format!("/api/v1/cloud/environments/{environment}/work");
    let anthropic = format!("/v1/environments/{environment}/work");

    let work = server.post(
        &cloud,
        &json!({"data": {"type": "session", "id": "sess_1"}}),
    );
    let work = work.json["id"].as_str().expect("id").to_owned();
    assert_eq!(
        server.get(&format!("{anthropic}/poll")).json["id"],
        work.as_str()
    );
    assert_eq!(
        server
            .post_with(&format!("{cloud}/{work}/ack"), &[], None)
            .json["state"],
        "starting"
    );
    let beat = server.post_with(&format!("{anthropic}/{work}/heartbeat"), &[], None);
    assert_eq!(beat.json["state"], "active");
    let patched = server.post(&format!("{cloud}/{work}"), &json!({"metadata": {"a": "1"}}));
    assert_eq!(patched.json["metadata"], json!({"a": "1"}));
    for suffix in ["", "/", "/stats"] {
        let one = server.get(&format!("{cloud}{suffix}"));
        let other = server.get(&format!("{anthropic}{suffix}"));
        assert_eq!(one.status, 200, "{suffix}: {}", one.text);
        assert_eq!(one.json, other.json, "{suffix}");
    }
    assert_eq!(
        server.get(&format!("{cloud}/{work}")).json,
        server.get(&format!("{anthropic}/{work}")).json
    );
    let stopped = server.post(&format!("{anthropic}/{work}/stop"), &json!({"force": true}));
    assert_eq!(stopped.json["state"], "stopped");
}

#[test]
fn lists_page_in_creation_order_and_metadata_patches_merge() {
    let server = Server::start(&[]);
    let environment = server.environment("self_hosted");
    let ids: Vec<String> = (0..5).map(|_| server.work(&environment)).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "minted ids sort in creation order");

    let first = server.get(&work_path(&environment, "?limit=2&beta=true"));
    assert_eq!(first.json["first_id"], ids[0].as_str());
    assert_eq!(first.json["last_id"], ids[1].as_str());
    assert_eq!(first.json["has_more"], true);
    let next = first.json["next_page"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = server.get(&work_path(&environment, &format!("?limit=2&page={next}")));
    assert_eq!(second.json["first_id"], ids[2].as_str());
    let last = server.get(&work_path(
        &environment,
        &format!(
            "?limit=2&page={}",
            second.json["next_page"].as_str().expect("next")
        ),
    ));
    assert_eq!(last.json["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (&last.json["has_more"], &last.json["next_page"]),
        (&json!(false), &Value::Null)
    );
    let before = server.get(&work_path(
        &environment,
        &format!("?before_id={}&limit=2", ids[3]),
    ));
    assert_eq!(before.json["first_id"], ids[1].as_str());
    assert_eq!(before.json["last_id"], ids[2].as_str());
    let capped = server.get(&work_path(&environment, "?limit=100000"));
    assert_eq!(capped.json["data"].as_array().map(Vec::len), Some(5));

    let path = work_path(&environment, &format!("/{}", ids[0]));
    server.post(&path, &json!({"metadata": {"a": "1", "b": "2"}}));
    let patched = server.post(&path, &json!({"metadata": {"a": null, "c": "3"}}));
    assert_eq!(patched.json["metadata"], json!({"b": "2", "c": "3"}));
    assert_eq!(patched.json["state"], "queued");
    let untouched = server.post_with(&path, &[], None);
    assert_eq!(untouched.json["metadata"], json!({"b": "2", "c": "3"}));

    let polled = server.get_with(&work_path(&environment, "/poll"), &[("worker-id", "w1")]);
    assert_eq!(polled.json["id"], ids[0].as_str());
    let stats = server.get(&work_path(&environment, "/stats"));
    assert_eq!(stats.json["depth"], 4);
    assert_eq!(stats.json["pending"], 1);
    assert_eq!(stats.json["workers_polling"], 1);
    assert_eq!(stats.json["oldest_queued_at"], polled.json["created_at"]);
    // reclaim_older_than_ms=0 hands the delivered item to the next poller at once.
    let reclaimed = server.get_with(
        &work_path(&environment, "/poll?reclaim_older_than_ms=0"),
        &[("worker-id", "w2")],
    );
    assert_eq!(reclaimed.json["id"], ids[0].as_str());
}

#[test]
fn auth_accepts_bearer_or_x_api_key_and_request_ids_are_echoed() {
    let server = Server::start(&[]);
    let path = "/v1/environments";
    let body = br#"{"name": "auth"}"#;
    for header in [("authorization", bearer()), ("x-api-key", TOKEN.to_owned())] {
        let reply = server.request("POST", path, &[(header.0, &header.1)], Some(body));
        assert_eq!(reply.status, 200, "{header:?}: {}", reply.text);
    }
    for header in [
        ("authorization", format!("Basic {TOKEN}")),
        ("authorization", "Bearer ".to_owned()),
        ("x-api-key", format!("{TOKEN}x")),
    ] {
        let reply = server.request("POST", path, &[(header.0, &header.1)], Some(body));
        assert_error(&reply, 401, "authentication_error", None);
    }
    let traced = server.request("GET", "/v1/nowhere", &[("x-request-id", "trace-42")], None);
    assert_error(&traced, 401, "authentication_error", None);
    assert_eq!(traced.json["request_id"], "trace-42");
    let generated = server.get("/v1/nowhere");
    assert_error(&generated, 404, "not_found_error", None);
    assert!(generated.json["request_id"]
        .as_str()
        .is_some_and(|id| id.starts_with("req_")));
}

#[test]
fn bad_input_of_any_size_or_shape_gets_a_clear_4xx() {
    let server = Server::start(&[]);
    let environment = server.environment("self_hosted");
    let work = server.work(&environment);
    let auth = bearer();
    let headers = [("authorization", auth.as_str())];

    // Huge and undecodable ids are unknown ids.
    let huge = format!("work_{}", "a".repeat(60_000));
    assert_error(
        &server.get(&work_path(&environment, &format!("/{huge}"))),
        404,
        "not_found_error",
        None,
    );
    assert_error(
        &server.get(&work_path(&environment, "/work_%FF%FE")),
        404,
        "not_found_error",
        None,
    );
    assert_error(
        &server.get(&format!("/v1/environments/{}/work", "e".repeat(60_000))),
        404,
        "not_found_error",
        None,
    );
    // A long query string of unknown parameters is ignored; a long bad value is refused.
    let long_query = format!("?junk={}&limit=1", "x".repeat(60_000));
    assert_eq!(
        server.get(&work_path(&environment, &long_query)).status,
        200
    );
    let long_ttl = format!("?desired_ttl_seconds={}", "x".repeat(60_000));
    let reply = server.post_with(
        &work_path(&environment, &format!("/{work}/heartbeat{long_ttl}")),
        &[],
        None,
    );
    assert_error(
        &reply,
        400,
        "invalid_request_error",
        Some("desired_ttl_seconds"),
    );
    assert!(
        reply.text.len() < 1_000,
        "the message quotes an excerpt only"
    );

    // Bodies: binary, not JSON, wrong shape, too large.
    let create = work_path(&environment, "");
    let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    for body in [&binary[..], b"{", b"[1, 2]", b"null", b"\"text\""] {
        let reply = server.request("POST", &create, &headers, Some(body));
        assert_error(
            &reply,
            400,
            "invalid_request_error",
            reply.json["error"]["param"].as_str(),
        );
    }
    // Refused on its declared length, before any of it is read. (Sending the body too would
    // race: the server answers and closes while the client is still writing, and the client
    // may see the connection reset instead of the 413.)
    let too_large = format!(
        "POST {create} HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        100 * 1024
    );
    assert_eq!(server.raw_status(too_large.as_bytes()), 413);
    // An unknown route or method.
    assert_error(&server.get("/v2/anything"), 404, "not_found_error", None);
    assert_error(
        &server.request("DELETE", &create, &headers, None),
        405,
        "invalid_request_error",
        None,
    );
    // An oversized request head, or one that is not HTTP, is refused by the HTTP layer.
    let giant = format!(
        "GET /v1/environments HTTP/1.1\r\nhost: x\r\nx-junk: {}\r\n\r\n",
        "x".repeat(1_000_000)
    );
    let status = server.raw_status(giant.as_bytes());
    assert!((400..500).contains(&status), "{status}");
    let status = server.raw_status(b"\x00\x01\x02 garbage\r\n\r\n");
    assert!((400..500).contains(&status), "{status}");
    // And the server still works afterwards.
    assert_eq!(
        server
            .get(&work_path(&environment, &format!("/{work}")))
            .status,
        200
    );
}

#[test]
fn a_body_that_never_arrives_times_out_with_408() {
    let server = Server::start(&[]);
    let environment = server.environment("self_hosted");
    let started = Instant::now();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-length: 1000\r\n\r\n{{\"data\"",
        work_path(&environment, ""),
        bearer()
    );
    assert_eq!(server.raw_status(head.as_bytes()), 408);
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(4_900)..Duration::from_secs(8)).contains(&waited),
        "{waited:?}"
    );
}

#[test]
fn the_server_prints_a_generated_token_and_honours_the_environment_variable() {
    let generated = Server::start_raw(&["--listen", "127.0.0.1:0"], &[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let lines = generated.stdout.lock().clone();
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let token = lines[0].rsplit(' ').next().expect("a token").to_owned();
    assert!(token.starts_with("wl_") && token.len() == 35, "{lines:?}");
    assert!(
        lines[1].starts_with("try: curl") && lines[1].contains(&token),
        "{lines:?}"
    );
    let reply = generated.request("GET", "/v1/none", &[("x-api-key", &token)], None);
    assert_error(&reply, 404, "not_found_error", None);

    let from_env = Server::start_raw(
        &["--listen", "127.0.0.1:0"],
        &[("WORKLEASE_TOKEN", "from-env")],
    );
    let reply = from_env.request(
        "GET",
        "/v1/none",
        &[("authorization", "Bearer from-env")],
        None,
    );
    assert_error(&reply, 404, "not_found_error", None);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        from_env.stdout.lock().is_empty(),
        "no token printed when one is given"
    );
}

#[test]
fn bad_flags_and_variables_are_refused_by_name_with_status_2() {
    for (args, env, named) in [
        (
            &["--default-ttl-seconds", "5"][..],
            None,
            "--default-ttl-seconds",
        ),
        (&["--max-attempts", "0"], None, "--max-attempts"),
        (&["--listen", "nowhere"], None, "--listen"),
        (&["--log-format", "xml"], None, "--log-format"),
        (&["--frobnicate"], None, "--frobnicate"),
        (
            &[],
            Some(("WORKLEASE_DEFAULT_TTL_SECONDS", "601")),
            "--default-ttl-seconds",
        ),
        (&[], Some(("WORKLEASE_LISTEN", "nowhere")), "--listen"),
        (&[], Some(("WORKLEASE_TOKEN", "has space")), "--token"),
        (&["--snapshot-every", "0"], None, "--snapshot-every"),
        (
            &[],
            Some(("WORKLEASE_SNAPSHOT_EVERY", "none")),
            "--snapshot-every",
        ),
    ] {
        let mut command = std::process::Command::new(support::binary());
        command.args(args).env_remove("WORKLEASE_TOKEN");
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let output = command.output().expect("runs");
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("error") && stderr.contains(named),
            "{args:?} {env:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?} {env:?}: nothing served");
    }
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let output = std::process::Command::new(support::binary())
        .arg("--help")
        .output()
        .expect("runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for (flag, variable) in [
        ("--listen", "WORKLEASE_LISTEN"),
        ("--token", "WORKLEASE_TOKEN"),
        ("--default-ttl-seconds", "WORKLEASE_DEFAULT_TTL_SECONDS"),
        ("--max-attempts", "WORKLEASE_MAX_ATTEMPTS"),
        ("--keep-stopped-seconds", "WORKLEASE_KEEP_STOPPED_SECONDS"),
        ("--data-dir", "WORKLEASE_DATA_DIR"),
        ("--snapshot-every", "WORKLEASE_SNAPSHOT_EVERY"),
        ("--log-format", "WORKLEASE_LOG_FORMAT"),
        ("--log-level", "WORKLEASE_LOG_LEVEL"),
    ] {
        assert!(
            help.contains(flag) && help.contains(variable),
            "{flag}: {help}"
        );
    }
}

#[test]
fn settings_come_from_environment_variables_and_logs_can_be_json() {
    let server = Server::start_raw(
        &[],
        &[
            ("WORKLEASE_LISTEN", "127.0.0.1:0"),
            ("WORKLEASE_TOKEN", TOKEN),
            ("WORKLEASE_DEFAULT_TTL_SECONDS", "42"),
            ("WORKLEASE_LOG_FORMAT", "json"),
        ],
    );
    let environment = server.environment("self_hosted");
    server.work(&environment);
    let (work, _) = server.claim(&environment, "w1");
    let item = server.get(&work_path(&environment, &format!("/{work}")));
    assert_eq!(item.status, 200, "{}", item.text);
    let beat = server.post_with(
        &work_path(&environment, &format!("/{work}/heartbeat")),
        &[],
        None,
    );
    assert_eq!(beat.json["ttl_seconds"], 42, "{}", beat.text);
    assert!(
        server.logged("environment created"),
        "{}",
        server.stderr.lock()
    );
    let log = server.stderr.lock().clone();
    let events: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    let serving = events
        .iter()
        .find(|event| event["message"] == "serving")
        .unwrap_or_else(|| panic!("a startup event: {log}"));
    assert_eq!(serving["level"], "INFO");
    assert_eq!(serving["default_ttl_seconds"], 42);
    assert!(serving["address"]
        .as_str()
        .is_some_and(|a| server.base.ends_with(a)));
    let created = events
        .iter()
        .find(|event| event["message"] == "environment created")
        .expect("the creation event");
    assert_eq!(created["environment_id"], environment.as_str());
}

#[cfg(unix)]
#[test]
fn sigterm_shuts_the_server_down_cleanly() {
    let mut server = Server::start(&[]);
    let environment = server.environment("self_hosted");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = server
        .wait_exit(Duration::from_secs(5))
        .expect("exits within 5 s");
    assert!(exit.success(), "{exit:?}");
    assert!(
        server.logged("shut down cleanly"),
        "{}",
        server.stderr.lock()
    );
    assert!(server.logged(&environment), "{}", server.stderr.lock());
}

#[test]
fn max_attempts_stops_an_item_that_lapsed_too_often() {
    // One lapse allowed: the first lapse stops the item. Lapse is 10 s away; this runs in
    // parallel with the other lapse test.
    let server = Server::start(&["--default-ttl-seconds", "10", "--max-attempts", "1"]);
    let environment = server.environment("self_hosted");
    let work = server.work(&environment);
    let polled = server.get(&work_path(&environment, "/poll"));
    assert_eq!(polled.json["id"], work.as_str());
    server.post_with(&work_path(&environment, &format!("/{work}/ack")), &[], None);
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(10_200));
    let item = loop {
        let item = server.get(&work_path(&environment, &format!("/{work}")));
        if item.json["state"] == "stopped" || started.elapsed() > Duration::from_secs(15) {
            break item;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(item.json["state"], "stopped", "{}", item.text);
    assert!(item.json["stopped_at"].is_string());
    assert!(
        server.logged(&format!("work_id={work} from=starting to=stopped lapses=1")),
        "{}",
        server.stderr.lock()
    );
}

#[test]
fn keep_stopped_seconds_forgets_stopped_items_and_keeps_the_rest() {
    let server = Server::start(&["--keep-stopped-seconds", "1"]);
    let environment = server.environment("self_hosted");
    let stopped = server.work(&environment);
    let queued = server.work(&environment);
    let stop = server.post_with(
        &work_path(&environment, &format!("/{stopped}/stop")),
        &[],
        Some(&json!({"force": true})),
    );
    assert_eq!(stop.json["state"], "stopped", "{}", stop.text);
    let started = Instant::now();
    let gone = loop {
        let item = server.get(&work_path(&environment, &format!("/{stopped}")));
        if item.status == 404 || started.elapsed() > Duration::from_secs(10) {
            break item;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(gone.status, 404, "{}", gone.text);
    // Purged after at least the retention, and the queued item is untouched.
    assert!(started.elapsed() >= Duration::from_millis(900));
    let kept = server.get(&work_path(&environment, &format!("/{queued}")));
    assert_eq!(kept.json["state"], "queued", "{}", kept.text);
    assert!(
        server.logged("purged stopped items purged=1"),
        "{}",
        server.stderr.lock()
    );
}

/// Issues 12 and 19 over HTTP (docs/contract.md §3.3), on both prefixes: on a stopping item, a
/// heartbeat with a stale token, with `NO_HEARTBEAT` or with no precondition answers 200
/// `stopping` with `lease_extended: false` (the signal every SDK lease loop drains on), the
/// item's last token and its lease's TTL (not the TTL asked for), and changes nothing: the item
/// reads the same before and after, `latest_heartbeat_at` included. A stopped item answers 409.
#[test]
fn a_stopping_items_heartbeat_says_drain_and_changes_nothing_and_a_stopped_one_refuses() {
    let server = Server::start(&["--default-ttl-seconds", "40"]);
    for prefix in ["/v1", "/api/v1/cloud"] {
        let environment = server.environment("self_hosted");
        server.work(&environment);
        let (work, stale) = server.claim(&environment, "w1");
        let base = format!("{prefix}/environments/{environment}/work/{work}");
        let beat = |query: &str| server.post_with(&format!("{base}/heartbeat{query}"), &[], None);
        let current = beat(&format!(
            "?expected_last_heartbeat={stale}&desired_ttl_seconds=30"
        ));
        assert_eq!(current.json["state"], "active", "{}", current.text);
        assert_eq!(current.json["lease_extended"], true, "{}", current.text);
        let held = current.json["last_heartbeat"]
            .as_str()
            .expect("a token")
            .to_owned();

        let stopping = server.post(&format!("{base}/stop"), &json!({}));
        assert_eq!(stopping.json["state"], "stopping", "{}", stopping.text);
        let before = server.get(&base);
        assert_eq!(before.json["latest_heartbeat_at"], held.as_str());
        for query in [
            format!("?expected_last_heartbeat={stale}&desired_ttl_seconds=60"),
            "?expected_last_heartbeat=NO_HEARTBEAT&desired_ttl_seconds=45".to_owned(),
            format!("?expected_last_heartbeat={held}"),
            "?desired_ttl_seconds=600".to_owned(),
            String::new(),
        ] {
            std::thread::sleep(Duration::from_millis(5));
            let reply = beat(&query);
            assert_eq!(reply.status, 200, "{prefix} {query}: {}", reply.text);
            assert_eq!(
                reply.json,
                json!({
                    "type": "work_heartbeat",
                    "last_heartbeat": held,
                    "lease_extended": false,
                    "state": "stopping",
                    "ttl_seconds": 30,
                    "lease_epoch": 1
                }),
                "{prefix} {query}: the lease as held, not extended"
            );
            let item = server.get(&base);
            assert_eq!(item.json, before.json, "{prefix} {query}: nothing changes");
        }

        let stopped = server.post(&format!("{base}/stop"), &json!({}));
        assert_eq!(stopped.json["state"], "stopped", "{}", stopped.text);
        for query in [
            format!("?expected_last_heartbeat={stale}"),
            format!("?expected_last_heartbeat={held}"),
            "?expected_last_heartbeat=NO_HEARTBEAT".to_owned(),
            String::new(),
        ] {
            assert_error(&beat(&query), 409, "invalid_request_error", None);
        }
    }
}

/// docs/contract.md §3.3 and §5 over HTTP: the heartbeats of a worker that never confirms a
/// graceful stop do not keep the item: it lapses to stopped at the deadline it had when the
/// stop was asked, swept by the server with no request to notice it.
#[test]
fn an_unconfirmed_stop_lapses_at_its_deadline_however_often_the_worker_beats() {
    let server = Server::start(&["--default-ttl-seconds", "10"]);
    let environment = server.environment("self_hosted");
    server.work(&environment);
    let (work, token) = server.claim(&environment, "w1");
    let claimed_at = Instant::now();
    let base = format!("/v1/environments/{environment}/work/{work}");
    let stopping = server.post(&format!("{base}/stop"), &json!({}));
    assert_eq!(stopping.json["state"], "stopping", "{}", stopping.text);
    let drained = loop {
        let reply = server.post_with(
            &format!("{base}/heartbeat?expected_last_heartbeat={token}"),
            &[],
            None,
        );
        if reply.status != 200 {
            break reply;
        }
        assert_eq!(reply.json["lease_extended"], false, "{}", reply.text);
        assert!(
            claimed_at.elapsed() < Duration::from_millis(10_500),
            "still stopping past its deadline: {}",
            reply.text
        );
        std::thread::sleep(Duration::from_millis(1_000));
    };
    assert_error(&drained, 409, "invalid_request_error", None);
    assert!(claimed_at.elapsed() >= Duration::from_millis(9_000));
    assert!(
        server.logged(&format!("work_id={work} from=stopping to=stopped")),
        "{}",
        server.stderr.lock()
    );
    let item = server.get(&base);
    assert_eq!(item.json["state"], "stopped", "{}", item.text);
    assert_eq!(item.json["latest_heartbeat_at"], token.as_str());
}

/// The sweeper sleeps until the table's next deadline and is woken only when a change brings
/// that earlier. A heartbeat that shortens a 600 s lease to 10 s is such a change: the lapse
/// must be swept (and logged) on time, with no request to notice it on the way.
#[test]
fn a_heartbeat_that_shortens_the_lease_wakes_the_sweeper_early() {
    let server = Server::start(&["--default-ttl-seconds", "600"]);
    let environment = server.environment("self_hosted");
    server.work(&environment);
    let (work, token) = server.claim(&environment, "w1");
    let shortened = server.post_with(
        &work_path(
            &environment,
            &format!("/{work}/heartbeat?expected_last_heartbeat={token}&desired_ttl_seconds=10"),
        ),
        &[],
        None,
    );
    assert_eq!(shortened.json["ttl_seconds"], 10, "{}", shortened.text);
    let renewed_at = Instant::now();
    std::thread::sleep(Duration::from_millis(9_500));
    assert!(
        !server.stderr.lock().contains("lease lapsed"),
        "lapsed early: {}",
        server.stderr.lock()
    );
    assert!(
        server.logged(&format!("work_id={work} from=active to=queued lapses=1")),
        "the sweeper slept through the shortened lease: {}",
        server.stderr.lock()
    );
    assert!(renewed_at.elapsed() < Duration::from_millis(12_500));
}
