//! Reading: a snapshot streamed out of postcard into any number of shards, every value
//! checked as it arrives.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use foldhash::fast::RandomState;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::Deserializer;

use super::{shard_of, Restored};
use crate::environment::Environment;
use crate::environment_keys::{EnvironmentKey, EnvironmentKeys, ItemSecretKey, KeyDigest};
use crate::environment_record::{EnvironmentScope, NewEnvironment};
use crate::ids::{EnvironmentId, EnvironmentKeyId, SessionId, WorkId, WorkerId};
use crate::item::{Item, Phase, Transition};
use crate::lease_core::{hash_of, LeaseCore};
use crate::metadata::Metadata;
use crate::outcome::Config;
use crate::registry::{self, Registry};
use crate::snapshot::{
    after, instant, unframe, DecodeError, MalformedPayload, SnapshotError, WireConfig, WireId,
    WireItem, WireKey, WireKind, WireLease, WirePhase, WireProfile, WireTransition, SNAPSHOT_MAGIC,
    SNAPSHOT_VERSION, SNAPSHOT_VERSION_WITHOUT_KEYS,
};
use crate::state::WorkState;
use crate::time::Timestamp;
use crate::ttl::Ttl;
use crate::workers::WorkerRef;

/// The fewest bytes an encoded item takes (two empty text ids, ten one-byte fields).
const MIN_ITEM_BYTES: usize = 14;

