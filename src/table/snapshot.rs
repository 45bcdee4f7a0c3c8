//! [`LeaseTable::snapshot`] and [`LeaseTable::restore`] (SPEC §7.4), and the two halves both
//! tables share: [`encode`] writes one or many shards as one canonical snapshot, [`decode`]
//! builds any number of shards from one. The format is [`crate::snapshot`]'s.
//!
//! Restore builds rather than replays: items arrive in id order per environment, so each
//! goes to the end of its environment's list, queues are built from sorted runs and leases
//! are scheduled once. Every check that keeps a restored table from breaking an invariant (or
//! panicking later) is made while reading; [`LeaseTable::validate`] runs last, as a backstop.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::fmt;

use foldhash::fast::RandomState;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeTuple};
use serde::{Deserializer, Serialize, Serializer};

use super::{hash_of, LeaseTable};
use crate::ids::{BodyRef, EnvironmentId, SessionId, WorkId, WorkerId};
use crate::item::{Item, Phase, Transition};
use crate::metadata::Metadata;
use crate::outcome::Config;
use crate::snapshot::{
    after, delta, frame, instant, unframe, DecodeError, SnapshotError, WireConfig, WireId,
    WireItem, WireKind, WireLease, WirePhase, WireTransition, SNAPSHOT_MAGIC, SNAPSHOT_VERSION,
};
use crate::state::WorkState;
use crate::time::Timestamp;
use crate::ttl::Ttl;
use crate::workers::WorkerRef;

/// Bytes a leased item takes, roughly: the first guess of a snapshot's length.
const BYTES_PER_ITEM: usize = 64;
/// The fewest bytes an encoded item takes (two empty text ids, ten one-byte fields).
const MIN_ITEM_BYTES: usize = 14;

impl LeaseTable {
    /// The table's whole state as canonical bytes (SPEC §7.4): items, queues, leases,
    /// workers, metadata, pollers, the sweep journal, the clock and the configuration, every
    /// instant absolute.
    ///
    /// The bytes depend only on the changing operations applied (not on hash seeds, slot
    /// order, capacities or reads served): two tables fed the same [`crate::Stamped`]
    /// sequence, a [`LeaseTable`] or a [`crate::ConcurrentLeaseTable`] of any shard count,
    /// give the same bytes. The format (magic, version, CRC-32, canonical order) is described
    /// in the README's "Snapshots and commands" section.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::*;
    ///
    /// let mut table = LeaseTable::new(Config::default());
    /// let t0 = Timestamp::from_unix_micros(1_782_893_700_000_000);
    /// table.register_environment("env_01".parse()?, EnvironmentKind::SelfHosted)?;
    /// table.create_work("env_01", "work_01".parse()?, "sess_01".parse()?, Metadata::new(), t0)?;
    /// table.ack("env_01", "work_01", None, t0)?;
    ///
    /// let bytes = table.snapshot();
    /// let restored = LeaseTable::restore(&bytes)?;
    /// assert_eq!(restored.snapshot(), bytes);
    /// let later = Timestamp::from_unix_micros(1_782_893_730_000_000);
    /// assert_eq!(restored.get("env_01", "work_01", later)?, table.get("env_01", "work_01", later)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> Vec<u8> {
        encode(&[self], self.config, self.clock)
    }

    /// The table a [`Self::snapshot`] holds, hashing with a fresh seed. It answers every later
    /// operation exactly as the table snapshotted would have, at any later time: instants are
    /// absolute, so a lease past due when restored lapses at its own deadline.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::Decode`] for bytes that are not a snapshot this build reads
    /// (truncated, changed, another magic, a newer version); [`SnapshotError::Invalid`] for
    /// one that describes no table the crate could have built. Never panics, whatever the
    /// bytes, and never returns a table that fails [`Self::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::*;
    ///
    /// let bytes = LeaseTable::new(Config::default()).snapshot();
    /// assert!(LeaseTable::restore(&bytes)?.is_empty());
    /// let mut flipped = bytes.clone();
    /// flipped[8] ^= 0x10;
    /// assert_eq!(
    ///     LeaseTable::restore(&flipped).unwrap_err(),
    ///     SnapshotError::Decode(DecodeError::Checksum)
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn restore(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let restored = decode(bytes, RandomState::default(), 1)?;
        let mut tables = restored.tables;
        let mut table = tables
            .pop()
            .expect("invariant: decode builds the shard count asked for");
        table.clock = restored.clock;
        Ok(table)
    }
}

