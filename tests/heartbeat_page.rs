//! The heartbeat page (`shared/seed/heartbeat-endpoint.txt`) and docs/contract.md §3.3: the example
//! request and response, every error row, and the token and TTL rules.

mod fixture;

use fixture::{Fixture, CLOUD, ENV, SECOND, T0, WORK};
use worklease::{
    Error, HeartbeatRequest, LeaseSnapshot, Param, Precondition, StopMode, Timestamp, Ttl,
    WorkState,
};

fn active(f: &mut Fixture) -> Timestamp {
    f.item_in(WORK, WorkState::Active)
        .latest_heartbeat_at
        .unwrap()
}

#[test]
fn the_documented_example_request_gets_the_documented_response() {
    let mut f = Fixture::new();
    f.create(WORK);
    f.ack(WORK, None).unwrap();
    // POST …/environments/env_019e…/work/work_019f…/heartbeat?expected_last_heartbeat=NO_HEARTBEAT&desired_ttl_seconds=60
    let request = HeartbeatRequest::parse(Some("NO_HEARTBEAT"), Some("60")).unwrap();
    let beat = f.table.heartbeat(ENV, WORK, request, f.now).unwrap();
    assert_eq!(
        beat.last_heartbeat
            .map(|token| token.to_rfc3339().to_string()),
        Some("2026-07-01T08:15:06.120394Z".to_owned())
    );
    assert!(beat.lease_extended());
    assert_eq!(beat.state.as_str(), "active");
    assert_eq!(beat.ttl.seconds(), 60);
    assert!(!beat.ttl_clamped);
}

#[test]
fn heartbeat_with_a_non_positive_ttl_is_refused_with_400_naming_it() {
    for raw in ["", "0", "-5", "1.5", "abc", " 60"] {
        let error = HeartbeatRequest::parse(Some("NO_HEARTBEAT"), Some(raw)).unwrap_err();
        assert_eq!(
            (error.status(), error.error_type(), error.param()),
            (400, "invalid_request_error", Some(Param::DesiredTtlSeconds)),
            "{raw:?}"
        );
    }
}

#[test]
fn heartbeat_with_a_malformed_precondition_is_refused_with_400_naming_it() {
    for raw in ["", "NO-HEARTBEAT", "2026-07-01T08:15:06", "last tuesday"] {
        let error = HeartbeatRequest::parse(Some(raw), None).unwrap_err();
        assert_eq!(
            (error.status(), error.param()),
            (400, Some(Param::ExpectedLastHeartbeat)),
            "{raw:?}"
        );
    }
}

#[test]
fn heartbeat_in_a_cloud_environment_is_refused_with_400() {
    let mut f = Fixture::new();
    let error = f
        .table
        .heartbeat(CLOUD, WORK, HeartbeatRequest::default(), f.now)
        .unwrap_err();
    assert_eq!(
        error,
        Error::NotSelfHosted {
            environment: CLOUD.parse().unwrap()
        }
    );
    assert_eq!(
        (error.status(), error.error_type()),
        (400, "invalid_request_error")
    );
    assert_eq!(
        error.to_string(),
        "environment env_cloud is not self_hosted"
    );
}

#[test]
fn heartbeat_in_an_unknown_or_malformed_environment_is_refused_with_404() {
    let mut f = Fixture::new();
    for env in [
        "env_unknown",
        "env_",
        "not-an-id",
        "env_é",
        &format!("env_{}", "a".repeat(100)),
    ] {
        let error = f
            .table
            .heartbeat(env, WORK, HeartbeatRequest::default(), f.now)
            .unwrap_err();
        assert!(
            matches!(error, Error::EnvironmentNotFound { .. }),
            "{env}: {error}"
        );
        assert_eq!(
            (error.status(), error.error_type()),
            (404, "not_found_error")
        );
    }
}

#[test]
fn heartbeat_on_an_unknown_or_malformed_work_item_is_refused_with_404() {
    let mut f = Fixture::new();
    active(&mut f);
    for work in ["work_unknown", "work_", "sess_01", "work_a-b"] {
        let error = f
            .table
            .heartbeat(ENV, work, HeartbeatRequest::default(), f.now)
            .unwrap_err();
        assert!(
            matches!(error, Error::WorkNotFound { .. }),
            "{work}: {error}"
        );
        assert_eq!(error.status(), 404);
    }
}

