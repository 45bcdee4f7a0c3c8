//! The three ways a lapse gets applied agree: a single table's sweep (a drain of many wheel
//! seconds, lapses applied as a batch), the sharded table's per-item path (each item's own
//! lapse applied when an operation touches it), and the sharded table's sweep in small chunks.
//! Thousands of leases crowd a few seconds, while renewals, earlier deadlines, stops and
//! re-acks interleave with sweeps that each cover up to minutes, and the clock once jumps a
//! day ahead (past the 2^16 s the deadline index's recorded seconds wrap at).

use std::num::{NonZeroU32, NonZeroU64};

use worklease::{
    ConcurrentLeaseTable, Config, EnvironmentKind, HeartbeatRequest, LeaseTable, Metadata,
    Precondition, StopMode, Timestamp, Transition, WorkId,
};

const ENVS: [&str; 2] = ["env_a", "env_b"];
const ITEMS: u64 = 3000;
const SECOND: i64 = 1_000_000;
const T0: i64 = 1_782_893_700_000_000;

/// xorshift64*: deterministic choices.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((u128::from(self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)) * u128::from(n)) >> 64) as u64
    }
}

/// Minted ids for most items, caller-chosen text for every seventh (both id orderings).
fn work(i: u64) -> WorkId {
    if i % 7 == 0 {
        format!("work_t{i}").parse().expect("valid")
    } else {
        WorkId::from_u128(0x019f_3be4_0000_7000_8000_0000_0000_0000 + u128::from(i * 7919))
    }
}

fn env_of(i: u64) -> &'static str {
    ENVS[(i % 2) as usize]
}

struct Tables {
    single: LeaseTable,
    per_item: ConcurrentLeaseTable,
    chunked: ConcurrentLeaseTable,
}

impl Tables {
    fn new() -> Self {
        let mut config = Config::default();
        config.max_attempts = NonZeroU32::new(4);
        let mut tables = Self {
            single: LeaseTable::new(config),
            per_item: ConcurrentLeaseTable::with_shards(config, 4),
            chunked: ConcurrentLeaseTable::with_shards(config, 4),
        };
        for env in ENVS {
            let id = env.parse().expect("valid");
            tables
                .single
                .register_environment(id, EnvironmentKind::SelfHosted)
                .expect("new");
            for table in [&tables.per_item, &tables.chunked] {
                let id = env.parse().expect("valid");
                table
                    .register_environment(id, EnvironmentKind::SelfHosted)
                    .expect("new");
            }
        }
        tables
    }

    /// Runs `op` on all three tables and checks they answer alike.
    fn each<R: std::fmt::Debug>(
        &mut self,
        single: impl FnOnce(&mut LeaseTable) -> R,
        concurrent: impl Fn(&ConcurrentLeaseTable) -> R,
    ) {
        let a = format!("{:?}", single(&mut self.single));
        let b = format!("{:?}", concurrent(&self.per_item));
        let c = format!("{:?}", concurrent(&self.chunked));
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    /// Sweeps all three, each its own way, and checks the transitions and the state agree.
    fn sweep(&mut self, now: Timestamp) -> usize {
        let single = self.single.sweep(now);
        for i in 0..ITEMS {
            // The per-item path: each item's own lapse, applied by touching it.
            self.per_item.get(env_of(i), work(i), now).expect("exists");
        }
        let per_item = self.per_item.sweep(now);
        let mut chunked = Vec::new();
        for shard in 0..self.chunked.shard_count() {
            while !self.chunked.sweep_chunk(shard, now, 7, &mut chunked) {}
        }
        chunked.sort_by(|a: &Transition, b| (a.at, &a.work_id).cmp(&(b.at, &b.work_id)));
        assert!(single
            .windows(2)
            .all(|pair| (pair[0].at, &pair[0].work_id) < (pair[1].at, &pair[1].work_id)));
        assert_eq!(single, per_item);
        assert_eq!(single, chunked);
        assert_eq!(self.single.next_wakeup(), self.per_item.next_wakeup());
        assert_eq!(self.single.next_wakeup(), self.chunked.next_wakeup());
        for i in 0..ITEMS {
            self.each(
                |t| t.get(env_of(i), work(i), now),
                |t| t.get(env_of(i), work(i), now),
            );
        }
        for env in ENVS {
            self.each(|t| t.stats(env, now), |t| t.stats(env, now));
        }
        self.single.validate().expect("valid");
        self.per_item.validate().expect("valid");
        self.chunked.validate().expect("valid");
        single.len()
    }
}

fn heartbeat(ttl: u64) -> HeartbeatRequest {
    HeartbeatRequest {
        precondition: Precondition::default(),
        desired_ttl_seconds: NonZeroU64::new(ttl),
    }
}

fn run(seed: u64) {
    let mut rng = Rng(seed);
    let mut tables = Tables::new();
    let at = |micros: i64| Timestamp::from_unix_micros(micros);
    let mut now = T0;
    for i in 0..ITEMS {
        let session = || "sess_01".parse().expect("valid");
        tables.each(
            |t| t.create_work(env_of(i), work(i), session(), Metadata::new(), at(now)),
            |t| t.create_work(env_of(i), work(i), session(), Metadata::new(), at(now)),
        );
        tables.each(
            |t| t.ack(env_of(i), work(i), None, at(now)),
            |t| t.ack(env_of(i), work(i), None, at(now)),
        );
        // A few distinct TTLs: thousands of leases share each deadline second.
        let ttl = [10, 30, 45][(i % 3) as usize];
        tables.each(
            |t| t.heartbeat(env_of(i), work(i), heartbeat(ttl), at(now)),
            |t| t.heartbeat(env_of(i), work(i), heartbeat(ttl), at(now)),
        );
    }
    let mut lapsed = 0;
    for round in 0..40 {
        // Mostly seconds apart, sometimes minutes; once a day ahead.
        now += match round {
            20 => 86_400 * SECOND,
            _ if rng.below(4) == 0 => (60 + rng.below(120) as i64) * SECOND,
            _ => rng.below(12 * SECOND as u64) as i64,
        };
        for _ in 0..400 {
            let i = rng.below(ITEMS);
            let (env, id, t) = (env_of(i), work(i), at(now));
            match rng.below(10) {
                // Renewals later or earlier than the current deadline.
                0..=4 => {
                    let ttl = 10 + rng.below(80);
                    tables.each(
                        |s| s.heartbeat(env, &id, heartbeat(ttl), t),
                        |c| c.heartbeat(env, &id, heartbeat(ttl), t),
                    );
                }
                5 => tables.each(
                    |s| s.stop(env, &id, StopMode::Graceful, t),
                    |c| c.stop(env, &id, StopMode::Graceful, t),
                ),
                6 => tables.each(
                    |s| s.stop(env, &id, StopMode::Force, t),
                    |c| c.stop(env, &id, StopMode::Force, t),
                ),
                // Queued again after a lapse: a new lease, and later another lapse.
                _ => tables.each(|s| s.ack(env, &id, None, t), |c| c.ack(env, &id, None, t)),
            }
        }
        if rng.below(3) == 0 {
            lapsed += tables.sweep(at(now));
        }
    }
    lapsed += tables.sweep(at(now + 700 * SECOND));
    assert!(
        lapsed > ITEMS as usize,
        "{lapsed} lapses: the test exercises little"
    );
}

#[test]
fn batch_per_item_and_chunked_lapses_agree() {
    for seed in [0x9e37_79b9_7f4a_7c15, 0x2545_f491_4f6c_dd1d, 42] {
        run(seed);
    }
}