/// What [`decode`] built: the shards, the clock and the configuration.
pub(crate) struct Restored {
    pub(crate) tables: Vec<LeaseTable>,
    pub(crate) clock: Option<Timestamp>,
    pub(crate) config: Config,
}

/// The shard of an item whose id hashes to `hash`, among `2^(64 - shift)`.
pub(crate) fn shard_of(hash: u64, shift: u32) -> usize {
    // A shift of 64 (one shard) would overflow: checked_shr gives shard 0.
    hash.checked_shr(shift).unwrap_or(0) as usize
}

// ---- writing ----

/// The canonical snapshot of `tables`, the shards of one table (one for a [`LeaseTable`]),
/// each with no lapse due at `clock` left unapplied. Pollers are read from the first.
pub(crate) fn encode(tables: &[&LeaseTable], config: Config, clock: Option<Timestamp>) -> Vec<u8> {
    let first = tables.first().expect("invariant: a table has a shard");
    // Every worker an item names, once, ascending; each shard's references mapped to it.
    let mut workers: Vec<&WorkerId> = tables
        .iter()
        .flat_map(|table| table.workers.registered().map(|(_, id)| id))
        .collect();
    workers.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    workers.dedup();
    let worker_maps = tables
        .iter()
        .map(|table| {
            let mut map = Vec::new();
            for (reference, id) in table.workers.registered() {
                if map.len() <= reference.index() {
                    map.resize(reference.index() + 1, 0);
                }
                let position = workers
                    .binary_search_by(|w| w.as_str().cmp(id.as_str()))
                    .expect("invariant: the list holds every registered worker");
                map[reference.index()] = position as u32;
            }
            map
        })
        .collect();
    let mut environments: Vec<u32> = (0..first.environments.len() as u32).collect();
    environments.sort_unstable_by(|&a, &b| {
        first.environments[a as usize]
            .text
            .cmp(&first.environments[b as usize].text)
    });
    let mut positions = vec![0u32; environments.len()];
    for (position, &env) in environments.iter().enumerate() {
        positions[env as usize] = position as u32;
    }
    let mut journal: Vec<&Transition> = tables.iter().flat_map(|t| &t.journal).collect();
    journal.sort_unstable_by(|a, b| (a.at, &a.work_id).cmp(&(b.at, &b.work_id)));
    let index_of_env = |transition: &Transition| {
        let env = first
            .environment_slot(&transition.environment_id)
            .expect("invariant: journaled environments are registered");
        positions[env as usize]
    };
    let journal_positions = journal.iter().map(|t| index_of_env(t)).collect();
    let items: usize = tables.iter().map(|table| table.items.len()).sum();
    let out = SnapshotOut {
        tables,
        worker_maps,
        config,
        clock,
        workers,
        environments,
        journal,
        journal_positions,
    };
    frame(
        SNAPSHOT_MAGIC,
        SNAPSHOT_VERSION,
        &out,
        items * BYTES_PER_ITEM + 64,
    )
}

struct SnapshotOut<'t> {
    tables: &'t [&'t LeaseTable],
    /// Per shard: `WorkerRef::index` → index in `workers`.
    worker_maps: Vec<Vec<u32>>,
    config: Config,
    clock: Option<Timestamp>,
    workers: Vec<&'t WorkerId>,
    /// Environment indexes, in snapshot order.
    environments: Vec<u32>,
    journal: Vec<&'t Transition>,
    /// The journal's environments, as indexes in snapshot order.
    journal_positions: Vec<u32>,
}

impl Serialize for SnapshotOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let config = WireConfig {
            default_ttl: self.config.default_ttl.seconds() as u16,
            ack_ttl: self.config.ack_ttl.seconds() as u16,
            max_attempts: self.config.max_attempts.map(|max| max.get()),
            reclaim_older_than_ms: self.config.reclaim_older_than_ms,
        };
        let workers: Vec<&str> = self.workers.iter().map(|w| w.as_str()).collect();
        let mut top = serializer.serialize_tuple(5)?;
        top.serialize_element(&config)?;
        top.serialize_element(&self.clock.map(Timestamp::unix_micros))?;
        top.serialize_element(&workers)?;
        top.serialize_element(&EnvironmentsOut(self))?;
        let mut previous = Timestamp::from_unix_micros(0);
        let journal: Vec<WireTransition<'_>> = self
            .journal
            .iter()
            .zip(&self.journal_positions)
            .map(|(transition, &environment)| {
                let at = delta(previous, transition.at);
                previous = transition.at;
                WireTransition {
                    environment,
                    work: wire_id(transition.work_id.body()),
                    from: transition.from.into(),
                    to: transition.to.into(),
                    at,
                    lapses: transition.lapses,
                }
            })
            .collect();
        top.serialize_element(&journal)?;
        top.end()
    }
}