#[test]
fn an_unknown_environment_is_reported_before_a_malformed_work_id() {
    let mut f = Fixture::new();
    let error = f
        .table
        .heartbeat("env_unknown", "garbage", HeartbeatRequest::default(), f.now)
        .unwrap_err();
    assert!(
        matches!(error, Error::EnvironmentNotFound { .. }),
        "{error}"
    );
}

#[test]
fn a_work_item_of_another_environment_is_not_found() {
    let mut f = Fixture::new();
    f.table
        .register_environment(
            "env_other".parse().unwrap(),
            worklease::EnvironmentKind::SelfHosted,
        )
        .unwrap();
    f.item_in(WORK, WorkState::Starting);
    let error = f
        .table
        .heartbeat("env_other", WORK, HeartbeatRequest::default(), f.now)
        .unwrap_err();
    assert!(matches!(error, Error::WorkNotFound { .. }));
}

#[test]
fn heartbeat_on_queued_or_stopped_items_is_refused_with_409() {
    for state in [WorkState::Queued, WorkState::Stopped] {
        let mut f = Fixture::new();
        f.item_in(WORK, state);
        let error = f.heartbeat(WORK, Some("NO_HEARTBEAT"), None).unwrap_err();
        assert_eq!(
            (error.status(), error.error_type()),
            (409, "invalid_request_error")
        );
    }
}

#[test]
fn heartbeat_with_a_stale_token_is_refused_with_412_carrying_the_lease() {
    let mut f = Fixture::new();
    let first = active(&mut f);
    f.advance(SECOND);
    let second = f
        .heartbeat(WORK, Some(&first.to_string()), Some("30"))
        .unwrap();
    f.advance(SECOND);
    // The first worker lost the lease and still echoes its old token.
    let error = f
        .heartbeat(WORK, Some(&first.to_string()), None)
        .unwrap_err();
    assert_eq!(
        (error.status(), error.error_type()),
        (412, "precondition_failed_error")
    );
    let Error::PreconditionFailed { expected, current } = error else {
        panic!("{error}")
    };
    assert_eq!(expected, Precondition::LastHeartbeat(first));
    assert_eq!(
        current,
        LeaseSnapshot {
            last_heartbeat: second.last_heartbeat,
            state: WorkState::Active,
            ttl: Ttl::from_seconds(30).unwrap(),
            deadline: second.deadline,
            lease_epoch: 1,
        }
    );
    assert!(!current.lease_extended());
    assert_eq!(
        f.get(WORK).lease_deadline,
        Some(second.deadline),
        "a refusal renews nothing"
    );
}

#[test]
fn a_stale_token_on_a_stopping_item_is_told_to_drain_not_refused() {
    let mut f = Fixture::new();
    let first = active(&mut f);
    f.advance(SECOND);
    let held = f.renew(WORK, Some(&first.to_string()), Some("30"));
    f.stop(WORK, StopMode::Graceful).unwrap();
    let before = f.get(WORK);
    for precondition in [
        Some(first.to_string()),
        Some("NO_HEARTBEAT".to_owned()),
        None,
    ] {
        f.advance(SECOND);
        // The TTL asked for is not granted: the answer reports the lease as held.
        let beat = f
            .heartbeat(WORK, precondition.as_deref(), Some("600"))
            .unwrap();
        assert_eq!(
            (beat.state, beat.lease_extended(), beat.last_heartbeat),
            (WorkState::Stopping, false, Some(held)),
            "{precondition:?}"
        );
        assert_eq!(
            (beat.ttl.seconds(), Some(beat.deadline), beat.lease_epoch),
            (30, before.lease_deadline, before.lease_epoch),
            "{precondition:?}"
        );
        assert_eq!(f.get(WORK), before, "{precondition:?}: nothing changes");
    }
}

#[test]
fn no_heartbeat_holds_only_while_the_lease_is_unclaimed() {
    let mut f = Fixture::new();
    f.item_in(WORK, WorkState::Starting);
    f.heartbeat(WORK, Some("NO_HEARTBEAT"), None).unwrap();
    let error = f.heartbeat(WORK, Some("NO_HEARTBEAT"), None).unwrap_err();
    let Error::PreconditionFailed { current, .. } = error else {
        panic!("{error}")
    };
    assert!(current.last_heartbeat.is_some());
}

#[test]
fn an_omitted_precondition_is_unconditional() {
    let mut f = Fixture::new();
    active(&mut f);
    for _ in 0..3 {
        assert!(f.heartbeat(WORK, None, None).is_ok());
    }
}

