//! An embeddable, deterministic, in-memory lease state machine for work items.
//!
//! `worklease` decides, for every work item a worker runs, who holds it, until when, and what
//! happens when the holder goes silent. It implements the work-item contract of self-hosted
//! environments (the `work` endpoints of Anthropic's `/v1/environments/{id}/work` API and of
//! the Qoder Cloud Agents API): poll, ack, heartbeat with an ownership precondition, stop,
//! list, stats and lease expiry, plus the environments the items live in.
//!
//! It is *sans-I/O*: no threads, no sockets, no files, and it never reads a clock. Every
//! operation takes `now`, so the same operations give the same answers on any machine, and a
//! server around it decides how to serve, persist and replicate. `worklease-server`, in the
//! same repository, is one such server (axum, with optional durability and Raft replication).
//!
//! # The tables
//!
//! - [`LeaseTable`]: the whole state machine, `&mut self`, single-threaded. Put it behind one
//!   mutex; an operation is a few hundred nanoseconds.
//! - [`ConcurrentLeaseTable`]: the same operations on `&self` over 64 `parking_lot`-locked
//!   shards. No lock guard reaches the caller and no lock is held for long (sweeps and
//!   catch-up go 1024 lapses per lock hold). Both tables answer every call identically.
//!
//! Both are built the same way, as quinn-proto's connection is: one sans-I/O core per table or
//! per shard (items, their leases, each environment's queues, the deadline index), one
//! environment registry holding each environment's record once (shared by every shard
//! through one `Arc`), and one clock. The single table is one core and a clock; the sharded
//! table adds only the locks and the merging of shards' answers, which it shares with the
//! single table. Both tables are `Send` and `Sync` (asserted at compile time).
//!
//! # States
//!
//! `queued → starting → active → stopping → stopped`; every state but `stopped` is *live*.
//! A queued item that a poll handed out and nobody acknowledged is *delivered*; after
//! `reclaim_older_than_ms` (5000 by default) another poll may hand it out again.
//!
//! | from \ operation | poll | ack | heartbeat | stop | stop (force) | lease lapses |
//! |---|---|---|---|---|---|---|
//! | `queued` | delivers the oldest claimable item | → `starting` | 409 | → `stopped` | → `stopped` | — |
//! | `starting` | — | unchanged (retry-safe) | → `active` | → `stopping` | → `stopped` | → `queued` |
//! | `active` | — | unchanged | lease renewed | → `stopping` | → `stopped` | → `queued` |
//! | `stopping` | — | 409 | unchanged, `lease_extended: false`: drain | → `stopped` (confirmation) | → `stopped` | → `stopped` |
//! | `stopped` | — | 409 | 409 | unchanged | unchanged | — |
//!
//! A heartbeat on a `stopping` item does not compare `expected_last_heartbeat` and renews
//! nothing: it tells the worker to drain and then confirm with a stop. A stop that is never
//! confirmed ends when the lease lapses.
//!
//! # Quickstart
//!
//! ```
//! use worklease::*;
//!
//! let mut table = LeaseTable::new(Config::default());
//! let env: EnvironmentId = "env_019e64e01a137caf953ac2ac7b42ec5c".parse()?;
//! table.register_environment(env.clone(), EnvironmentKind::SelfHosted)?;
//!
//! // Time is an argument. 2026-07-01T08:15:06.120394Z:
//! let now = Timestamp::from_unix_micros(1_782_893_706_120_394);
//! let work = WorkId::mint(now, 0, 0x5eed);
//! table.create_work(&env, work.clone(), "sess_01".parse()?, Metadata::new(), now)?;
//!
//! // A worker polls, acknowledges, and claims the lease with NO_HEARTBEAT.
//! let worker: WorkerId = "worker-1".parse()?;
//! let poll = PollRequest { worker: Some(worker.clone()), ..PollRequest::default() };
//! let Polled::Delivered(item) = table.poll(&env, &poll, now)? else { unreachable!() };
//! table.ack(&env, &item.id, Some(&worker), now)?;
//! let request = HeartbeatRequest::parse(Some("NO_HEARTBEAT"), Some("60"))?;
//! let beat = table.heartbeat(&env, &work, request, now)?;
//! let token = beat.last_heartbeat.expect("a renewed lease has a token");
//! assert_eq!(token.to_rfc3339().as_str(), "2026-07-01T08:15:06.120394Z");
//! assert_eq!(beat.state, WorkState::Active);
//!
//! // The next heartbeat echoes the token; a stale token means someone else took over (412).
//! let later = now.saturating_add_micros(20_000_000);
//! let token = token.to_string();
//! let beat = table.heartbeat(&env, &work, HeartbeatRequest::parse(Some(&token), None)?, later)?;
//! let stale = table.heartbeat(&env, &work, HeartbeatRequest::parse(Some(&token), None)?, later);
//! assert_eq!(stale.unwrap_err().status(), 412);
//!
//! // Silence past the deadline: the lease lapses and the item is queued again.
//! let transitions = table.sweep(beat.deadline);
//! assert_eq!(transitions[0].to, WorkState::Queued);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `cargo run --example quickstart` prints one item's whole lifecycle step by step.
//!
//! # Driving the table from a server
//!
//! 1. **Parse** the raw request with the crate's parsers ([`HeartbeatRequest::parse`],
//!    [`PollRequest::parse`], [`ListRequest::parse`], [`parse_worker_id`]), so bad input is a
//!    400 that names the parameter before anything else is looked at. Path ids go to the
//!    table as `&str`: a malformed id is answered exactly like an unknown one (404).
//! 2. **Call** the operation with `now` (a `chrono::DateTime<Utc>` or a [`Timestamp`]). A
//!    changing operation runs at `max(clock, now)` and first applies every lapse due then, so
//!    its answer is what it would be had a sweeper run at that very instant. A read (`get`,
//!    `list`, `stats`) answers as of that instant and changes nothing.
//! 3. **Render** the typed outcome with [`json`] (feature `serde`), or the [`Error`] with its
//!    [`status`](Error::status), [`error_type`](Error::error_type) and
//!    [`param`](Error::param).
//! 4. **Sweep** at [`LeaseTable::next_wakeup`]: a background task sleeps until the next lease
//!    deadline (or until an operation moves it earlier: an ack opens a lease, a renewal only
//!    moves a deadline later), calls [`LeaseTable::sweep`] and logs the
//!    returned transitions, including those operations applied on the way. An empty poll
//!    returns `next_claimable_at`, so a long poll sleeps exactly until work can appear.
//! 5. **Purge** now and then: [`LeaseTable::purge_stopped`]`(now - retention, now)` removes
//!    items stopped longer ago than the history you keep, so memory follows the live work.
//!
//! To make the table durable or replicated, build a [`Command`] from the request instead of
//! calling the method, stamp it ([`Stamped`]), write it to your log and [`apply`](LeaseTable::apply)
//! it (see [Replay, snapshots and fencing](#replay-snapshots-and-fencing)). A poll that would
//! find nothing need not be logged: ask [`LeaseTable::next_claimable_at`] (a read) first, and
//! log only a poll that will deliver.
//!
//! ## An axum handler and a sweeper task
//!
//! This is `examples/axum_embedding.rs` (feature `serde`; `cargo run --example
//! axum_embedding --features serde` serves it on a free port and prints curl lines):
//!
#![cfg_attr(
    feature = "serde",
    doc = concat!("```no_run\n", include_str!("../examples/axum_embedding.rs"), "\n```")
)]
#![cfg_attr(
    not(feature = "serde"),
    doc = "(Shown when the crate's docs are built with `--features serde`.)"
)]
//!
//! # Features
//!
//! | feature | adds | dependencies |
//! |---|---|---|
//! | (default) | both tables, the request parsers, [`Command`] / [`Stamped`] and [`apply`](LeaseTable::apply) | `chrono` (no clock), `thiserror`, `parking_lot`, `foldhash` |
//! | `serde` | [`json`]: the documented JSON shapes, so every server renders them byte for byte alike | `serde` |
//! | `snapshot` | [`LeaseTable::snapshot`] / [`LeaseTable::restore`], [`Stamped::encode`] / [`Stamped::decode`], [`SnapshotError`], [`DecodeError`] | `serde`, `postcard`, `crc32fast` |
//!
//! The minimum supported Rust version is 1.80 (`rust-version` in `Cargo.toml`).
//!
//! # The time contract
//!
//! - The crate never reads a clock. Instants are [`Timestamp`]s: `i64` microseconds since the
//!   Unix epoch; chrono appears only at the edge.
//! - Instants are written as RFC 3339 UTC with `Z` and exactly six fractional digits. Instants
//!   outside years 0000–9999 are clamped into that range, not refused.
//! - The table keeps a clock ([`LeaseTable::clock`]): the latest `now` a changing operation
//!   was given. Every changing operation runs at `max(clock, now)`, so the table's time never
//!   goes backwards: a caller's clock that steps back is clamped, not an error, and nothing
//!   lapses early or late.
//! - A lease is valid while `now < deadline`. A lapse happens at the deadline, whenever the
//!   table notices, so results do not depend on when anyone looked.
//! - Heartbeat tokens are strictly increasing per item: a token is the operation's instant,
//!   or the previous token plus 1 µs when time did not advance. `expected_last_heartbeat`
//!   compares instants: `…06.120394Z`, `…06.120394000Z` and `…14:15:06.120394+06:00` are the
//!   same token; `…06.1203941Z` matches nothing (no rounding).
//! - Reads (`get`, `list`, `stats`, `next_wakeup`, `next_claimable_at`) take `&self` and
//!   change nothing a snapshot holds: they answer as of `max(clock, now)`, showing a past-due
//!   lease as its lapse would leave it, but only changing operations and `sweep` apply lapses. Two replicas that served
//!   different reads hold identical state.
//!
//! # The error contract
//!
//! One [`Error`] type (`#[non_exhaustive]`); every variant maps to a status, an error type and,
//! where a parameter is at fault, its name. Building an error never allocates. Every error type
//! is typed to its cause, none is a string: decoding refuses bytes with a [`DecodeError`]
//! (its [`MalformedPayload`] or [`InvalidValue`] says what is wrong), restoring with a
//! [`SnapshotError`].
//!
//! Error enums and the records that grow with the contract ([`WorkItem`], [`Transition`],
//! [`EnvironmentRecord`], [`EnvironmentPage`], [`Command`], [`Applied`]) are
//! `#[non_exhaustive]`: a new variant or field is not a breaking change. Answers whose fields
//! the contract fixes ([`Heartbeat`], [`LeaseSnapshot`], [`Updated`], [`Page`],
//! [`QueueStats`], [`Polled`]) are not, so a reference model or a test double can build them.
//! Requests ([`PollRequest`], [`ListRequest`], [`HeartbeatRequest`], [`EnvironmentPatch`], ...)
//! keep public fields and a `Default`: `PollRequest { worker, ..Default::default() }`.
//!
//! | status | error type | variants |
//! |---|---|---|
//! | 400 | `invalid_request_error` | `InvalidParameter`, `ConflictingParameters`, `NotSelfHosted`, `EnvironmentArchived` |
//! | 404 | `not_found_error` | `EnvironmentNotFound`, `WorkNotFound` (unknown or malformed id) |
//! | 409 | `invalid_request_error` | `InvalidState`, `WorkerMismatch`, `AlreadyExists`, `EnvironmentInUse` |
//! | 412 | `precondition_failed_error` | `PreconditionFailed` (carries the lease as the table holds it) |
//!
//! A heartbeat checks in this order: parameters (400, at parse time) → environment exists
//! (404) → environment is `self_hosted` (400) → item exists in it (404) → state (409 for
//! `queued` or `stopped`) → precondition (412; not compared on a `stopping` item).
//!
//! # Replay, snapshots and fencing
//!
//! Every changing operation is also a value: [`Command`] has one variant per operation,
//! [`Stamped`] pairs it with its `now`, and [`apply`](LeaseTable::apply) answers exactly what
//! the direct method answers (it is a `match` that calls it). Ids a command refers to are the
//! request's text, so a malformed one replays to the same 404; ids a command creates are
//! minted by the caller. Two tables fed the same `Stamped` sequence give the same answers and
//! the same state, whatever their hash seeds or shard counts. Stamp each command once, where
//! it enters the log (a leader), and let every replica apply it.
//!
//! ```
//! use worklease::*;
//!
//! let t0 = Timestamp::from_unix_micros(1_782_893_700_000_000);
//! let log = vec![
//!     Stamped::new(t0, Command::RegisterEnvironment { id: "env_01".parse()?, kind: EnvironmentKind::SelfHosted }),
//!     Stamped::new(t0, Command::CreateWork {
//!         environment: "env_01".into(), id: "work_01".parse()?, session: "sess_01".parse()?, metadata: Metadata::new(),
//!     }),
//!     Stamped::new(t0, Command::Ack { environment: "env_01".into(), work: "work_01".into(), worker: None }),
//! ];
//! let (mut leader, follower) = (LeaseTable::default(), ConcurrentLeaseTable::default());
//! for stamped in &log {
//!     assert_eq!(leader.apply(stamped), follower.apply(stamped));
//! }
//! assert_eq!(leader.clock(), follower.clock());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With the `snapshot` feature, commands encode to bytes ([`Stamped::encode`]) for a
//! write-ahead log or a Raft entry, and a table snapshots to canonical bytes
//! ([`LeaseTable::snapshot`]): they depend only on the commands applied, so two replicas fed the
//! same log give byte-identical snapshots. Every instant in a snapshot is absolute: restoring
//! never extends or shortens a lease. Snapshots and commands start with a magic and a format
//! version and end with a CRC-32; anything else (truncated, flipped, newer, hostile) is refused
//! with a typed error, never a panic, and a restored table is checked with `validate()` before
//! it is returned.
//!
//! ```
//! # #[cfg(feature = "snapshot")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use worklease::*;
//!
//! let t0 = Timestamp::from_unix_micros(1_782_893_700_000_000);
//! let log = [
//!     Stamped::new(t0, Command::RegisterEnvironment { id: "env_01".parse()?, kind: EnvironmentKind::SelfHosted }),
//!     Stamped::new(t0, Command::CreateWork {
//!         environment: "env_01".into(), id: WorkId::mint(t0, 0, 0x5eed), session: "sess_01".parse()?, metadata: Metadata::new(),
//!     }),
//! ];
//! // The log as bytes, as a write-ahead log or a Raft entry holds it.
//! let entries: Vec<Vec<u8>> = log.iter().map(Stamped::encode).collect();
//!
//! let mut table = LeaseTable::new(Config::default());
//! table.apply(&Stamped::decode(&entries[0])?)?;
//! let snapshot = table.snapshot();
//! // A replica (of either kind, any shard count) restores and replays the rest.
//! let replica = ConcurrentLeaseTable::restore(&snapshot)?;
//! replica.apply(&Stamped::decode(&entries[1])?)?;
//! table.apply(&Stamped::decode(&entries[1])?)?;
//! assert_eq!(replica.snapshot(), table.snapshot());
//!
//! // Anything else is refused with a typed error, never a panic.
//! assert!(matches!(LeaseTable::restore(&snapshot[..10]), Err(SnapshotError::Decode(_))));
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "snapshot"))]
//! # fn main() {}
//! ```
//!
//! **The format**, for snapshots and commands alike: a 4-byte magic (`WLSN` for snapshots,
//! `WLCM` for commands), the format version as a little-endian `u16` (1), a
//! [postcard](https://docs.rs/postcard) payload, and a CRC-32 (IEEE) of everything before it,
//! little-endian. The version is checked before the checksum (a newer version may frame
//! differently). Minted ids are written as their 16 bytes, other ids as text; instants as
//! varint differences from a close instant of the same item: about 56 bytes per active lease.
//! Derived indexes (id index, queues, deadline wheel) are rebuilt on restore, never stored.
//! The wire structs are separate from the public types, so the public types can grow without
//! changing the format; a new format is a new version.
//!
//! **Fencing.** Every item carries `lease_epoch`: 0 until its first ack, then one more for
//! every ack, so each lease has its own number. It is on [`WorkItem`], on every accepted
//! [`Heartbeat`] and in a 412's current lease. A lease can be taken over while its old holder
//! still runs (it paused, its lease lapsed, another worker acked the item); the old holder's
//! next heartbeat fails, but a write it already has in flight to another store does not. Give
//! that store the epoch with every write and let it keep the highest epoch it saw per item:
//!
//! ```
//! use std::collections::HashMap;
//!
//! /// A downstream store that refuses writes from a holder whose lease was taken over.
//! #[derive(Default)]
//! struct Results { fence: HashMap<String, u32>, rows: HashMap<String, String> }
//!
//! impl Results {
//!     fn write(&mut self, work_id: &str, lease_epoch: u32, row: &str) -> Result<(), String> {
//!         let highest = self.fence.entry(work_id.to_owned()).or_insert(0);
//!         if lease_epoch < *highest {
//!             return Err(format!("stale lease {lease_epoch}: epoch {highest} holds the item"));
//!         }
//!         *highest = lease_epoch;
//!         self.rows.insert(work_id.to_owned(), row.to_owned());
//!         Ok(())
//!     }
//! }
//!
//! let mut store = Results::default();
//! store.write("work_01", 2, "from the new holder").unwrap();
//! assert!(store.write("work_01", 1, "late write from the old holder").is_err());
//! ```
//!
//! # Details
//!
//! - **Ids.** Environment and work ids are the prefix plus 1–64 of `[0-9A-Za-z]`; a body of
//!   exactly 32 lowercase hex digits (a UUIDv7, as [`WorkId::mint`] makes) is held inline in
//!   16 bytes, other bodies as shared text. Ids order by their text. Worker ids are 1–128
//!   visible ASCII characters. A work id given as text is matched by its text without being
//!   parsed, so a malformed one is simply not found (404).
//! - **Limits.** A table holds up to 2^30 environments (registering more panics) and
//!   2^32 − 1 work items. Metadata: at most 16 keys of 1–64 bytes, values of at most 512
//!   bytes.
//! - **The sweep journal.** Lapses that operations apply on the way are kept until the next
//!   `sweep`, which returns them with its own in ascending `(at, work_id)` order (the same in
//!   both tables). A server that never sweeps lets the journal grow by one entry per lapse:
//!   sweep at `next_wakeup()`.
//! - **History.** Stopped items stay (listable, readable) until `purge_stopped(before, now)`
//!   removes those stopped before `before`; their ids may then be created again. Nothing is
//!   purged automatically.
//! - **Stats** use the table's configured reclaim window ([`Config::reclaim_older_than_ms`],
//!   5000 ms) for `depth` and `pending`; `workers_polling` counts workers whose last poll is
//!   less than 30 s before the read's instant.
//! - **Environments.** The table keeps `config` as JSON text and checks only its size;
//!   checking its shape is the server's. [`LeaseTable::register_environment`] (no `now`)
//!   names the environment after its id and dates it at the table's clock. Deleting an
//!   environment removes its record, its items and their lapses not yet swept: nothing of it
//!   remains, and the next environment created reuses its slot, so a table's memory follows
//!   the environments it holds, not those it ever held.
//! - **Empty polls** return `next_claimable_at`: no later than the moment something may become
//!   claimable (the end of a delivery's reclaim window in the environment, or the earliest
//!   lease deadline in the table).
//!
//! # Testing
//!
//! `LeaseTable::validate` and `ConcurrentLeaseTable::validate` check every internal invariant
//! from scratch and return the first broken one as an [`InvariantViolation`]. They are a
//! testing aid, hidden from these docs: call them after every step of a property test or a
//! fuzzer driving a table. A table the public API built always passes; a violation is a bug
//! in this crate.
//!
//! # Further reading
//!
//! The repository's `docs/` directory holds the behaviour contract (`docs/contract.md`, whose
//! section numbers the source comments cite), the HTTP API of `worklease-server`, and the
//! measurements behind the representation (`docs/performance.md`).
#![cfg_attr(docsrs, feature(doc_cfg))]
// No unsafe code in the library, ever (Cargo.toml only denies it, for the test crates).
#![forbid(unsafe_code)]
// Library code states the invariant behind every unwrap (`expect`); tests and examples may not.
#![warn(clippy::unwrap_used)]