struct EnvironmentsOut<'s, 't>(&'s SnapshotOut<'t>);

impl Serialize for EnvironmentsOut<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let out = self.0;
        let mut seq = serializer.serialize_seq(Some(out.environments.len()))?;
        for &env in &out.environments {
            seq.serialize_element(&EnvironmentOut { out, env })?;
        }
        seq.end()
    }
}

struct EnvironmentOut<'s, 't> {
    out: &'s SnapshotOut<'t>,
    env: u32,
}

impl Serialize for EnvironmentOut<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let first = self.out.tables[0];
        let environment = &first.environments[self.env as usize];
        let mut pollers: Vec<(&str, i64)> = environment
            .pollers()
            .map(|(worker, at)| (worker.as_str(), at.unix_micros()))
            .collect();
        pollers.sort_unstable();
        let mut tuple = serializer.serialize_tuple(4)?;
        tuple.serialize_element(&*environment.text)?;
        tuple.serialize_element(&WireKind::from(environment.kind))?;
        tuple.serialize_element(&pollers)?;
        tuple.serialize_element(&ItemsOut {
            out: self.out,
            env: self.env,
        })?;
        tuple.end()
    }
}

struct ItemsOut<'s, 't> {
    out: &'s SnapshotOut<'t>,
    env: u32,
}

impl Serialize for ItemsOut<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let out = self.out;
        let env = self.env as usize;
        let lists: Vec<&[u32]> = out
            .tables
            .iter()
            .map(|table| table.environments[env].items.as_slice())
            .collect();
        let count = lists.iter().map(|list| list.len()).sum();
        let mut seq = serializer.serialize_seq(Some(count))?;
        let mut previous = Timestamp::from_unix_micros(0);
        let mut write = |shard: usize, slot: u32| {
            let item = wire_item(out.tables[shard], slot, &out.worker_maps[shard], previous);
            previous = out.tables[shard].items[slot as usize].created_at;
            seq.serialize_element(&item)
        };
        if let [only] = lists.as_slice() {
            for &slot in *only {
                write(0, slot)?;
            }
        } else {
            // Each shard's list is in id order: merge them.
            let body = |shard: usize, position: usize| {
                let table = out.tables[shard];
                table.items[lists[shard][position] as usize].body(&table.texts)
            };
            let mut heads: BinaryHeap<Reverse<(BodyRef<'_>, usize, usize)>> = lists
                .iter()
                .enumerate()
                .filter(|(_, list)| !list.is_empty())
                .map(|(shard, _)| Reverse((body(shard, 0), shard, 0)))
                .collect();
            while let Some(Reverse((_, shard, position))) = heads.pop() {
                write(shard, lists[shard][position])?;
                if position + 1 < lists[shard].len() {
                    heads.push(Reverse((body(shard, position + 1), shard, position + 1)));
                }
            }
        }
        seq.end()
    }
}

fn wire_id(body: BodyRef<'_>) -> WireId<'_> {
    match body {
        BodyRef::Hex(value) => WireId::Minted(value.get().to_be_bytes()),
        BodyRef::Text(text) => WireId::Text(text),
    }
}

/// Item `slot` of `table` as written, `previous` the `created_at` of the item before it.
fn wire_item<'a>(
    table: &'a LeaseTable,
    slot: u32,
    workers: &[u32],
    previous: Timestamp,
) -> WireItem<'a> {
    let item = &table.items[slot as usize];
    let worker = |reference: Option<WorkerRef>| reference.map(|r| workers[r.index()]);
    let created = item.created_at;
    let since_created = |at: Timestamp| delta(created, at);
    let started_base = item.acknowledged_at.unwrap_or(created);
    let token_base = item.started_at.or(item.acknowledged_at).unwrap_or(created);
    let lease =
        |deadline: Timestamp, ttl: Ttl, holder: Option<WorkerRef>, beaten: bool| WireLease {
            ttl: ttl.seconds() as u16,
            holder: worker(holder),
            deadline: delta(renewed_deadline(item, ttl, beaten), deadline),
        };
    let phase = match item.phase {
        Phase::Queued {
            delivered_at,
            worker: delivered_to,
        } => WirePhase::Queued {
            delivered: delivered_at.map(since_created),
            worker: worker(delivered_to),
        },
        Phase::Starting {
            deadline,
            ttl,
            holder,
        } => WirePhase::Starting(lease(deadline, ttl, holder, false)),
        Phase::Active {
            deadline,
            ttl,
            holder,
        } => WirePhase::Active(lease(deadline, ttl, holder, true)),
        Phase::Stopping {
            deadline,
            ttl,
            holder,
            beaten,
        } => WirePhase::Stopping {
            lease: lease(deadline, ttl, holder, beaten),
            beaten,
        },
        Phase::Stopped {
            at,
            beaten,
            from_lease,
        } => WirePhase::Stopped {
            at: since_created(at),
            beaten,
            from_lease,
        },
    };
    WireItem {
        id: wire_id(item.body(&table.texts)),
        session: wire_id(item.session_body(&table.texts)),
        created: delta(previous, created),
        acknowledged: item.acknowledged_at.map(since_created),
        started: item.started_at.map(|at| delta(started_base, at)),
        last_token: item.last_token.map(|at| delta(token_base, at)),
        lapses: item.lapses,
        phase,
        metadata: table
            .metadata
            .get(&slot)
            .map(|metadata| metadata.iter().collect())
            .unwrap_or_default(),
        stop_requested: table.stop_requests.get(&slot).map(|&at| since_created(at)),
    }
}

