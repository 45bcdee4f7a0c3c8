//! worklease behind the benchmark interface: the single-threaded [`LeaseTable`] (in a
//! `RefCell`, no lock) and the sharded [`ConcurrentLeaseTable`].

use std::cell::RefCell;
use std::num::NonZeroU64;
use std::time::Instant;

use worklease::{
    ConcurrentLeaseTable, Config, EnvironmentKind, HeartbeatRequest, LeaseTable, Metadata,
    PollRequest, Polled, Precondition, SessionId, StopMode, Timestamp, Transition, WorkId,
};

use super::{Beat, Leases};

fn request(expected: Option<Timestamp>, ttl: u64) -> HeartbeatRequest {
    HeartbeatRequest {
        precondition: expected.map_or(Precondition::NoHeartbeat, Precondition::LastHeartbeat),
        desired_ttl_seconds: NonZeroU64::new(ttl),
    }
}

/// Each item's own session, minted like its work id (`sess_` and the same 32 hex digits), as a
/// server minting ids would create it. (A text-bodied id would add its text to the table.)
fn session_of(work: &str) -> SessionId {
    format!("sess_{}", &work[WorkId::PREFIX.len()..])
        .parse()
        .expect("valid id")
}

fn parse(text: &str) -> Option<Timestamp> {
    match Precondition::parse(Some(text)) {
        Ok(Precondition::LastHeartbeat(token)) => Some(token),
        _ => None,
    }
}

fn format(token: Timestamp, out: &mut [u8; 27]) {
    out.copy_from_slice(token.to_rfc3339().as_bytes());
}

/// The `Leases` methods both tables implement alike, on the table `self.0 $($access)*`
/// (`.borrow_mut()` for the `RefCell`, nothing for the sharded table).
macro_rules! common_ops {
    ($($access:tt)*) => {
        type Token = Timestamp;

        fn register(&self, env: &str) {
            let id = env.parse().expect("valid id");
            self.0 $($access)*
                .register_environment(id, EnvironmentKind::SelfHosted)
                .expect("new");
        }

        fn create(&self, env: &str, work: &str, now: i64) {
            let session = session_of(work);
            let id = work.parse().expect("valid id");
            let now = Timestamp::from_unix_micros(now);
            self.0 $($access)*
                .create_work(env, id, session, Metadata::new(), now)
                .expect("new");
        }

        fn poll(&self, env: &str, now: i64) -> Option<String> {
            let now = Timestamp::from_unix_micros(now);
            match self.0 $($access)*.poll(env, &PollRequest::default(), now) {
                Ok(Polled::Delivered(item)) => Some(item.id.to_string()),
                _ => None,
            }
        }

        fn ack(&self, env: &str, work: &str, now: i64) -> bool {
            let now = Timestamp::from_unix_micros(now);
            self.0 $($access)*.ack(env, work, None, now).is_ok()
        }

        fn heartbeat(
            &self,
            env: &str,
            work: &str,
            expected: Option<Timestamp>,
            ttl: u64,
            now: i64,
        ) -> Beat<Timestamp> {
            let now = Timestamp::from_unix_micros(now);
            self.0 $($access)*
                .heartbeat(env, work, request(expected, ttl), now)
                .map_err(|error| error.status())
                .and_then(|beat| match beat.last_heartbeat {
                    Some(token) if beat.lease_extended() => Ok(token),
                    // Not a renewal: the item is stopping (these benches never stop one
                    // gracefully).
                    Some(_) | None => Err(409),
                })
        }

        fn stop(&self, env: &str, work: &str, now: i64) {
            let now = Timestamp::from_unix_micros(now);
            let _ = self.0 $($access)*.stop(env, work, StopMode::Force, now);
        }

        fn parse_token(text: &str) -> Option<Timestamp> {
            parse(text)
        }

        fn format_token(token: Timestamp, out: &mut [u8; 27]) {
            format(token, out);
        }
    };
}

/// The single-threaded table, behind a `RefCell` (no lock).
pub struct Single(RefCell<LeaseTable>);

impl Leases for Single {
    const NAME: &'static str = "worklease";

    common_ops!(.borrow_mut());

    fn new() -> Self {
        Self(RefCell::new(LeaseTable::new(Config::default())))
    }

    fn sweep(&self, now: i64) -> (usize, u64) {
        let started = Instant::now();
        let lapses = self.0.borrow_mut().sweep(Timestamp::from_unix_micros(now));
        (lapses.len(), started.elapsed().as_nanos() as u64)
    }
}

/// The sharded table.
pub struct Sharded(pub ConcurrentLeaseTable);

impl Leases for Sharded {
    const NAME: &'static str = "worklease_sharded";

    common_ops!();

    fn new() -> Self {
        Self(ConcurrentLeaseTable::new(Config::default()))
    }

    fn sweep(&self, now: i64) -> (usize, u64) {
        let now = Timestamp::from_unix_micros(now);
        let mut lapses: Vec<Transition> = Vec::new();
        let mut longest = 0;
        for shard in 0..self.0.shard_count() {
            loop {
                let started = Instant::now();
                let done = self
                    .0
                    .sweep_chunk(shard, now, ConcurrentLeaseTable::CHUNK, &mut lapses);
                longest = longest.max(started.elapsed().as_nanos() as u64);
                if done {
                    break;
                }
            }
        }
        (lapses.len(), longest)
    }
}
