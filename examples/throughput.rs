//! Heartbeat throughput of worklease against the naive baseline, in one process.
//!
//! ```text
//! cargo run --release --example throughput -- --items 1000000 --threads 2 [--ops N] [--json]
//! ```
//!
//! The workload: `--items` leases (TTL 30 s) in one environment; each operation picks an item
//! uniformly at random, parses its last token from RFC 3339 text (the precondition a worker
//! echoes), heartbeats with it and formats the new token back to text. `--threads` threads
//! share the table, each on its own slice of the items. worklease runs as a
//! `ConcurrentLeaseTable`; the naive baseline is a `Mutex<HashMap>` with chrono times and a
//! `BTreeMap` expiry index (see `benches/baselines/naive.rs`). Prints ns per operation (wall
//! time / operations, all threads together), operations per second, the ratio and the heap
//! bytes the worklease table holds per lease; `--json` prints one JSON object instead.

// This example includes the benchmarks' baseline modules, which are `pub` for that reuse.
#![allow(missing_docs, unreachable_pub)]

use std::sync::atomic::Ordering;
use std::time::Duration;

#[path = "../benches/baselines/mod.rs"]
mod baselines;

use baselines::counting::{Counting, COUNTING, LIVE_BYTES};
use baselines::naive::Naive;
use baselines::worklease_tables::Sharded;
use baselines::{Leases, ENV, OPS_PER_MICRO, T0};

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Args {
    items: u64,
    threads: usize,
    ops: Option<u64>,
    json: bool,
    /// `--only worklease` or `--only naive`: run one side (for callgrind / perf).
    only: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: throughput [--items N] [--threads T] [--ops N] [--json] [--only worklease|naive]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args {
        items: 1_000_000,
        threads: 1,
        ops: None,
        json: false,
        only: None,
    };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let mut number = || -> u64 {
            raw.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| usage())
        };
        match flag.as_str() {
            "--items" => args.items = number().max(1),
            "--threads" => args.threads = usize::try_from(number()).unwrap_or(1).max(1),
            "--ops" => args.ops = Some(number().max(1)),
            "--json" => args.json = true,
            "--only" => args.only = Some(raw.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    args
}

/// Heartbeats `ops` times over `threads` threads (each on its slice of the items, parsing and
/// formatting tokens as text); returns the wall time.
fn run<L: Leases + Sync>(
    table: &L,
    ids: &[String],
    tokens: &mut [[u8; 27]],
    threads: usize,
    ops: u64,
) -> Duration {
    let per_thread = ids.len() / threads;
    baselines::timed_threads(
        tokens,
        threads,
        per_thread,
        ops,
        0x2545_f491,
        |tokens, t, rng, op| {
            let ids = &ids[t * per_thread..(t + 1) * per_thread];
            let k = rng.below(per_thread as u64) as usize;
            let now = T0 + 1_000_000 + op as i64 * threads as i64 / OPS_PER_MICRO;
            let text = std::str::from_utf8(&tokens[k]).expect("ascii");
            let expected = L::parse_token(text).expect("a token we formatted");
            if let Ok(token) = table.heartbeat(ENV, &ids[k], Some(expected), 30, now) {
                L::format_token(token, &mut tokens[k]);
            }
        },
    )
}

/// Builds the table (counting the heap it holds), then runs the workload.
fn measure<L: Leases + Sync>(items: u64, threads: usize, ops: u64) -> (f64, f64) {
    LIVE_BYTES.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let table = L::new();
    table.register(ENV);
    let ids: Vec<String> = (0..items).map(baselines::work_id).collect();
    let ids_bytes = LIVE_BYTES.load(Ordering::Relaxed);
    let mut tokens = Vec::with_capacity(ids.len());
    for id in &ids {
        table.create(ENV, id, T0);
        assert!(table.ack(ENV, id, T0));
        let token = table.heartbeat(ENV, id, None, 30, T0).expect("fresh lease");
        let mut text = [0; 27];
        L::format_token(token, &mut text);
        tokens.push(text);
    }
    let table_bytes = LIVE_BYTES.load(Ordering::Relaxed)
        - ids_bytes
        - (tokens.capacity() * std::mem::size_of::<[u8; 27]>()) as isize;
    COUNTING.store(false, Ordering::Relaxed);
    let _warm = run(&table, &ids, &mut tokens, threads, ops / 4);
    let elapsed = run(&table, &ids, &mut tokens, threads, ops);
    let ns_per_op = elapsed.as_nanos() as f64 / ops as f64;
    (ns_per_op, table_bytes as f64 / items as f64)
}

fn main() {
    let args = parse_args();
    let ops = args
        .ops
        .unwrap_or_else(|| (args.items * 4).clamp(2_000_000, 8_000_000));
    let only = args.only.as_deref();
    let (worklease_ns, bytes_per_lease) = match only {
        Some("naive") => (f64::NAN, f64::NAN),
        _ => measure::<Sharded>(args.items, args.threads, ops),
    };
    let (baseline_ns, baseline_bytes) = match only {
        Some("worklease") => (f64::NAN, f64::NAN),
        _ => measure::<Naive>(args.items, args.threads, ops),
    };
    let ratio = baseline_ns / worklease_ns;
    if args.json {
        println!(
            "{{\"items\":{},\"threads\":{},\"worklease_ns_per_op\":{:.1},\"baseline_ns_per_op\":{:.1},\"ratio\":{:.2},\"bytes_per_lease\":{:.1}}}",
            args.items, args.threads, worklease_ns, baseline_ns, ratio, bytes_per_lease
        );
    } else {
        println!(
            "items {}, threads {}, {} heartbeats each",
            args.items, args.threads, ops
        );
        println!(
            "worklease  {:>8.1} ns/op  {:>12.0} ops/s  {:>6.1} B/lease",
            worklease_ns,
            1e9 / worklease_ns,
            bytes_per_lease
        );
        println!(
            "naive      {:>8.1} ns/op  {:>12.0} ops/s  {:>6.1} B/lease",
            baseline_ns,
            1e9 / baseline_ns,
            baseline_bytes
        );
        println!("ratio      {ratio:.2}x (naive ns / worklease ns)");
    }
}
