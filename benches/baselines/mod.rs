//! The tables the benchmarks compare, behind one interface: worklease (single-threaded and
//! sharded) and the two baselines a user would otherwise build. Shared by `benches/` and
//! `examples/throughput.rs` (through `#[path]`).
//!
//! The interface is the heartbeat workload's request path with ids as text (what a server
//! receives) and times as Unix microseconds; the expected token is passed already parsed, in
//! each table's own type, so the edge (token parse and format) is measured on its own.

#![allow(dead_code)]

pub mod assembled;
pub mod counting;
pub mod naive;
pub mod worklease_tables;

/// A heartbeat refusal's status, or the new token.
pub type Beat<T> = Result<T, u16>;

/// What every compared table offers the workloads.
pub trait Leases {
    /// A token as the table keeps it.
    type Token: Copy + Send;

    /// The name in benchmark ids.
    const NAME: &'static str;

    fn new() -> Self;
    /// Registers a self-hosted environment.
    fn register(&self, env: &str);
    /// Creates a queued item.
    fn create(&self, env: &str, work: &str, now: i64);
    /// Delivers the lowest queued id, if any.
    fn poll(&self, env: &str, now: i64) -> Option<String>;
    /// Acknowledges: opens a 60 s lease.
    fn ack(&self, env: &str, work: &str, now: i64) -> bool;
    /// Renews with TTL `ttl` s when `expected` (None: `NO_HEARTBEAT`) holds.
    fn heartbeat(
        &self,
        env: &str,
        work: &str,
        expected: Option<Self::Token>,
        ttl: u64,
        now: i64,
    ) -> Beat<Self::Token>;
    /// Force-stops an item.
    fn stop(&self, env: &str, work: &str, now: i64);
    /// Applies every lapse due at `now`; returns how many, and the longest single lock hold
    /// in nanoseconds.
    fn sweep(&self, now: i64) -> (usize, u64);
    /// Parses a token from its RFC 3339 text, the way this table's users would.
    fn parse_token(text: &str) -> Option<Self::Token>;
    /// Formats a token into `out` (27 bytes), the way this table's users would.
    fn format_token(token: Self::Token, out: &mut [u8; 27]);
}

/// A work id of the minted shape for item `i`.
pub fn work_id(i: u64) -> String {
    format!("work_{:032x}", ID_BASE + u128::from(i))
}

/// The item number of an id made by [`work_id`].
pub fn item_of(id: &str) -> usize {
    let value = u128::from_str_radix(&id[5..], 16).expect("minted id");
    (value - ID_BASE) as usize
}

const ID_BASE: u128 = 0x019f_3be4_0000_7000_8000_0000_0000_0000;

/// The one environment of the workloads.
pub const ENV: &str = "env_019e64e01a137caf953ac2ac7b42ec5c";

/// 2026-07-01T08:15:00Z in Unix microseconds.
pub const T0: i64 = 1_782_893_700_000_000;

/// xorshift64*: a tiny, fast, deterministic key picker.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// A table holding `items` leased items of environment [`ENV`] (created, acked, and claimed
/// with one heartbeat at `T0`), and each item's current token.
pub fn leased<L: Leases>(items: u64) -> (L, Vec<String>, Vec<L::Token>) {
    let table = L::new();
    table.register(ENV);
    let ids: Vec<String> = (0..items).map(work_id).collect();
    let mut tokens = Vec::with_capacity(ids.len());
    for id in &ids {
        table.create(ENV, id, T0);
        assert!(table.ack(ENV, id, T0));
        tokens.push(table.heartbeat(ENV, id, None, 30, T0).expect("fresh lease"));
    }
    (table, ids, tokens)
}

/// Heartbeats per simulated microsecond: the clock advances slowly enough that no lease of
/// a million lapses during a benchmark, while tokens keep moving.
pub const OPS_PER_MICRO: i64 = 16;

/// One request of a precomputed stream: the item's number and its id's text.
#[derive(Clone, Copy)]
pub struct Request {
    pub item: u32,
    pub id: [u8; 37],
}

impl Request {
    pub fn id(&self) -> &str {
        std::str::from_utf8(&self.id).expect("ids are ASCII")
    }
}

/// The heartbeat workload's state for one table: ids, current tokens, key picker, clock, and
/// the request stream the single-threaded groups read.
///
/// The stream holds uniformly random picks with their id texts, read in order: a server reads
/// the id from a request buffer that is hot in cache, so the harness must not add cache misses
/// of its own. Picking from `ids` (a `Vec<String>`) costs every table two dependent misses
/// per operation at a million items (the `String`, then its text), which is harness, not table.
/// The stream is one pick per item (capped at 2^20): at 10k it fits in a core's 2 MiB of L2
/// beside the table (four picks per item did not), at 1M it is read sequentially
/// (prefetched).
pub struct Driver<L: Leases> {
    pub table: L,
    pub ids: Vec<String>,
    pub tokens: Vec<L::Token>,
    pub rng: Rng,
    pub ops: i64,
    stream: Vec<Request>,
    next: usize,
}