mod clock;
mod command;
mod concurrent;
mod deadline;
mod environment;
mod environment_keys;
mod environment_record;
mod error;
mod excerpt;
mod heartbeat;
mod ids;
mod index;
mod item;
mod item_summary;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod json;
mod lease_core;
mod metadata;
mod outcome;
mod registry;
mod request;
#[cfg(feature = "snapshot")]
mod snapshot;
mod state;
mod table;
mod time;
mod ttl;
mod workers;

pub use command::{Applied, Command, Stamped};
pub use concurrent::ConcurrentLeaseTable;
pub use environment_keys::{
    EnvironmentKey, EnvironmentKeys, ItemSecretKey, KeyDigest, MAX_KEYS_PER_ENVIRONMENT,
};
pub use environment_record::{
    EnvironmentKind, EnvironmentListRequest, EnvironmentPage, EnvironmentPatch, EnvironmentRecord,
    EnvironmentScope, NewEnvironment, MAX_CONFIG_BYTES, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS,
};
pub use error::{Error, Param};
pub use excerpt::Excerpt;
pub use heartbeat::{Heartbeat, HeartbeatRequest, LeaseSnapshot, Precondition};
pub use ids::{
    mint_uuid_v7, AsId, EnvironmentId, EnvironmentKeyId, MalformedId, SessionId, WorkId, WorkerId,
};
pub use item::{Transition, WorkItem};
pub use item_summary::ItemSummary;
pub use lease_core::InvariantViolation;
pub use metadata::{Metadata, MetadataPatch};
pub use outcome::{Config, Page, Polled, QueueStats, StopMode, Updated};
pub use request::{parse_worker_id, Cursor, ListRequest, PollRequest};
#[cfg(feature = "snapshot")]
#[cfg_attr(docsrs, doc(cfg(feature = "snapshot")))]
pub use snapshot::{DecodeError, InvalidValue, MalformedPayload, SnapshotError};
pub use state::{Operation, WorkState};
pub use table::LeaseTable;
pub use time::{ParsedInstant, Rfc3339, Timestamp, TimestampError};
pub use ttl::{Ttl, TtlOutOfRange};

// The README's Rust examples are doctests too, without being the crate's front page.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
