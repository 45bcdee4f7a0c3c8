//! docs/contract.md §9 over HTTP, row by row and under both prefixes: the environment resource as the
//! official SDK's `client.beta.environments` uses it.

// This file uses a part of the shared support only.
mod support;

use serde_json::{json, Value};
use support::{assert_error, bearer, Server};

const PREFIXES: [&str; 2] = ["/v1", "/api/v1/cloud"];

fn delete(server: &Server, path: &str) -> support::Reply {
    server.request("DELETE", path, &[("authorization", &bearer())], None)
}

#[test]
fn create_returns_the_sdk_object_with_defaults_and_ignores_unknown_fields() {
    let server = Server::start(&[]);
    for prefix in PREFIXES {
        let reply = server.post(
            &format!("{prefix}/environments"),
            &json!({"name": "builds", "unknown_field": 1}),
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        let object = &reply.json;
        assert_eq!(object["type"], "environment");
        assert_eq!(object["name"], "builds");
        assert_eq!(object["config"], json!({"type": "self_hosted"}));
        assert_eq!(object["description"], Value::Null);
        assert_eq!(object["metadata"], json!({}));
        assert_eq!(object["scope"], Value::Null);
        assert_eq!(object["archived_at"], Value::Null);
        assert_eq!(object["created_at"], object["updated_at"]);
        assert!(object["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("env_")));
        assert!(object.get("unknown_field").is_none());
    }

    let cloud = json!({
        "name": "sandbox",
        "config": {"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["a.example"]},
                   "packages": {"pip": ["requests"]}},
        "description": "for experiments",
        "metadata": {"team": "ml"},
        "scope": "organization",
    });
    let reply = server.post("/v1/environments", &cloud);
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["config"], cloud["config"], "kept verbatim");
    assert_eq!(reply.json["description"], "for experiments");
    assert_eq!(reply.json["metadata"], json!({"team": "ml"}));
    assert_eq!(reply.json["scope"], "organization");
    let id = reply.json["id"].as_str().unwrap();
    let retrieved = server.get(&format!("/api/v1/cloud/environments/{id}"));
    assert_eq!(
        retrieved.json, reply.json,
        "retrieve answers what create did"
    );
}

#[test]
fn create_refuses_values_over_their_limits_naming_the_parameter() {
    let server = Server::start(&[]);
    let big = "x".repeat(16 * 1024);
    let cases = [
        (json!({}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "n".repeat(257)}), "name"),
        (json!({"name": 7}), "name"),
        (
            json!({"name": "ok", "description": "d".repeat(2049)}),
            "description",
        ),
        (
            json!({"name": "ok", "config": {"type": "cloud", "blob": big}}),
            "config",
        ),
        (
            json!({"name": "ok", "config": {"type": "mainframe"}}),
            "config",
        ),
        (json!({"name": "ok", "scope": "galaxy"}), "scope"),
        (json!({"name": "ok", "metadata": {"k": 1}}), "metadata"),
    ];
    for (body, param) in cases {
        let reply = server.post("/v1/environments", &body);
        assert_error(&reply, 400, "invalid_request_error", Some(param));
    }
    // 256 characters of two bytes each are within the limit.
    let wide = server.post("/v1/environments", &json!({"name": "é".repeat(256)}));
    assert_eq!(wide.status, 200, "{}", wide.text);
}

#[test]
fn retrieve_answers_404_for_unknown_and_malformed_ids() {
    let server = Server::start(&[]);
    for prefix in PREFIXES {
        for id in ["env_0000", "env-nope", "work_1"] {
            let reply = server.get(&format!("{prefix}/environments/{id}"));
            assert_error(&reply, 404, "not_found_error", None);
        }
    }
}

#[test]
fn update_renames_clears_and_deletes_metadata_keys_with_null_or_empty() {
    let server = Server::start(&[]);
    let created = server.post(
        "/v1/environments",
        &json!({"name": "old", "description": "text", "metadata": {"a": "1", "b": "2", "c": "3"}}),
    );
    let id = created.json["id"].as_str().unwrap().to_owned();
    for prefix in PREFIXES {
        let path = format!("{prefix}/environments/{id}");
        let reply = server.post(&path, &json!({}));
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let reply = server.post(
        &format!("/v1/environments/{id}"),
        &json!({"name": "new", "description": null, "metadata": {"a": null, "b": "", "d": "4"}}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["name"], "new");
    assert_eq!(reply.json["description"], Value::Null);
    assert_eq!(reply.json["metadata"], json!({"c": "3", "d": "4"}));
    assert_eq!(reply.json["created_at"], created.json["created_at"]);
    assert_ne!(reply.json["updated_at"], created.json["updated_at"]);

    let retype = server.post(
        &format!("/v1/environments/{id}"),
        &json!({"config": {"type": "cloud"}}),
    );
    assert_error(&retype, 400, "invalid_request_error", Some("config"));
}

#[test]
fn list_pages_by_next_page_and_hides_archived_unless_asked() {
    let server = Server::start(&[]);
    let mut ids = Vec::new();
    for n in 0..5 {
        let reply = server.post("/v1/environments", &json!({"name": format!("e{n}")}));
        ids.push(reply.json["id"].as_str().unwrap().to_owned());
    }
    let archived = server.post_with(&format!("/v1/environments/{}/archive", ids[2]), &[], None);
    assert_eq!(archived.status, 200, "{}", archived.text);
    for prefix in PREFIXES {
        let mut seen = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let query = page.map_or(String::new(), |p| format!("&page={p}"));
            let reply = server.get(&format!("{prefix}/environments?limit=2{query}"));
            assert_eq!(reply.status, 200, "{}", reply.text);
            for object in reply.json["data"].as_array().unwrap() {
                seen.push(object["id"].as_str().unwrap().to_owned());
            }
            match reply.json["next_page"].as_str() {
                Some(next) => {
                    assert_eq!(reply.json["has_more"], true);
                    page = Some(next.to_owned());
                }
                None => break,
            }
        }
        let expected: Vec<String> = ids
            .iter()
            .enumerate()
            .filter(|(n, _)| *n != 2)
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(seen, expected, "ascending id, archived hidden");
    }
    let all = server.get("/v1/environments?include_archived=true&limit=100");
    assert_eq!(all.json["data"].as_array().unwrap().len(), 5);
    for (query, param) in [
        ("limit=0", "limit"),
        ("include_archived=yes", "include_archived"),
    ] {
        let reply = server.get(&format!("/v1/environments?{query}"));
        assert_error(&reply, 400, "invalid_request_error", Some(param));
    }
}

#[test]
fn archive_stops_intake_with_environment_archived_while_work_in_flight_drains() {
    let server = Server::start(&[]);
    let environment = server.environment("self_hosted");
    server.work(&environment);
    let (work, token) = server.claim(&environment, "w1");
    for prefix in PREFIXES {
        let reply = server.post_with(
            &format!("{prefix}/environments/{environment}/archive"),
            &[],
            None,
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert!(reply.json["archived_at"].is_string());
    }
    let refused = server.post(
        &format!("/v1/environments/{environment}/work"),
        &json!({"data": {"type": "session", "id": "sess_1"}}),
    );
    assert_error(&refused, 400, "invalid_request_error", None);
    assert_eq!(
        refused.json["error"]["details"],
        json!({"error_code": "environment_archived"})
    );
    let update = server.post(
        &format!("/v1/environments/{environment}"),
        &json!({"name": "renamed"}),
    );
    assert_eq!(
        update.json["error"]["details"]["error_code"],
        "environment_archived"
    );
    let beat = server.post_with(
        &format!(
            "/v1/environments/{environment}/work/{work}/heartbeat?expected_last_heartbeat={token}"
        ),
        &[],
        None,
    );
    assert_eq!(beat.status, 200, "running work drains: {}", beat.text);
}

#[test]
fn delete_is_refused_with_a_live_lease_then_answers_environment_deleted_and_404() {
    let server = Server::start(&[]);
    let environment = server.environment("self_hosted");
    server.work(&environment);
    server.work(&environment);
    let (work, _) = server.claim(&environment, "w1");
    let busy = delete(&server, &format!("/v1/environments/{environment}"));
    assert_error(&busy, 409, "invalid_request_error", None);
    let stopped = server.post(
        &format!("/v1/environments/{environment}/work/{work}/stop"),
        &json!({"force": true}),
    );
    assert_eq!(stopped.status, 200, "{}", stopped.text);
    let deleted = delete(
        &server,
        &format!("/api/v1/cloud/environments/{environment}"),
    );
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(
        deleted.json,
        json!({"id": environment, "type": "environment_deleted"})
    );
    for path in [
        format!("/v1/environments/{environment}"),
        format!("/v1/environments/{environment}/work/{work}"),
        format!("/v1/environments/{environment}/work/stats"),
    ] {
        assert_error(&server.get(&path), 404, "not_found_error", None);
    }
    assert_error(
        &delete(&server, &format!("/v1/environments/{environment}")),
        404,
        "not_found_error",
        None,
    );
}

/// Durable mode: environment records are replicated state (docs/contract.md §9), so a `kill -9` and a
/// restart on the same directory keep every one a 2xx reported, archived and deleted alike,
/// across a snapshot (every 3 commands here) and the log after it.
#[test]
fn environment_records_survive_kill_9_in_durable_mode() {
    let dir = std::env::temp_dir().join(format!(
        "worklease-environments-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let data = dir.join("data").display().to_string();
    let args = ["--data-dir", data.as_str(), "--snapshot-every", "3"];
    let server = Server::start(&args);
    let kept = server.post(
        "/v1/environments",
        &json!({"name": "kept", "description": "d", "metadata": {"k": "v"}, "scope": "account",
                "config": {"type": "cloud", "packages": {"pip": ["x"]}}}),
    );
    assert_eq!(kept.status, 200, "{}", kept.text);
    let archived = server.environment("self_hosted");
    let reply = server.post_with(&format!("/v1/environments/{archived}/archive"), &[], None);
    assert_eq!(reply.status, 200, "{}", reply.text);
    let gone = server.environment("self_hosted");
    assert_eq!(
        delete(&server, &format!("/v1/environments/{gone}")).status,
        200
    );
    let renamed = server.post(
        &format!("/v1/environments/{}", kept.json["id"].as_str().unwrap()),
        &json!({"name": "renamed", "metadata": {"k": null}}),
    );
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    let before = server.get("/v1/environments?include_archived=true");
    let status = std::process::Command::new("kill")
        .args(["-9", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    drop(server);

    let server = Server::start(&args);
    let after = server.get("/v1/environments?include_archived=true");
    assert_eq!(after.json, before.json, "every environment as it was");
    assert_eq!(after.json["data"][0]["name"], "renamed");
    assert_error(
        &server.get(&format!("/v1/environments/{gone}")),
        404,
        "not_found_error",
        None,
    );
    let refused = server.post(
        &format!("/v1/environments/{archived}/work"),
        &json!({"data": {"type": "session", "id": "sess_1"}}),
    );
    assert_eq!(
        refused.json["error"]["details"]["error_code"],
        "environment_archived"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