/// The deadline the lease's last renewal set: token + TTL after a heartbeat, else ack + TTL
/// (the epoch when the item holds no such instant, which a table never does).
fn renewed_deadline(item: &Item, ttl: Ttl, beaten: bool) -> Timestamp {
    let base = if beaten {
        item.last_token
    } else {
        item.acknowledged_at
    };
    base.unwrap_or(Timestamp::from_unix_micros(0))
        .saturating_add_micros(ttl.micros())
}

// ---- reading ----

/// The shards (`shards`, a power of two) a snapshot holds, hashing with `hasher`.
pub(crate) fn decode(
    bytes: &[u8],
    hasher: RandomState,
    shards: usize,
) -> Result<Restored, SnapshotError> {
    debug_assert!(shards.is_power_of_two());
    let payload = unframe(bytes, SNAPSHOT_MAGIC, SNAPSHOT_VERSION)?;
    let mut builder = Builder {
        hasher,
        shards,
        shift: 64 - shards.trailing_zeros(),
        tables: Vec::new(),
        config: Config::default(),
        clock: None,
        workers: Vec::new(),
        worker_used: Vec::new(),
        references: HashMap::default(),
        queues: Vec::new(),
        leases: Vec::new(),
        indexed: Vec::new(),
        environments: Vec::new(),
        previous_id: None,
        error: None,
    };
    let mut deserializer = postcard::Deserializer::from_bytes(payload);
    let read = TopSeed(&mut builder).deserialize(&mut deserializer);
    if let Some(error) = builder.error.take() {
        return Err(SnapshotError::Invalid(error));
    }
    match read {
        Ok(()) => {}
        Err(error) => return Err(DecodeError::Malformed(error.to_string()).into()),
    }
    match deserializer.finalize() {
        Ok([]) => {}
        Ok(rest) => {
            return Err(
                DecodeError::Malformed(format!("{} bytes after the payload", rest.len())).into(),
            )
        }
        Err(error) => return Err(DecodeError::Malformed(error.to_string()).into()),
    }
    builder.finish()
}

/// Queued items of the environment being read, per shard, to build its queues from.
#[derive(Default)]
struct Queues {
    undelivered: Vec<WorkId>,
    delivered: Vec<(Timestamp, WorkId)>,
}

/// The tables being built, and what reading needs to check the next value.
struct Builder {
    hasher: RandomState,
    shards: usize,
    shift: u32,
    tables: Vec<LeaseTable>,
    config: Config,
    clock: Option<Timestamp>,
    workers: Vec<WorkerId>,
    worker_used: Vec<bool>,
    /// By (shard, worker index): the shard's reference, once an item there names it. A map,
    /// not a vector per shard, so a long hostile worker list costs no more than its bytes.
    references: HashMap<(usize, u32), WorkerRef, RandomState>,
    queues: Vec<Queues>,
    /// Per shard: every lease, to schedule once all items are in.
    leases: Vec<Vec<(u32, Timestamp)>>,
    /// Per shard: every item's `(hash, slot)`, to index once all items are in.
    indexed: Vec<Vec<(u64, u32)>>,
    environments: Vec<EnvironmentId>,
    /// The last work id read in the current environment.
    previous_id: Option<WorkId>,
    /// The first semantic error; reading stops at it.
    error: Option<String>,
}

/// Records a semantic error and stops reading: `$builder.error` says why.
macro_rules! check {
    ($builder:expr, $result:expr) => {
        match $result {
            Ok(value) => value,
            Err(message) => {
                $builder.error = Some(message);
                return Err(de::Error::custom("invalid snapshot"));
            }
        }
    };
}

