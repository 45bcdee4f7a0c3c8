//! Heartbeat cost against the baselines, all in one binary so every result is a ratio.
//!
//! Run by hand with `cargo bench --bench heartbeat` (a few minutes; `-- <filter>` for one
//! group). Groups: `heartbeat_{hit,precondition_failed,unknown}/<table>/<leases>`,
//! `edge_token/<impl>`, `mixed/<table>`, `threads/<table>/<keys>_<threads>t`,
//! `sweep_100k_of_1M/<table>` (also prints the longest lock hold) and a `memory` report
//! (bytes per lease at 1M, printed).

// A bench binary is a crate of its own: criterion's macros generate undocumented items and the
// shared baseline modules are `pub` for the example that includes them too.
#![allow(missing_docs, unreachable_pub)]

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "baselines/mod.rs"]
mod baselines;

use baselines::assembled::Assembled;
use baselines::counting::{Counting, COUNTING, LIVE_BYTES};
use baselines::naive::Naive;
use baselines::worklease_tables::{Sharded, Single};
use baselines::{heartbeat_threads, item_of, work_id, Driver, Leases, Rng, ENV, T0};

// A byte-counting allocator, switched on only for the memory report.
#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZES: [(u64, &str); 2] = [(10_000, "10k"), (1_000_000, "1M")];

fn heartbeat_group<L: Leases>(c: &mut Criterion, stale: L::Token) {
    for (items, label) in SIZES {
        let mut driver = Driver::<L>::new(items);
        let unknown: Vec<String> = (0..4096).map(|i| work_id(10_000_000 + i)).collect();
        let id = BenchmarkId::new(L::NAME, label);
        let mut group = c.benchmark_group("heartbeat_hit");
        group.throughput(Throughput::Elements(1));
        group.bench_function(id.clone(), |b| b.iter(|| assert!(driver.hit())));
        group.finish();
        let mut group = c.benchmark_group("heartbeat_precondition_failed");
        group.bench_function(id.clone(), |b| b.iter(|| assert!(driver.stale(stale))));
        group.finish();
        let mut group = c.benchmark_group("heartbeat_unknown");
        group.bench_function(id, |b| b.iter(|| assert!(driver.unknown(&unknown))));
        group.finish();
    }
}

fn heartbeats(c: &mut Criterion) {
    let stale = worklease::Timestamp::from_unix_micros(T0 - 1);
    let stale_chrono = chrono::DateTime::from_timestamp_micros(T0 - 1).expect("in range");
    heartbeat_group::<Single>(c, stale);
    heartbeat_group::<Sharded>(c, stale);
    heartbeat_group::<Naive>(c, stale_chrono);
    heartbeat_group::<Assembled>(c, stale_chrono);
}

fn edge_group<L: Leases>(c: &mut Criterion, name: &str) {
    // The tokens as the `&str` query values a server hands over (its HTTP layer already
    // checked the UTF-8), so the measure is the token's own parse and format.
    let texts: Vec<String> = (0..1024)
        .map(|i| {
            let mut out = [0; 27];
            let token = L::parse_token("2026-07-01T08:15:06.120394Z").expect("valid");
            L::format_token(token, &mut out);
            out[24] = b'0' + (i % 10) as u8;
            String::from_utf8(out.to_vec()).expect("ascii")
        })
        .collect();
    let mut i = 0;
    c.benchmark_group("edge_token").bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            let token = L::parse_token(black_box(&texts[i])).expect("valid");
            let mut out = [0; 27];
            L::format_token(token, &mut out);
            black_box(out)
        });
    });
}

fn edge(c: &mut Criterion) {
    edge_group::<Single>(c, "worklease");
    edge_group::<Naive>(c, "chrono");
}

