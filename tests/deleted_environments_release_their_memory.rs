//! A deleted environment leaves nothing behind (docs/contract.md §9 delete): 100,000 cycles of
//! creating an environment, giving it work and deleting it leave both tables' memory where it
//! was, not one byte per cycle more.

// `GlobalAlloc` is an unsafe trait: counting bytes needs `unsafe impl`. The crate itself
// forbids unsafe code; this test is a separate crate and only forwards to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use worklease::{
    ConcurrentLeaseTable, Config, EnvironmentId, LeaseTable, Metadata, NewEnvironment, Timestamp,
    WorkId,
};

struct Counting;

thread_local! {
    /// Bytes allocated and not yet freed by this thread.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|live| live.set(live.get() + delta));
}

fn size(bytes: usize) -> isize {
    isize::try_from(bytes).expect("an allocation fits in isize")
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(size(layout.size()));
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-size(layout.size()));
        System.dealloc(ptr, layout);
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(size(layout.size()));
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(size(new_size) - size(layout.size()));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

const CYCLES: usize = 100_000;
/// Cycles before the baseline: enough that every shard of a 64-shard table has held items, so
/// the capacities reused later (item vectors, id indexes, the registry's slots) exist.
const WARM_UP: usize = 1_000;
/// Bytes the table may hold after the cycles beyond what it held before them: capacities
/// rounded differently, never anything per cycle (a cycle's environment alone is over 4 KiB).
const SLACK: isize = 16 * 1024;
const T0: i64 = 1_782_893_706_120_394;

/// The operations a cycle needs, on either table.
trait Table {
    fn create(&mut self, id: EnvironmentId, new: NewEnvironment, now: Timestamp);
    fn add_work(&mut self, env: &str, work: WorkId, now: Timestamp);
    fn delete(&mut self, env: &str, now: Timestamp);
}

impl Table for LeaseTable {
    fn create(&mut self, id: EnvironmentId, new: NewEnvironment, now: Timestamp) {
        self.create_environment(id, new, now).expect("a new id");
    }
    fn add_work(&mut self, env: &str, work: WorkId, now: Timestamp) {
        let session = "sess_01".parse().expect("a session id");
        self.create_work(env, work, session, Metadata::new(), now)
            .expect("a live environment");
    }
    fn delete(&mut self, env: &str, now: Timestamp) {
        self.delete_environment(env, now).expect("no lease held");
    }
}

impl Table for ConcurrentLeaseTable {
    fn create(&mut self, id: EnvironmentId, new: NewEnvironment, now: Timestamp) {
        self.create_environment(id, new, now).expect("a new id");
    }
    fn add_work(&mut self, env: &str, work: WorkId, now: Timestamp) {
        let session = "sess_01".parse().expect("a session id");
        self.create_work(env, work, session, Metadata::new(), now)
            .expect("a live environment");
    }
    fn delete(&mut self, env: &str, now: Timestamp) {
        self.delete_environment(env, now).expect("no lease held");
    }
}

/// Creates environment number `n` with a 4 KiB config and two queued items, then deletes it.
fn cycle(table: &mut impl Table, n: usize) {
    let now = Timestamp::from_unix_micros(T0 + n as i64);
    let text = format!("env_cycle{n}");
    let mut new = NewEnvironment::self_hosted(format!("cycle {n}"));
    new.config = Some(format!(
        "{{\"type\":\"self_hosted\",\"note\":\"{}\"}}",
        "x".repeat(4096)
    ));
    table.create(text.parse().expect("an environment id"), new, now);
    for item in 0..2 {
        let work = format!("work_cycle{n}x{item}").parse().expect("a work id");
        table.add_work(&text, work, now);
    }
    table.delete(&text, now);
}

/// Bytes `table` holds after `CYCLES` cycles beyond what it held after `WARM_UP` of them.
fn growth(table: &mut impl Table) -> isize {
    // An environment that stays, with work, so the table is not empty throughout.
    table.create(
        "env_stays".parse().expect("an environment id"),
        NewEnvironment::self_hosted("stays"),
        Timestamp::from_unix_micros(T0),
    );
    table.add_work(
        "env_stays",
        "work_stays".parse().expect("a work id"),
        Timestamp::from_unix_micros(T0),
    );
    for n in 0..WARM_UP {
        cycle(table, n);
    }
    let baseline = live();
    for n in WARM_UP..WARM_UP + CYCLES {
        cycle(table, n);
    }
    live() - baseline
}

#[test]
fn a_single_table_returns_to_its_baseline() {
    let mut table = LeaseTable::new(Config::default());
    let grown = growth(&mut table);
    assert!(
        grown <= SLACK,
        "{CYCLES} create+delete cycles left {grown} bytes more than before them"
    );
    table.validate().expect("valid");
    assert_eq!(table.len(), 1);
}

#[test]
fn a_sharded_table_returns_to_its_baseline() {
    let mut table = ConcurrentLeaseTable::with_shards(Config::default(), 64);
    let grown = growth(&mut table);
    assert!(
        grown <= SLACK,
        "{CYCLES} create+delete cycles left {grown} bytes more than before them"
    );
    table.validate().expect("valid");
    assert_eq!(table.len(), 1);
}