/// The shards (`shards`, a power of two) a snapshot holds, hashing with `hasher`.
pub(crate) fn decode(
    bytes: &[u8],
    hasher: RandomState,
    shards: usize,
) -> Result<Restored, SnapshotError> {
    debug_assert!(shards.is_power_of_two());
    let (payload, version) = match unframe(bytes, SNAPSHOT_MAGIC, SNAPSHOT_VERSION) {
        Err(DecodeError::UnsupportedVersion { found, .. })
            if found == SNAPSHOT_VERSION_WITHOUT_KEYS =>
        {
            (unframe(bytes, SNAPSHOT_MAGIC, found)?, found)
        }
        framed => (framed?, SNAPSHOT_VERSION),
    };
    let mut builder = Builder {
        hasher,
        shards,
        shift: 64 - shards.trailing_zeros(),
        tables: Vec::new(),
        registry: Registry::default(),
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
        with_keys: version >= SNAPSHOT_VERSION,
    };
    let mut deserializer = postcard::Deserializer::from_bytes(payload);
    let read = TopSeed(&mut builder).deserialize(&mut deserializer);
    if let Some(error) = builder.error.take() {
        return Err(SnapshotError::Invalid(error));
    }
    match read {
        Ok(()) => {}
        Err(error) => return Err(DecodeError::Malformed(error.into()).into()),
    }
    match deserializer.finalize() {
        Ok([]) => {}
        Ok(rest) => {
            let trailing = MalformedPayload::TrailingBytes { count: rest.len() };
            return Err(DecodeError::Malformed(trailing).into());
        }
        Err(error) => return Err(DecodeError::Malformed(error.into()).into()),
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
    tables: Vec<LeaseCore>,
    /// The environments read so far; every core shares it once reading is done.
    registry: Registry,
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
    /// Whether the snapshot's format has environment keys and the item-secret key.
    with_keys: bool,
}

/// Records a semantic error and stops reading: `$builder.error` says why.
macro_rules! check {
    ($builder:expr, $result:expr) => {
        match $result {
            Ok(value) => value,
            Err(message) => {
                $builder.error = Some(message.into());
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
        let fields = if self.0.with_keys { 6 } else { 5 };
        deserializer.deserialize_tuple(fields, self)
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
        if builder.with_keys {
            let key: Option<[u8; 32]> = seq
                .next_element()?
                .ok_or_else(|| missing("item secret key"))?;
            if let Some(key) = key {
                for table in &mut builder.tables {
                    table.item_secret_key = Some(ItemSecretKey::from_bytes(key));
                }
            }
        }
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
        let fields = if self.0.with_keys { 6 } else { 5 };
        deserializer.deserialize_tuple(fields, self)
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
        let profile: WireProfile<'de> = seq.next_element()?.ok_or_else(|| missing("profile"))?;
        check!(builder, builder.set_profile(env, &profile));
        let pollers: Vec<(&str, i64)> = seq.next_element()?.ok_or_else(|| missing("pollers"))?;
        check!(builder, builder.set_pollers(env, &pollers));
        seq.next_element_seed(ItemsSeed(&mut *builder, env))?
            .ok_or_else(|| missing("items"))?;
        if builder.with_keys {
            let keys: Vec<WireKey<'de>> = seq.next_element()?.ok_or_else(|| missing("keys"))?;
            check!(builder, builder.set_keys(env, &keys));
        }
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
            .map(|_| LeaseCore::new(config, self.hasher.clone(), Arc::default()))
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
        let epoch = Timestamp::from_unix_micros(0);
        let env = self
            .registry
            .insert(registry::registered(id.clone(), kind.into(), epoch))
            .map_err(|e| e.to_string())?;
        debug_assert_eq!(env as usize, self.environments.len());
        for table in &mut self.tables {
            table.environments.push(Environment::default());
        }
        self.environments.push(id);
        self.previous_id = None;
        Ok(env)
    }

    fn set_profile(&mut self, env: u32, wire: &WireProfile<'_>) -> Result<(), String> {
        let mut metadata = Vec::with_capacity(wire.metadata.len());
        for pair in wire.metadata.windows(2) {
            if pair[0].0 >= pair[1].0 {
                return Err(format!(
                    "metadata keys {:?} and {:?} out of order",
                    pair[0].0, pair[1].0
                ));
            }
        }
        for &(key, value) in &wire.metadata {
            metadata.push((key.to_owned(), value.to_owned()));
        }
        let kind = self.registry.record(env).kind;
        let new = NewEnvironment {
            name: wire.name.to_owned(),
            kind,
            config: Some(wire.config.to_owned()),
            description: wire.description.map(str::to_owned),
            metadata: Metadata::from_map(metadata.into_iter().collect())
                .map_err(|e| e.to_string())?,
            scope: wire.scope.map(EnvironmentScope::from),
        };
        new.check().map_err(|e| e.to_string())?;
        let created_at = instant(wire.created_at)?;
        let updated_at = instant(wire.updated_at)?;
        let archived_at = wire.archived_at.map(instant).transpose()?;
        if updated_at < created_at
            || archived_at.is_some_and(|at| at < created_at || at > updated_at)
        {
            return Err(format!(
                "environment {:?} times out of order",
                self.environments[env as usize]
            ));
        }
        let mut record =
            registry::created(self.environments[env as usize].clone(), new, created_at);
        record.updated_at = updated_at;
        record.archived_at = archived_at;
        self.registry.replace(env, record);
        Ok(())
    }

    fn set_keys(&mut self, env: u32, wire: &[WireKey<'_>]) -> Result<(), String> {
        let mut keys = Vec::with_capacity(wire.len().min(crate::MAX_KEYS_PER_ENVIRONMENT));
        for key in wire {
            if keys.len() == crate::MAX_KEYS_PER_ENVIRONMENT {
                return Err("more environment keys than an environment holds".to_owned());
            }
            let id = EnvironmentKeyId::parse(key.id).map_err(|e| e.to_string())?;
            keys.push(EnvironmentKey::new(
                id,
                key.name.map(str::to_owned),
                KeyDigest::from_bytes(key.digest),
                instant(key.created_at)?,
            ));
        }
        let mut record = self.registry.record(env).clone();
        record.keys = EnvironmentKeys::restored(keys)?;
        self.registry.replace(env, record);
        Ok(())
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
            // A table applies every lapse due at its clock before it can be snapshotted (the
            // sharded one catches up first), so a lease due then was never written: restored,
            // it would lapse in one table kind's next snapshot and not the other's.
            if deadline <= clock {
                return Err(format!("{id:?} lease due at the clock, not lapsed"));
            }
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
        let registry = Arc::new(self.registry);
        for table in &mut self.tables {
            table.share_registry(Arc::clone(&registry));
        }
        for table in &self.tables {
            table
                .validate()
                .map_err(|violation| SnapshotError::Invalid(violation.to_string()))?;
        }
        Ok(Restored {
            cores: self.tables,
            clock: self.clock,
            config: self.config,
        })
    }
}
