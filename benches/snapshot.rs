//! Snapshots and encoded commands (docs/contract.md §7.4), at a million active leases.
//!
//! Run with `cargo bench --features snapshot --bench snapshot` (`-- <filter>` for one group).
//! Groups: `snapshot/<table>/1M`, `restore/<table>/1M` (also prints the snapshot's bytes per
//! lease), and `apply_heartbeat/<path>/1M`: `direct` calls `LeaseTable::heartbeat`, `decoded`
//! decodes an encoded `Stamped` heartbeat and applies it, on the same table, so the ratio of
//! the two is the command path's overhead.

// A bench binary is a crate of its own: criterion's macros generate undocumented items.
#![allow(missing_docs, unreachable_pub)]

use std::hint::black_box;
use std::num::NonZeroU64;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use worklease::{
    Command, ConcurrentLeaseTable, Config, EnvironmentKind, HeartbeatRequest, LeaseTable, Metadata,
    SessionId, Stamped, Timestamp, WorkId, WorkerId,
};

const LEASES: u64 = 1_000_000;
const ENV: &str = "env_019e64e01a137caf953ac2ac7b42ec5c";
/// 2026-07-01T08:15:00Z.
const T0: i64 = 1_782_893_700_000_000;
const WORKERS: u64 = 64;
/// Requests in the apply benches' stream (a power of two).
const STREAM: usize = 1 << 16;

fn at(micros: i64) -> Timestamp {
    Timestamp::from_unix_micros(micros)
}

/// `LEASES` active leases with minted work and session ids, created over a second, acked by
/// one of 64 workers and heartbeated once with a 600 s TTL, as a server would hold them.
fn leased() -> (LeaseTable, Vec<String>) {
    let mut table = LeaseTable::new(Config::default());
    table
        .register_environment(ENV.parse().expect("valid"), EnvironmentKind::SelfHosted)
        .expect("fresh table");
    let workers: Vec<WorkerId> = (0..WORKERS)
        .map(|w| WorkerId::parse(&format!("worker-{w:02}")).expect("valid"))
        .collect();
    let mut ids = Vec::with_capacity(LEASES as usize);
    let request = HeartbeatRequest {
        desired_ttl_seconds: NonZeroU64::new(600),
        ..HeartbeatRequest::default()
    };
    for i in 0..LEASES {
        let offset = i as i64;
        let id = WorkId::mint(at(T0 + offset), i, 0x5eed_0000 + i);
        let session = SessionId::mint(at(T0 + offset), i, 0xcafe_0000 + i);
        table
            .create_work(ENV, id.clone(), session, Metadata::new(), at(T0 + offset))
            .expect("created");
        ids.push(id.to_string());
    }
    for (i, id) in ids.iter().enumerate() {
        let offset = i as i64;
        let worker = &workers[i % WORKERS as usize];
        table
            .ack(ENV, id.as_str(), Some(worker), at(T0 + 2_000_000 + offset))
            .expect("acked");
    }
    for (i, id) in ids.iter().enumerate() {
        let offset = i as i64;
        table
            .heartbeat(ENV, id.as_str(), request, at(T0 + 5_000_000 + offset))
            .expect("beat");
    }
    (table, ids)
}

/// This thread's CPU time (user + system) in clock ticks, from `/proc/thread-self/stat`:
/// unlike wall time, it does not grow when other processes share the two cores.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the command name (which is in parentheses): state is field 3, utime 14.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Prints the mean CPU time of `runs` calls of `f`, in ms (100 ticks a second assumed).
fn cpu_time(name: &str, runs: u32, mut f: impl FnMut()) {
    let (Some(before), wall) = (cpu_ticks(), std::time::Instant::now()) else {
        return;
    };
    for _ in 0..runs {
        f();
    }
    let wall = wall.elapsed().as_secs_f64() * 1000.0 / f64::from(runs);
    if let Some(after) = cpu_ticks() {
        let cpu = (after - before) as f64 * 10.0 / f64::from(runs);
        println!("cpu time {name}: {cpu:.0} ms (wall {wall:.0} ms), mean of {runs}");
    }
}

fn snapshots(c: &mut Criterion) {
    let (table, ids) = leased();
    let bytes = table.snapshot();
    println!(
        "snapshot of {LEASES} active leases: {} bytes, {:.1} bytes/lease",
        bytes.len(),
        bytes.len() as f64 / LEASES as f64
    );
    let sharded = ConcurrentLeaseTable::restore(&bytes).expect("restores");
    assert_eq!(sharded.snapshot(), bytes);
    cpu_time("snapshot/single", 10, || {
        drop(black_box(table.snapshot()));
    });
    cpu_time("snapshot/sharded64", 10, || {
        drop(black_box(sharded.snapshot()));
    });
    cpu_time("restore/single", 10, || {
        drop(black_box(LeaseTable::restore(&bytes).expect("restores")));
    });
    cpu_time("restore/sharded64", 10, || {
        drop(black_box(
            ConcurrentLeaseTable::restore(&bytes).expect("restores"),
        ));
    });
    cpu_time("validate/single (part of restore)", 10, || {
        black_box(table.validate()).expect("valid");
    });

    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function(BenchmarkId::new("single", "1M"), |b| {
        b.iter(|| black_box(table.snapshot()));
    });
    group.bench_function(BenchmarkId::new("sharded64", "1M"), |b| {
        b.iter(|| black_box(sharded.snapshot()));
    });
    group.finish();

    let mut group = c.benchmark_group("restore");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function(BenchmarkId::new("single", "1M"), |b| {
        b.iter(|| black_box(LeaseTable::restore(&bytes).expect("restores")));
    });
    group.bench_function(BenchmarkId::new("sharded64", "1M"), |b| {
        b.iter(|| black_box(ConcurrentLeaseTable::restore(&bytes).expect("restores")));
    });
    group.finish();

    // The last step of a restore, on its own.
    let mut group = c.benchmark_group("validate");
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("single", "1M"), |b| {
        b.iter(|| black_box(table.validate()).expect("valid"));
    });
    group.finish();
    drop((table, sharded, ids));
}