fn missing<E: de::Error>(what: &str) -> E {
    de::Error::custom(format_args!("missing {what}"))
}

struct TopSeed<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_tuple(5, self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a snapshot")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let builder = self.0;
        let config: WireConfig = seq.next_element()?.ok_or_else(|| missing("config"))?;
        check!(builder, builder.start(config));
        let clock: Option<i64> = seq.next_element()?.ok_or_else(|| missing("clock"))?;
        builder.clock = check!(builder, clock.map(instant).transpose());
        let workers: Vec<&str> = seq.next_element()?.ok_or_else(|| missing("workers"))?;
        check!(builder, builder.set_workers(&workers));
        seq.next_element_seed(EnvironmentsSeed(&mut *builder))?
            .ok_or_else(|| missing("environments"))?;
        let journal: Vec<WireTransition<'de>> =
            seq.next_element()?.ok_or_else(|| missing("journal"))?;
        check!(builder, builder.set_journal(&journal));
        Ok(())
    }
}

struct EnvironmentsSeed<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for EnvironmentsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EnvironmentsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("environments")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(EnvironmentSeed(&mut *self.0))?
            .is_some()
        {}
        Ok(())
    }
}

struct EnvironmentSeed<'b>(&'b mut Builder);

impl<'de> DeserializeSeed<'de> for EnvironmentSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_tuple(4, self)
    }
}

impl<'de> Visitor<'de> for EnvironmentSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an environment")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let builder = self.0;
        let id: &str = seq
            .next_element()?
            .ok_or_else(|| missing("environment id"))?;
        let kind: WireKind = seq.next_element()?.ok_or_else(|| missing("kind"))?;
        let env = check!(builder, builder.add_environment(id, kind));
        let pollers: Vec<(&str, i64)> = seq.next_element()?.ok_or_else(|| missing("pollers"))?;
        check!(builder, builder.set_pollers(env, &pollers));
        seq.next_element_seed(ItemsSeed(&mut *builder, env))?
            .ok_or_else(|| missing("items"))?;
        builder.finish_environment(env);
        Ok(())
    }
}

struct ItemsSeed<'b>(&'b mut Builder, u32);

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("work items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (builder, env) = (self.0, self.1);
        // Room for the items at once. The length is bounded by the bytes left (a hostile
        // length cannot reserve more than a few times the input), and every encoded item
        // takes at least `MIN_ITEM_BYTES`.
        builder.reserve(seq.size_hint().unwrap_or(0) / MIN_ITEM_BYTES, env);
        let mut previous = Timestamp::from_unix_micros(0);
        while let Some(item) = seq.next_element::<WireItem<'de>>()? {
            previous = check!(builder, builder.add_item(env, &item, previous));
        }
        Ok(())
    }
}

fn work_id(id: WireId<'_>) -> Result<WorkId, String> {
    match id {
        WireId::Minted(bytes) => Ok(WorkId::from_u128(u128::from_be_bytes(bytes))),
        WireId::Text(body) => {
            let id = WorkId::parse(&format!("{}{body}", WorkId::PREFIX))
                .map_err(|_| format!("malformed work id body {body:?}"))?;
            if id.as_u128().is_some() {
                return Err(format!("minted work id {body:?} written as text"));
            }
            Ok(id)
        }
    }
}

fn session_id(id: WireId<'_>) -> Result<SessionId, String> {
    match id {
        WireId::Minted(bytes) => Ok(SessionId::from_u128(u128::from_be_bytes(bytes))),
        WireId::Text(body) => {
            let id = SessionId::parse(&format!("{}{body}", SessionId::PREFIX))
                .map_err(|_| format!("malformed session id body {body:?}"))?;
            if id.as_u128().is_some() {
                return Err(format!("minted session id {body:?} written as text"));
            }
            Ok(id)
        }
    }
}

fn ttl(seconds: u16) -> Result<Ttl, String> {
    Ttl::from_seconds(u64::from(seconds)).map_err(|e| e.to_string())
}

impl Builder {
    fn start(&mut self, wire: WireConfig) -> Result<(), String> {
        let config = Config {
            default_ttl: ttl(wire.default_ttl)?,
            ack_ttl: ttl(wire.ack_ttl)?,
            max_attempts: match wire.max_attempts {
                None => None,
                Some(max) => Some(std::num::NonZeroU32::new(max).ok_or("max_attempts of 0")?),
            },
            reclaim_older_than_ms: wire.reclaim_older_than_ms,
        };
        self.config = config;
        self.tables = (0..self.shards)
            .map(|_| LeaseTable::with_hasher(config, self.hasher.clone()))
            .collect();
        self.queues = (0..self.shards).map(|_| Queues::default()).collect();
        self.leases = vec![Vec::new(); self.shards];
        self.indexed = vec![Vec::new(); self.shards];
        Ok(())
    }

