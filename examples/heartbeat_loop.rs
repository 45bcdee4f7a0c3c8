//! A bare heartbeat loop for instruction counting under callgrind (`scripts/instructions.sh`).
//!
//! ```text
//! cargo build --release --example heartbeat_loop
//! valgrind --tool=callgrind --toggle-collect='heartbeat_loop::run' \
//!     target/release/examples/heartbeat_loop 10000 100000 hit
//! ```
//!
//! Arguments: leases, heartbeats, and `hit` (the token echoed), `stale` (a token the item
//! never had: 412) or `unknown` (an id the table does not hold: 404). Ids are passed as text,
//! as a server receives them. Only `run` is counted, so building the table does not show;
//! instructions per heartbeat are the count divided by the heartbeats.

// This example includes the benchmarks' baseline modules (for their ids, clock and key
// picker), which are `pub` for that reuse.
#![allow(missing_docs, unreachable_pub)]

use std::hint::black_box;
use std::num::NonZeroU64;

use worklease::{
    Config, EnvironmentKind, HeartbeatRequest, LeaseTable, Metadata, Precondition, Timestamp,
};

#[path = "../benches/baselines/mod.rs"]
mod baselines;

use baselines::{work_id, Rng, ENV, T0};

fn request(precondition: Precondition) -> HeartbeatRequest {
    HeartbeatRequest {
        precondition,
        desired_ttl_seconds: NonZeroU64::new(30),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: heartbeat_loop LEASES HEARTBEATS hit|stale|unknown";
    let leases: u64 = args.next().ok_or(usage)?.parse()?;
    let heartbeats: u64 = args.next().ok_or(usage)?.parse()?;
    let mode = args.next().ok_or(usage)?;
    let mut table = LeaseTable::new(Config::default());
    table.register_environment(ENV.parse()?, EnvironmentKind::SelfHosted)?;
    let ids: Vec<String> = (0..leases.max(1)).map(work_id).collect();
    let mut tokens = Vec::with_capacity(ids.len());
    let t0 = Timestamp::from_unix_micros(T0);
    for id in &ids {
        let session = format!("sess_{}", &id[5..]).parse()?;
        table.create_work(ENV, id.parse()?, session, Metadata::new(), t0)?;
        table.ack(ENV, id.as_str(), None, t0)?;
        let beat = table.heartbeat(ENV, id.as_str(), request(Precondition::NoHeartbeat), t0)?;
        tokens.push(beat.last_heartbeat.expect("a renewed lease has a token"));
    }
    let unknown: Vec<String> = (0..4096).map(|i| work_id(1 << 40 | i)).collect();
    let answered = run(&mut table, &ids, &mut tokens, &unknown, heartbeats, &mode);
    println!("{answered} of {heartbeats} heartbeats answered as expected ({mode})");
    Ok(())
}

#[inline(never)]
fn run(
    table: &mut LeaseTable,
    ids: &[String],
    tokens: &mut [Timestamp],
    unknown: &[String],
    heartbeats: u64,
    mode: &str,
) -> u64 {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let stale = Timestamp::from_unix_micros(T0 - 1);
    let mut answered = 0;
    for op in 0..heartbeats {
        let now = Timestamp::from_unix_micros(T0 + 1_000_000 + (op / 16) as i64);
        let k = rng.below(ids.len() as u64) as usize;
        let ok = match mode {
            "hit" => {
                let reply = table.heartbeat(
                    ENV,
                    ids[k].as_str(),
                    request(Precondition::LastHeartbeat(tokens[k])),
                    now,
                );
                // Nothing here stops an item, so every accepted heartbeat is a renewal.
                reply
                    .ok()
                    .and_then(|beat| beat.last_heartbeat)
                    .map(|token| tokens[k] = token)
                    .is_some()
            }
            "stale" => table
                .heartbeat(
                    ENV,
                    ids[k].as_str(),
                    request(Precondition::LastHeartbeat(stale)),
                    now,
                )
                .is_err_and(|error| error.status() == 412),
            _ => table
                .heartbeat(
                    ENV,
                    unknown[k % unknown.len()].as_str(),
                    request(Precondition::NoHeartbeat),
                    now,
                )
                .is_err_and(|error| error.status() == 404),
        };
        answered += u64::from(black_box(ok));
    }
    answered
}