impl<L: Leases> Driver<L> {
    pub fn new(items: u64) -> Self {
        let (table, ids, tokens) = leased::<L>(items);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let picks = items.min(1 << 20);
        let stream = (0..picks)
            .map(|_| {
                let item = rng.below(items) as usize;
                Request {
                    item: item as u32,
                    id: ids[item].as_bytes().try_into().expect("37-byte minted ids"),
                }
            })
            .collect();
        Self {
            table,
            ids,
            tokens,
            rng,
            ops: 0,
            stream,
            next: 0,
        }
    }

    pub fn now(&self) -> i64 {
        T0 + 1_000_000 + self.ops / OPS_PER_MICRO
    }

    fn request(&mut self) -> Request {
        let request = self.stream[self.next];
        self.next = if self.next + 1 == self.stream.len() {
            0
        } else {
            self.next + 1
        };
        request
    }

    /// One heartbeat of the next item of the stream, echoing its token.
    pub fn hit(&mut self) -> bool {
        let request = self.request();
        let k = request.item as usize;
        let now = self.now();
        self.ops += 1;
        match self
            .table
            .heartbeat(ENV, request.id(), Some(self.tokens[k]), 30, now)
        {
            Ok(token) => {
                self.tokens[k] = token;
                true
            }
            Err(_) => false,
        }
    }

    /// One heartbeat of the next item of the stream with a token it never had (412).
    pub fn stale(&mut self, stale: L::Token) -> bool {
        let request = self.request();
        let now = self.now();
        self.table
            .heartbeat(ENV, request.id(), Some(stale), 30, now)
            .err()
            == Some(412)
    }

    /// One heartbeat of an id the table does not hold (404).
    pub fn unknown(&mut self, unknown: &[String]) -> bool {
        let k = self.rng.below(unknown.len() as u64) as usize;
        let now = self.now();
        self.table.heartbeat(ENV, &unknown[k], None, 30, now).err() == Some(404)
    }
}

/// Runs `ops` operations spread over `threads` threads and returns the wall time between a
/// barrier all threads start from and one they all reach. Thread `t` gets the `t`-th of
/// `threads` equal chunks of `state` (the first `per_thread * threads` entries) and its own
/// key picker, and calls `op(chunk, picker, op_index)` for each of its operations.
pub fn timed_threads<S: Send>(
    state: &mut [S],
    threads: usize,
    per_thread: usize,
    ops: u64,
    seed: u64,
    op: impl Fn(&mut [S], usize, &mut Rng, u64) + Sync,
) -> std::time::Duration {
    let barrier = std::sync::Barrier::new(threads + 1);
    let op = &op;
    std::thread::scope(|s| {
        for (t, chunk) in state[..per_thread * threads]
            .chunks_mut(per_thread)
            .enumerate()
        {
            let barrier = &barrier;
            s.spawn(move || {
                let mut rng = Rng(seed ^ (t as u64 + 1));
                barrier.wait();
                for i in 0..ops / threads as u64 {
                    op(chunk, t, &mut rng, i);
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let started = std::time::Instant::now();
        barrier.wait();
        started.elapsed()
    })
}

/// `ops` heartbeats spread over `threads` threads, each on its own slice of the keys (or of
/// the first `hot` keys); returns the wall time.
pub fn heartbeat_threads<L: Leases + Sync>(
    driver: &mut Driver<L>,
    threads: usize,
    ops: u64,
    hot: Option<usize>,
) -> std::time::Duration
where
    L::Token: Send + Sync,
{
    let keys = hot.unwrap_or(driver.ids.len()).min(driver.ids.len());
    let per_thread = keys / threads;
    let start = driver.now();
    let (table, ids) = (&driver.table, &driver.ids);
    let elapsed = timed_threads(
        &mut driver.tokens,
        threads,
        per_thread,
        ops,
        0x9e37_79b9_7f4a_7c15,
        |tokens, t, rng, op| {
            let ids = &ids[t * per_thread..(t + 1) * per_thread];
            let k = rng.below(per_thread as u64) as usize;
            let now = start + op as i64 * threads as i64 / OPS_PER_MICRO;
            if let Ok(token) = table.heartbeat(ENV, &ids[k], Some(tokens[k]), 30, now) {
                tokens[k] = token;
            }
        },
    );
    driver.ops += ops as i64;
    elapsed
}
