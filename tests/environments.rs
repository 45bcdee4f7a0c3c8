//! docs/contract.md §9: environments as a resource, one test per row (create, retrieve, update, list,
//! archive, delete), on the table; the HTTP shapes are the server's tests.

use worklease::{
    EnvironmentId, EnvironmentKind, EnvironmentListRequest, EnvironmentPatch, EnvironmentScope,
    Error, HeartbeatRequest, LeaseTable, Metadata, MetadataPatch, NewEnvironment, Param, StopMode,
    Timestamp, WorkState,
};

const T0: i64 = 1_782_893_706_120_394;
const SECOND: i64 = 1_000_000;

fn at(offset: i64) -> Timestamp {
    Timestamp::from_unix_micros(T0 + offset)
}

fn env(id: &str) -> EnvironmentId {
    id.parse().unwrap()
}

fn create(table: &mut LeaseTable, id: &str, name: &str) {
    table
        .create_environment(env(id), NewEnvironment::self_hosted(name), at(0))
        .unwrap();
}

#[test]
fn create_keeps_every_field_and_defaults_the_config() {
    let mut table = LeaseTable::default();
    let mut new = NewEnvironment::self_hosted("builds");
    new.description = Some("CI".into());
    new.scope = Some(EnvironmentScope::Organization);
    new.metadata = Metadata::from_map([("team".to_string(), "ci".to_string())].into()).unwrap();
    let record = table.create_environment(env("env_01"), new, at(0)).unwrap();
    assert_eq!(record.config, r#"{"type":"self_hosted"}"#);
    assert_eq!(record.description.as_deref(), Some("CI"));
    assert_eq!(record.scope, Some(EnvironmentScope::Organization));
    assert_eq!((record.created_at, record.updated_at), (at(0), at(0)));
    assert_eq!(record.archived_at, None);

    let mut cloud = NewEnvironment::self_hosted("sandbox");
    cloud.kind = EnvironmentKind::Cloud;
    cloud.config = Some(r#"{"type":"cloud","networking":{"type":"unrestricted"}}"#.into());
    let record = table
        .create_environment(env("env_02"), cloud, at(0))
        .unwrap();
    assert!(record.config.contains("networking"), "kept verbatim");
    assert_eq!(table.retrieve_environment("env_02").unwrap(), record);
}

#[test]
fn create_refuses_values_over_their_limits_naming_the_parameter() {
    let mut table = LeaseTable::default();
    type Breaks = fn(&mut NewEnvironment);
    let cases: [(Breaks, Param); 4] = [
        (|new| new.name = String::new(), Param::Name),
        (|new| new.name = "n".repeat(257), Param::Name),
        (
            |new| new.description = Some("d".repeat(2049)),
            Param::Description,
        ),
        (
            |new| new.config = Some(format!("{{\"x\":\"{}\"}}", "c".repeat(16 * 1024))),
            Param::Config,
        ),
    ];
    for (break_it, param) in cases {
        let mut new = NewEnvironment::self_hosted("ok");
        break_it(&mut new);
        let error = table
            .create_environment(env("env_01"), new, at(0))
            .unwrap_err();
        assert_eq!((error.status(), error.param()), (400, Some(param)));
    }
    assert!(
        table.retrieve_environment("env_01").is_err(),
        "nothing created"
    );
    create(&mut table, "env_01", "first");
    let twice = table
        .create_environment(env("env_01"), NewEnvironment::self_hosted("again"), at(0))
        .unwrap_err();
    assert_eq!(twice.status(), 409);
}

#[test]
fn retrieve_answers_404_for_unknown_and_malformed_ids() {
    let table = LeaseTable::default();
    for id in ["env_nope", "env-nope", ""] {
        assert_eq!(table.retrieve_environment(id).unwrap_err().status(), 404);
    }
}

#[test]
fn update_renames_clears_the_description_and_deletes_keys_with_null_or_empty() {
    let mut table = LeaseTable::default();
    let mut new = NewEnvironment::self_hosted("old");
    new.description = Some("text".into());
    new.metadata = Metadata::from_map(
        [("a", "1"), ("b", "2"), ("c", "3")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
    )
    .unwrap();
    table.create_environment(env("env_01"), new, at(0)).unwrap();
    let patch = EnvironmentPatch {
        name: Some("new".into()),
        description: Some(None),
        metadata: Some(MetadataPatch::from([
            ("a".to_string(), None),
            ("b".to_string(), Some(String::new())),
            ("d".to_string(), Some("4".to_string())),
        ])),
        ..EnvironmentPatch::default()
    };
    let record = table
        .update_environment("env_01", &patch, at(SECOND))
        .unwrap();
    assert_eq!(record.name, "new");
    assert_eq!(record.description, None);
    let keys: Vec<&str> = record.metadata.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["c", "d"]);
    assert_eq!((record.created_at, record.updated_at), (at(0), at(SECOND)));

    let untouched = table
        .update_environment("env_01", &EnvironmentPatch::default(), at(2 * SECOND))
        .unwrap();
    assert_eq!(untouched.name, "new", "omitted fields keep their value");
}

#[test]
fn update_refuses_a_config_type_change_and_an_archived_environment() {
    let mut table = LeaseTable::default();
    create(&mut table, "env_01", "e");
    let patch = EnvironmentPatch {
        config: Some((EnvironmentKind::Cloud, r#"{"type":"cloud"}"#.into())),
        ..EnvironmentPatch::default()
    };
    let error = table
        .update_environment("env_01", &patch, at(0))
        .unwrap_err();
    assert_eq!((error.status(), error.param()), (400, Some(Param::Config)));

    table.archive_environment("env_01", at(SECOND)).unwrap();
    let rename = EnvironmentPatch {
        name: Some("x".into()),
        ..EnvironmentPatch::default()
    };
    let error = table
        .update_environment("env_01", &rename, at(0))
        .unwrap_err();
    assert_eq!(error.status(), 400);
    assert_eq!(error.error_code(), Some("environment_archived"));
}

#[test]
fn list_pages_in_id_order_and_shows_archived_ones_only_when_asked() {
    let mut table = LeaseTable::default();
    for id in ["env_05", "env_01", "env_04", "env_02", "env_03"] {
        create(&mut table, id, id);
    }
    table.archive_environment("env_03", at(0)).unwrap();
    let mut seen = Vec::new();
    let mut request = EnvironmentListRequest {
        limit: 2,
        ..EnvironmentListRequest::default()
    };
    loop {
        let page = table.list_environments(&request);
        seen.extend(page.data.iter().map(|record| record.id.to_string()));
        match page.next_page {
            Some(next) => request.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["env_01", "env_02", "env_04", "env_05"]);
    let all = table.list_environments(&EnvironmentListRequest {
        include_archived: true,
        ..EnvironmentListRequest::default()
    });
    assert_eq!(all.data.len(), 5);
    assert!(!all.has_more);
}

#[test]
fn archive_stops_intake_but_not_work_in_flight() {
    let mut table = LeaseTable::default();
    create(&mut table, "env_01", "e");
    let work = "work_01".parse().unwrap();
    table
        .create_work(
            "env_01",
            work,
            "sess_01".parse().unwrap(),
            Metadata::new(),
            at(0),
        )
        .unwrap();
    table.ack("env_01", "work_01", None, at(0)).unwrap();
    let first = table.archive_environment("env_01", at(SECOND)).unwrap();
    let again = table.archive_environment("env_01", at(2 * SECOND)).unwrap();
    assert_eq!(first, again, "archiving twice changes nothing");
    assert_eq!(first.archived_at, Some(at(SECOND)));

    let refused = table
        .create_work(
            "env_01",
            "work_02".parse().unwrap(),
            "sess_01".parse().unwrap(),
            Metadata::new(),
            at(SECOND),
        )
        .unwrap_err();
    assert!(matches!(refused, Error::EnvironmentArchived { .. }));
    assert_eq!(refused.status(), 400);
    let beat = table
        .heartbeat("env_01", "work_01", HeartbeatRequest::default(), at(SECOND))
        .unwrap();
    assert_eq!(beat.state, WorkState::Active, "running items drain");
    table
        .stop("env_01", "work_01", StopMode::Graceful, at(SECOND))
        .unwrap();
}

#[test]
fn delete_is_refused_while_a_lease_is_held_then_removes_everything() {
    let mut table = LeaseTable::default();
    create(&mut table, "env_01", "e");
    create(&mut table, "env_02", "other");
    for (environment, id) in [
        ("env_01", "work_01"),
        ("env_01", "work_02"),
        ("env_02", "work_03"),
    ] {
        table
            .create_work(
                environment,
                id.parse().unwrap(),
                "sess_01".parse().unwrap(),
                Metadata::new(),
                at(0),
            )
            .unwrap();
    }
    table.ack("env_01", "work_01", None, at(0)).unwrap();
    let busy = table.delete_environment("env_01", at(0)).unwrap_err();
    assert!(
        matches!(busy, Error::EnvironmentInUse { leased: 1, .. }),
        "{busy}"
    );
    assert_eq!(busy.status(), 409);

    table
        .stop("env_01", "work_01", StopMode::Force, at(0))
        .unwrap();
    assert_eq!(
        table.delete_environment("env_01", at(0)).unwrap(),
        env("env_01")
    );
    assert_eq!(
        table.retrieve_environment("env_01").unwrap_err().status(),
        404
    );
    assert_eq!(
        table.get("env_01", "work_02", at(0)).unwrap_err().status(),
        404
    );
    assert_eq!(table.len(), 1, "only the other environment's item is left");
    table.validate().unwrap();

    // The id may be created again, empty.
    create(&mut table, "env_01", "reborn");
    let page = table
        .list("env_01", &worklease::ListRequest::default(), at(0))
        .unwrap();
    assert!(page.data.is_empty());
    table
        .create_work(
            "env_01",
            "work_02".parse().unwrap(),
            "sess_01".parse().unwrap(),
            Metadata::new(),
            at(0),
        )
        .unwrap();
    table.validate().unwrap();
}

#[test]
fn the_sharded_table_manages_environments_alike() {
    let table = worklease::ConcurrentLeaseTable::with_shards(worklease::Config::default(), 4);
    table
        .create_environment(env("env_01"), NewEnvironment::self_hosted("e"), at(0))
        .unwrap();
    for id in ["work_01", "work_02", "work_03", "work_04"] {
        table
            .create_work(
                "env_01",
                id.parse().unwrap(),
                "sess_01".parse().unwrap(),
                Metadata::new(),
                at(0),
            )
            .unwrap();
    }
    table.ack("env_01", "work_03", None, at(0)).unwrap();
    let busy = table.delete_environment("env_01", at(0)).unwrap_err();
    assert_eq!(busy.status(), 409);
    // Once the lease lapses the environment can go.
    assert_eq!(
        table.delete_environment("env_01", at(61 * SECOND)).unwrap(),
        env("env_01")
    );
    assert!(table.is_empty());
    table.validate().unwrap();
}