    fn set_workers(&mut self, workers: &[&str]) -> Result<(), String> {
        for pair in workers.windows(2) {
            if pair[0] >= pair[1] {
                return Err(format!(
                    "workers {:?} and {:?} out of order",
                    pair[0], pair[1]
                ));
            }
        }
        self.workers = workers
            .iter()
            .map(|text| WorkerId::parse(text).map_err(|e| format!("worker {text:?}: {e}")))
            .collect::<Result<_, _>>()?;
        self.worker_used = vec![false; workers.len()];
        Ok(())
    }

    fn add_environment(&mut self, text: &str, kind: WireKind) -> Result<u32, String> {
        let id = EnvironmentId::parse(text).map_err(|e| format!("environment {text:?}: {e}"))?;
        if let Some(previous) = self.environments.last() {
            if *previous.to_string() >= *text {
                return Err(format!("environment {text:?} out of order"));
            }
        }
        let env = self.environments.len() as u32;
        for table in &mut self.tables {
            table
                .register_environment(id.clone(), kind.into())
                .map_err(|e| e.to_string())?;
        }
        self.environments.push(id);
        self.previous_id = None;
        Ok(env)
    }

    fn set_pollers(&mut self, env: u32, pollers: &[(&str, i64)]) -> Result<(), String> {
        for pair in pollers.windows(2) {
            if pair[0].0 >= pair[1].0 {
                return Err(format!(
                    "pollers {:?} and {:?} out of order",
                    pair[0].0, pair[1].0
                ));
            }
        }
        for &(worker, at) in pollers {
            let worker = WorkerId::parse(worker).map_err(|e| format!("poller {worker:?}: {e}"))?;
            let at = instant(at)?;
            if self.clock.map_or(true, |clock| at > clock) {
                return Err(format!("poll at {at:?} after the clock"));
            }
            self.tables[0].environments[env as usize].restore_poller(worker, at);
        }
        Ok(())
    }

    /// The reference shard `shard` holds for worker `index`, taken for one more item.
    fn worker(&mut self, shard: usize, index: Option<u32>) -> Result<Option<WorkerRef>, String> {
        let Some(index) = index else { return Ok(None) };
        let id = self
            .workers
            .get(index as usize)
            .ok_or_else(|| format!("worker index {index} out of range"))?;
        self.worker_used[index as usize] = true;
        let workers = &mut self.tables[shard].workers;
        let reference = match self.references.entry((shard, index)) {
            Entry::Occupied(known) => {
                workers.retain(*known.get());
                *known.get()
            }
            Entry::Vacant(entry) => *entry.insert(workers.acquire(id)),
        };
        Ok(Some(reference))
    }