#[test]
fn the_precondition_compares_instants_not_text() {
    for same in [
        "2026-07-01T08:15:06.120394Z",
        "2026-07-01T08:15:06.120394000Z",
        "2026-07-01T14:15:06.120394+06:00",
        "2026-07-01T05:45:06.120394-02:30",
        "2026-07-01t08:15:06.120394z",
    ] {
        let mut f = Fixture::new();
        assert_eq!(active(&mut f).to_string(), "2026-07-01T08:15:06.120394Z");
        assert!(f.heartbeat(WORK, Some(same), None).is_ok(), "{same}");
    }
    for different in [
        "2026-07-01T08:15:06.1203941Z",
        "2026-07-01T08:15:06.120393Z",
        "2026-07-01T08:15:06.120394+00:01",
    ] {
        let mut f = Fixture::new();
        active(&mut f);
        let error = f.heartbeat(WORK, Some(different), None).unwrap_err();
        assert_eq!(error.status(), 412, "{different}: no rounding");
    }
}

#[test]
fn tokens_strictly_increase_when_the_clock_repeats_or_goes_backwards() {
    let mut f = Fixture::new();
    let mut previous = active(&mut f);
    for step in [0, 0, -5 * SECOND, 1, -SECOND, 3 * SECOND] {
        f.advance(step);
        let token = f.renew(WORK, Some(&previous.to_string()), None);
        assert!(token > previous, "{token} after {previous}");
        assert_eq!(token, f.now.max(previous.next_micro()));
        previous = token;
    }
}

#[test]
fn tokens_stay_unique_across_a_lapse_and_a_new_attempt() {
    let mut f = Fixture::new();
    let first = active(&mut f);
    f.advance(60 * SECOND);
    // A changing operation applies the lapse (a read only shows it, docs/contract.md §7.2).
    assert_eq!(f.table.sweep(f.now).len(), 1);
    assert_eq!(f.state(WORK), WorkState::Queued);
    f.advance(-60 * SECOND); // a server whose clock jumped back
    f.ack(WORK, None).unwrap();
    assert!(f.renew(WORK, Some("NO_HEARTBEAT"), None) > first);
}

#[test]
fn desired_ttl_is_clamped_to_10_through_600_seconds() {
    let mut f = Fixture::new();
    active(&mut f);
    for (raw, seconds, clamped) in [
        ("1", 10, true),
        ("10", 10, false),
        ("600", 600, false),
        ("601", 600, true),
        ("99999999999999999999999", 600, true),
    ] {
        let beat = f.heartbeat(WORK, None, Some(raw)).unwrap();
        assert_eq!(
            (beat.ttl.seconds(), beat.ttl_clamped),
            (seconds, clamped),
            "{raw}"
        );
        assert_eq!(
            Some(beat.deadline),
            beat.last_heartbeat
                .map(|token| token.saturating_add_micros(seconds as i64 * SECOND))
        );
    }
    let beat = f.heartbeat(WORK, None, None).unwrap();
    assert_eq!(beat.ttl, f.table.config().default_ttl);
}

#[test]
fn the_lease_is_valid_until_but_not_at_its_deadline() {
    let mut f = Fixture::new();
    active(&mut f);
    let token = f.renew(WORK, None, Some("10"));
    f.now = f.get(WORK).lease_deadline.unwrap().saturating_sub_micros(1);
    assert!(f
        .heartbeat(WORK, Some(&token.to_string()), Some("10"))
        .is_ok());
    let last = f.get(WORK);
    f.now = last.lease_deadline.unwrap();
    assert_eq!(
        f.heartbeat(WORK, None, None).unwrap_err().status(),
        409,
        "lapsed exactly at the deadline"
    );
    assert_eq!(f.state(WORK), WorkState::Queued);
}

#[test]
fn check_order_puts_parameters_before_everything() {
    // A bad parameter on an unknown environment is still a 400: the server parses first.
    let error = HeartbeatRequest::parse(Some("NO_HEARTBEAT"), Some("0")).unwrap_err();
    assert_eq!(error.status(), 400);
    // Then environment (404) before state (409) before precondition (412).
    let mut f = Fixture::new();
    f.item_in(WORK, WorkState::Stopped);
    let stale = Timestamp::from_unix_micros(T0 - 1).to_string();
    assert_eq!(
        f.heartbeat(WORK, Some(&stale), None).unwrap_err().status(),
        409
    );
    let request = HeartbeatRequest::parse(Some(&stale), None).unwrap();
    assert_eq!(
        f.table
            .heartbeat("env_missing", WORK, request, f.now)
            .unwrap_err()
            .status(),
        404
    );
}