/// Heartbeats on random leases of the million: the direct call against decode + apply of the
/// same heartbeat as encoded bytes (as a log replica receives it).
fn apply(c: &mut Criterion) {
    let (mut table, ids) = leased();
    let request = HeartbeatRequest {
        desired_ttl_seconds: NonZeroU64::new(600),
        ..HeartbeatRequest::default()
    };
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    // A stream of 64 Ki requests on random leases: the request bytes are read in order (hot,
    // as a server's request buffer is), the leases they name are mostly cold.
    let picks: Vec<usize> = (0..STREAM)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % LEASES) as usize
        })
        .collect();
    // Both paths read their requests in order from one contiguous buffer (the ids' text for
    // the direct call, the encoded commands for the other), as a server reads a request
    // buffer or a replica a log segment: picking ids from the million-entry `ids` would add
    // the harness's own cache misses to one side only.
    let start = T0 + 10_000_000;
    let mut id_text = String::new();
    let mut id_at = vec![0];
    let mut encoded = Vec::new();
    let mut encoded_at = vec![0];
    for (n, &k) in picks.iter().enumerate() {
        id_text.push_str(&ids[k]);
        id_at.push(id_text.len());
        let stamped = Stamped::new(
            at(start + n as i64),
            Command::Heartbeat {
                environment: ENV.into(),
                work: ids[k].as_str().into(),
                request,
            },
        );
        encoded.extend_from_slice(&stamped.encode());
        encoded_at.push(encoded.len());
    }
    let id = |m: usize| &id_text[id_at[m]..id_at[m + 1]];
    let bytes = |m: usize| &encoded[encoded_at[m]..encoded_at[m + 1]];
    println!("an encoded heartbeat: {} bytes", bytes(0).len());
    let mut m = 0;
    cpu_time("apply_heartbeat/direct x1M", 1, || {
        for _ in 0..1_000_000 {
            m = (m + 1) & (STREAM - 1);
            let beat = table.heartbeat(ENV, id(m), request, at(start + m as i64));
            black_box(beat.expect("beat"));
        }
    });
    cpu_time("apply_heartbeat/decoded x1M", 1, || {
        for _ in 0..1_000_000 {
            m = (m + 1) & (STREAM - 1);
            let stamped = Stamped::decode(bytes(m)).expect("decodes");
            black_box(table.apply(&stamped).expect("beat"));
        }
    });
    // The two paths interleaved in rounds, so load that comes and goes on a shared machine
    // hits both alike: the median of the per-round ratios.
    let mut ratios: Vec<f64> = (0..21)
        .map(|_| {
            let direct = std::time::Instant::now();
            for _ in 0..50_000 {
                m = (m + 1) & (STREAM - 1);
                let beat = table.heartbeat(ENV, id(m), request, at(start + m as i64));
                black_box(beat.expect("beat"));
            }
            let direct = direct.elapsed().as_secs_f64();
            let decoded = std::time::Instant::now();
            for _ in 0..50_000 {
                m = (m + 1) & (STREAM - 1);
                let stamped = Stamped::decode(bytes(m)).expect("decodes");
                black_box(table.apply(&stamped).expect("beat"));
            }
            decoded.elapsed().as_secs_f64() / direct
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "decode + apply / direct heartbeat, interleaved: median {:.3} (quartiles {:.3}–{:.3})",
        ratios[10], ratios[5], ratios[15]
    );
    let mut group = c.benchmark_group("apply_heartbeat");
    let mut n = 0;
    group.bench_function(BenchmarkId::new("direct", "1M"), |b| {
        b.iter(|| {
            n = (n + 1) & (STREAM - 1);
            let beat = table
                .heartbeat(ENV, id(n), request, at(start + n as i64))
                .expect("beat");
            black_box(beat)
        });
    });
    group.bench_function(BenchmarkId::new("decoded", "1M"), |b| {
        b.iter(|| {
            n = (n + 1) & (STREAM - 1);
            let stamped = Stamped::decode(black_box(bytes(n))).expect("decodes");
            black_box(table.apply(&stamped).expect("beat"))
        });
    });
    group.bench_function(BenchmarkId::new("decode_only", "1M"), |b| {
        b.iter(|| {
            n = (n + 1) & (STREAM - 1);
            black_box(Stamped::decode(black_box(bytes(n))).expect("decodes"))
        });
    });
    group.finish();
}

criterion_group!(benches, snapshots, apply);
criterion_main!(benches);