    /// Reads one item of environment `env`; returns its `created_at`, the next one's base.
    fn add_item(
        &mut self,
        env: u32,
        wire: &WireItem<'_>,
        previous: Timestamp,
    ) -> Result<Timestamp, String> {
        let id = work_id(wire.id)?;
        if let Some(previous) = &self.previous_id {
            if *previous >= id {
                return Err(format!("{id:?} out of order after {previous:?}"));
            }
        }
        let session = session_id(wire.session)?;
        let clock = self.clock.ok_or("items but no clock")?;
        let created_at = after(previous, wire.created)?;
        if created_at > clock {
            return Err(format!("{id:?} created after the clock"));
        }
        let since = |base: Timestamp, at: Option<i64>| at.map(|d| after(base, d)).transpose();
        let acknowledged_at = since(created_at, wire.acknowledged)?;
        let started_at = since(acknowledged_at.unwrap_or(created_at), wire.started)?;
        let token_base = started_at.or(acknowledged_at).unwrap_or(created_at);
        let last_token = since(token_base, wire.last_token)?;
        let stop_requested_at = since(created_at, wire.stop_requested)?;
        let hash = hash_of(&self.hasher, id.key());
        let shard = shard_of(hash, self.shift);
        let lease = |builder: &mut Self, lease: &WireLease, beaten: bool| {
            let ttl = ttl(lease.ttl)?;
            let base = if beaten {
                last_token.ok_or("a lease with a heartbeat but no token")?
            } else {
                acknowledged_at.ok_or("a lease without an ack")?
            };
            let deadline = after(base.saturating_add_micros(ttl.micros()), lease.deadline)?;
            let holder = builder.worker(shard, lease.holder)?;
            Ok::<_, String>((deadline, ttl, holder))
        };
        let phase = match wire.phase {
            WirePhase::Queued { delivered, worker } => {
                let delivered_at = since(created_at, delivered)?;
                if delivered_at.is_none() && worker.is_some() {
                    return Err(format!("{id:?} names a worker but was never delivered"));
                }
                Phase::Queued {
                    delivered_at,
                    worker: self.worker(shard, worker)?,
                }
            }
            WirePhase::Starting(wire_lease) => {
                let (deadline, ttl, holder) = lease(self, &wire_lease, false)?;
                Phase::Starting {
                    deadline,
                    ttl,
                    holder,
                }
            }
            WirePhase::Active(wire_lease) => {
                let (deadline, ttl, holder) = lease(self, &wire_lease, true)?;
                Phase::Active {
                    deadline,
                    ttl,
                    holder,
                }
            }
            WirePhase::Stopping {
                lease: wire_lease,
                beaten,
            } => {
                let (deadline, ttl, holder) = lease(self, &wire_lease, beaten)?;
                Phase::Stopping {
                    deadline,
                    ttl,
                    holder,
                    beaten,
                }
            }
            WirePhase::Stopped {
                at,
                beaten,
                from_lease,
            } => {
                if beaten && last_token.is_none() {
                    return Err(format!("{id:?} had a heartbeat but holds no token"));
                }
                Phase::Stopped {
                    at: after(created_at, at)?,
                    beaten,
                    from_lease,
                }
            }
        };
        // What each state's history leaves: queued items start a new attempt (no ack, no
        // start), leased ones were acked, and only a heartbeat starts them.
        let times_fit = match phase {
            Phase::Queued { .. } => acknowledged_at.is_none() && started_at.is_none(),
            Phase::Starting { .. } => acknowledged_at.is_some() && started_at.is_none(),
            Phase::Active { .. } => acknowledged_at.is_some() && started_at.is_some(),
            Phase::Stopping { .. } => acknowledged_at.is_some(),
            Phase::Stopped { .. } => true,
        };
        if !times_fit {
            return Err(format!("{id:?} times do not fit {:?}", phase.state()));
        }
        match (&phase, stop_requested_at) {
            (Phase::Stopping { .. }, Some(_))
            | (Phase::Stopped { .. }, _)
            | (Phase::Queued { .. } | Phase::Starting { .. } | Phase::Active { .. }, None) => {}
            (Phase::Stopping { .. }, None) => {
                return Err(format!("{id:?} is stopping without a stop request"))
            }
            (Phase::Queued { .. } | Phase::Starting { .. } | Phase::Active { .. }, Some(_)) => {
                return Err(format!("{id:?} has a stop request in {:?}", phase.state()))
            }
        }
        let metadata = if wire.metadata.is_empty() {
            None
        } else {
            let mut map = BTreeMap::new();
            for pair in wire.metadata.windows(2) {
                if pair[0].0 >= pair[1].0 {
                    return Err(format!("{id:?} metadata keys out of order"));
                }
            }
            for &(key, value) in &wire.metadata {
                map.insert(key.to_owned(), value.to_owned());
            }
            Some(Metadata::from_map(map).map_err(|e| format!("{id:?} metadata: {e}"))?)
        };

        let table = &mut self.tables[shard];
        let slot = u32::try_from(table.items.len())
            .ok()
            .filter(|&slot| slot < u32::MAX - 1)
            .ok_or("too many items")?;
        // Indexed once every item is in (see `finish`).
        self.indexed[shard].push((hash, slot));
        let mut item = Item::new(&id, session, env, created_at, &mut table.texts);
        item.acknowledged_at = acknowledged_at;
        item.started_at = started_at;
        item.last_token = last_token;
        item.lapses = wire.lapses;
        item.phase = phase;
        table.items.push(item);
        table.environments[env as usize].items.push(slot);
        if let Some(metadata) = metadata {
            table.metadata.insert(slot, metadata);
        }
        if let Some(at) = stop_requested_at {
            table.stop_requests.insert(slot, at);
        }
        match phase {
            Phase::Queued {
                delivered_at: None, ..
            } => self.queues[shard].undelivered.push(id.clone()),
            Phase::Queued {
                delivered_at: Some(at),
                ..
            } => self.queues[shard].delivered.push((at, id.clone())),
            Phase::Starting { deadline, .. }
            | Phase::Active { deadline, .. }
            | Phase::Stopping { deadline, .. } => self.leases[shard].push((slot, deadline)),
            Phase::Stopped { .. } => {}
        }
        self.previous_id = Some(id);
        Ok(created_at)
    }

