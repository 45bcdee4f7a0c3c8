//! One work item's whole lifecycle, printed step by step: create, poll, ack, heartbeat, a
//! takeover refused with 412, a graceful stop and its confirmation, then a second item whose
//! worker goes silent and whose lease lapses.
//!
//! Run with `cargo run --example quickstart`.

use std::error::Error as StdError;

use worklease::{
    Config, EnvironmentId, EnvironmentKind, HeartbeatRequest, LeaseTable, Metadata, PollRequest,
    Polled, StopMode, Timestamp, WorkId, WorkerId,
};

const SECOND: i64 = 1_000_000;

fn main() -> Result<(), Box<dyn StdError>> {
    let mut table = LeaseTable::new(Config::default());
    let env: EnvironmentId = "env_019e64e01a137caf953ac2ac7b42ec5c".parse()?;
    table.register_environment(env.clone(), EnvironmentKind::SelfHosted)?;
    // A fixed start keeps the output the same on every run; a server passes Utc::now().
    let mut now = Timestamp::from_unix_micros(1_782_893_706_120_394);
    let worker: WorkerId = "worker-1".parse()?;

    let work = WorkId::mint(now, 0, 0x5eed);
    let item = table.create_work(&env, work.clone(), "sess_01".parse()?, Metadata::new(), now)?;
    println!("{now}  create     {} is {}", item.id, item.state);

    let poll = PollRequest {
        worker: Some(worker.clone()),
        ..PollRequest::default()
    };
    if let Polled::Delivered(item) = table.poll(&env, &poll, now)? {
        println!("{now}  poll       delivered {} to {worker}", item.id);
    }

    let acked = table.ack(&env, &work, Some(&worker), now)?;
    let deadline = acked
        .item
        .lease_deadline
        .map(|d| d.to_string())
        .unwrap_or_default();
    println!(
        "{now}  ack        {} is {}, lease until {deadline}",
        work, acked.item.state
    );

    let request = HeartbeatRequest::parse(Some("NO_HEARTBEAT"), Some("60"))?;
    let mut beat = table.heartbeat(&env, &work, request, now)?;
    // A renewal always carries a token; only a stopping item's answer may have none.
    let mut token = beat.last_heartbeat.expect("a renewed lease has a token");
    println!(
        "{now}  heartbeat  NO_HEARTBEAT → token {token}, {}, ttl {}",
        beat.state, beat.ttl
    );
    let first_token = token.to_string();

    for _ in 0..3 {
        now = now.saturating_add_micros(20 * SECOND);
        let echoed = token.to_string();
        beat = table.heartbeat(
            &env,
            &work,
            HeartbeatRequest::parse(Some(&echoed), Some("30"))?,
            now,
        )?;
        token = beat.last_heartbeat.expect("a renewed lease has a token");
        println!(
            "{now}  heartbeat  echo {echoed} → {token}, lease until {}",
            beat.deadline
        );
    }

    let stale = HeartbeatRequest::parse(Some(&first_token), None)?;
    if let Err(error) = table.heartbeat(&env, &work, stale, now) {
        println!(
            "{now}  heartbeat  stale token → {} {}: {error}",
            error.status(),
            error.error_type()
        );
    }

    let stopping = table.stop(&env, &work, StopMode::Graceful, now)?;
    println!("{now}  stop       {} is {}", work, stopping.item.state);
    now = now.saturating_add_micros(SECOND);
    let drain = table.heartbeat(&env, &work, HeartbeatRequest::default(), now)?;
    println!(
        "{now}  heartbeat  → {}, lease_extended {}: the worker drains, the lease is not renewed",
        drain.state,
        drain.lease_extended()
    );
    now = now.saturating_add_micros(SECOND);
    let stopped = table.stop(&env, &work, StopMode::Graceful, now)?;
    println!(
        "{now}  stop       confirmed: {} is {}",
        work, stopped.item.state
    );

    let silent = WorkId::mint(now, 1, 0x5eed);
    table.create_work(
        &env,
        silent.clone(),
        "sess_02".parse()?,
        Metadata::new(),
        now,
    )?;
    table.ack(&env, &silent, Some(&worker), now)?;
    println!("{now}  ack        {silent} is starting; its worker then goes silent");
    if let Some(wakeup) = table.next_wakeup() {
        now = wakeup;
        for transition in table.sweep(now) {
            println!(
                "{now}  sweep      {} {} → {} (lapse #{})",
                transition.work_id, transition.from, transition.to, transition.lapses
            );
        }
    }
    Ok(())
}