/// Heartbeat-heavy traffic with the rest of the life cycle mixed in: per 100 operations, 88
/// heartbeats, 3 creates, 4 polls each followed by an ack, 3 force stops, and a sweep every
/// 4096 operations. The clock advances 1 ms per operation.
fn mixed_group<L: Leases>(c: &mut Criterion) {
    let table = L::new();
    table.register(ENV);
    let mut ids: Vec<String> = Vec::new();
    let mut tokens: Vec<Option<L::Token>> = Vec::new();
    let mut now = T0;
    for i in 0..10_000 {
        let id = work_id(i);
        table.create(ENV, &id, now);
        ids.push(id);
        tokens.push(None);
    }
    let mut next = ids.len() as u64;
    let mut rng = Rng(42);
    let mut ops = 0u64;
    c.benchmark_group("mixed").bench_function(L::NAME, |b| {
        b.iter(|| {
            ops += 1;
            now += 1_000;
            if ops % 4096 == 0 {
                black_box(table.sweep(now));
            }
            match rng.below(100) {
                0..=87 => {
                    let k = rng.below(ids.len() as u64) as usize;
                    if let Ok(token) = table.heartbeat(ENV, &ids[k], tokens[k], 30, now) {
                        tokens[k] = Some(token);
                    }
                }
                88..=90 => {
                    let id = work_id(next);
                    next += 1;
                    table.create(ENV, &id, now);
                    ids.push(id);
                    tokens.push(None);
                }
                91..=94 => {
                    if let Some(id) = table.poll(ENV, now) {
                        if table.ack(ENV, &id, now) {
                            tokens[item_of(&id)] = None;
                        }
                    }
                }
                _ => {
                    let k = rng.below(ids.len() as u64) as usize;
                    table.stop(ENV, &ids[k], now);
                }
            }
        });
    });
}

fn mixed(c: &mut Criterion) {
    mixed_group::<Single>(c);
    mixed_group::<Sharded>(c);
    mixed_group::<Naive>(c);
    mixed_group::<Assembled>(c);
}

fn threads_group<L: Leases + Sync>(c: &mut Criterion)
where
    L::Token: Send + Sync,
{
    let mut driver = Driver::<L>::new(1_000_000);
    let mut group = c.benchmark_group("threads");
    group.throughput(Throughput::Elements(1));
    for (keys, hot) in [("uniform", None), ("hot16", Some(16))] {
        for threads in [1, 2] {
            let id = BenchmarkId::new(L::NAME, format!("{keys}_{threads}t"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| heartbeat_threads(&mut driver, threads, iters.max(2), hot));
            });
        }
    }
    group.finish();
}

fn threads(c: &mut Criterion) {
    threads_group::<Sharded>(c);
    threads_group::<Naive>(c);
    threads_group::<Assembled>(c);
}

/// 1M leases, 100k of them due: the sweep's total time, and (printed) its longest lock hold.
fn sweep_group<L: Leases>(c: &mut Criterion) {
    let mut holds = Vec::new();
    let mut group = c.benchmark_group("sweep_100k_of_1M");
    group.sample_size(10);
    group.bench_function(L::NAME, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let driver = Driver::<L>::new(1_000_000);
                // Renew all but the first 100k at T0 + 20 s; sweep at T0 + 40 s.
                for k in 100_000..driver.ids.len() {
                    let token = driver.tokens[k];
                    let renewed = driver.table.heartbeat(
                        ENV,
                        &driver.ids[k],
                        Some(token),
                        30,
                        T0 + 20_000_000,
                    );
                    assert!(renewed.is_ok());
                }
                let started = Instant::now();
                let (count, longest) = driver.table.sweep(T0 + 40_000_000);
                total += started.elapsed();
                assert_eq!(count, 100_000);
                holds.push(longest);
            }
            total
        });
    });
    group.finish();
    holds.sort_unstable();
    if !holds.is_empty() {
        println!(
            "sweep_100k_of_1M/{}: longest lock hold median {:.3} ms over {} sweeps",
            L::NAME,
            holds[holds.len() / 2] as f64 / 1e6,
            holds.len()
        );
    }
}

fn sweeps(c: &mut Criterion) {
    sweep_group::<Single>(c);
    sweep_group::<Sharded>(c);
    sweep_group::<Naive>(c);
    sweep_group::<Assembled>(c);
}

fn memory_of<L: Leases>() {
    LIVE_BYTES.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let (table, ids, tokens) = baselines::leased::<L>(1_000_000);
    let ids_bytes: usize = ids.iter().map(|s| s.capacity()).sum::<usize>() + ids.capacity() * 24;
    let token_bytes = tokens.capacity() * std::mem::size_of::<L::Token>();
    let table_bytes = LIVE_BYTES.load(Ordering::Relaxed) - (ids_bytes + token_bytes) as isize;
    COUNTING.store(false, Ordering::Relaxed);
    println!(
        "memory/{}: {:.1} bytes per lease at 1M (heap held by the table)",
        L::NAME,
        table_bytes as f64 / 1e6
    );
    drop((table, ids, tokens));
}

fn memory(_: &mut Criterion) {
    memory_of::<Single>();
    memory_of::<Sharded>();
    memory_of::<Naive>();
    memory_of::<Assembled>();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = memory, heartbeats, edge, mixed, threads, sweeps
}
criterion_main!(benches);