    /// Makes room in every shard for `items` more items of environment `env`, spread evenly.
    fn reserve(&mut self, items: usize, env: u32) {
        let share = items / self.shards + 1;
        for table in &mut self.tables {
            table.items.reserve(share);
            table.environments[env as usize].items.reserve(share);
            table.deadlines.reserve_slots(table.items.len() + share);
        }
        for indexed in &mut self.indexed {
            indexed.reserve(share);
        }
    }

    /// Builds environment `env`'s queues in every shard from the queued items read.
    fn finish_environment(&mut self, env: u32) {
        for (table, queues) in self.tables.iter_mut().zip(&mut self.queues) {
            let environment = &mut table.environments[env as usize];
            // In id order already: a bulk build.
            environment.undelivered = queues.undelivered.drain(..).collect::<BTreeSet<_>>();
            queues.delivered.sort_unstable();
            environment.delivered = queues.delivered.drain(..).collect::<BTreeSet<_>>();
        }
    }

    fn set_journal(&mut self, journal: &[WireTransition<'_>]) -> Result<(), String> {
        let mut previous: Option<(Timestamp, WorkId)> = None;
        for wire in journal {
            let environment = self
                .environments
                .get(wire.environment as usize)
                .ok_or_else(|| format!("journal names environment {}", wire.environment))?
                .clone();
            let work_id = work_id(wire.work)?;
            let (from, to) = (WorkState::from(wire.from), WorkState::from(wire.to));
            match (from, to) {
                (WorkState::Starting | WorkState::Active, WorkState::Queued)
                | (
                    WorkState::Starting | WorkState::Active | WorkState::Stopping,
                    WorkState::Stopped,
                ) => {}
                _ => return Err(format!("journal lapse from {from:?} to {to:?}")),
            }
            let base = previous
                .as_ref()
                .map_or(Timestamp::from_unix_micros(0), |(at, _)| *at);
            if wire.at < 0 {
                return Err("journal out of order".to_owned());
            }
            let at = after(base, wire.at)?;
            if let Some(previous) = &previous {
                if (at, &work_id) <= (previous.0, &previous.1) {
                    return Err("journal out of order".to_owned());
                }
            }
            if self.clock.map_or(true, |clock| at > clock) {
                return Err(format!("lapse at {at:?} after the clock"));
            }
            let shard = shard_of(hash_of(&self.hasher, work_id.key()), self.shift);
            self.tables[shard].journal.push(Transition {
                environment_id: environment,
                work_id: work_id.clone(),
                from,
                to,
                at,
                lapses: wire.lapses,
            });
            previous = Some((at, work_id));
        }
        Ok(())
    }

    /// Schedules the leases, checks what only the whole snapshot shows, validates.
    fn finish(mut self) -> Result<Restored, SnapshotError> {
        if let Some(unused) = self.worker_used.iter().position(|used| !used) {
            return Err(SnapshotError::Invalid(format!(
                "worker {:?} named by no item",
                self.workers[unused].as_str()
            )));
        }
        for (table, mut indexed) in self
            .tables
            .iter_mut()
            .zip(std::mem::take(&mut self.indexed))
        {
            let (hasher, items, texts) = (&table.hasher, &table.items, &table.texts);
            let twice = table.work_index.insert_all_new(
                &mut indexed,
                |a, b| items[a as usize].key(texts) == items[b as usize].key(texts),
                |slot| hash_of(hasher, items[slot as usize].key(texts)),
            );
            if let Err(slot) = twice {
                let id = table.items[slot as usize].id(texts);
                return Err(SnapshotError::Invalid(format!("{id:?} twice")));
            }
        }
        for (table, mut leases) in self.tables.iter_mut().zip(std::mem::take(&mut self.leases)) {
            table.deadlines.reserve_slots(table.items.len());
            // The earliest first: an empty wheel starts its window there, so every other
            // lease files into the window rather than the passed set.
            if let Some(earliest) = (0..leases.len()).min_by_key(|&i| leases[i].1) {
                leases.swap(0, earliest);
            }
            for (slot, deadline) in leases {
                table.deadlines.schedule(slot, deadline);
            }
        }
        for table in &self.tables {
            table.validate().map_err(SnapshotError::Invalid)?;
        }
        Ok(Restored {
            tables: self.tables,
            clock: self.clock,
            config: self.config,
        })
    }
}

#[cfg(test)]
mod tests;
