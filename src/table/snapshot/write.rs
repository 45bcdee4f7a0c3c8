//! Writing: one or many shards as one canonical snapshot (see [`crate::snapshot`] for the
//! layout).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::ser::{SerializeSeq, SerializeTuple};
use serde::{Serialize, Serializer};

use crate::ids::{BodyRef, WorkerId};
use crate::item::{Item, Phase, Transition};
use crate::lease_core::LeaseCore;
use crate::outcome::Config;
use crate::snapshot::{
    delta, frame, WireConfig, WireId, WireItem, WireKey, WireKind, WireLease, WirePhase,
    WireProfile, WireScope, WireTransition, SNAPSHOT_MAGIC, SNAPSHOT_VERSION,
};
use crate::time::Timestamp;
use crate::ttl::Ttl;
use crate::workers::WorkerRef;

/// Bytes a leased item takes, roughly: the first guess of a snapshot's length.
const BYTES_PER_ITEM: usize = 64;
/// The canonical snapshot of `tables`, the cores of one table (one for a [`crate::LeaseTable`]),
/// each with no lapse due at `clock` left unapplied. Pollers are read from the first.
pub(crate) fn encode(tables: &[&LeaseCore], config: Config, clock: Option<Timestamp>) -> Vec<u8> {
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
    let registry = &first.registry;
    let mut environments: Vec<u32> = registry.iter().map(|(env, _)| env).collect();
    environments.sort_unstable_by(|&a, &b| registry.text(a).cmp(registry.text(b)));
    let mut positions = vec![0u32; registry.slots()];
    for (position, &env) in environments.iter().enumerate() {
        positions[env as usize] = position as u32;
    }
    let mut journal: Vec<&Transition> = tables.iter().flat_map(|t| &t.journal).collect();
    journal.sort_unstable_by(|a, b| (a.at, &a.work_id).cmp(&(b.at, &b.work_id)));
    let index_of_env = |transition: &Transition| {
        let env = registry
            .find(&transition.environment_id)
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
    tables: &'t [&'t LeaseCore],
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
        let mut top = serializer.serialize_tuple(6)?;
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
        let item_secret_key = self.tables[0].item_secret_key.map(|key| *key.as_bytes());
        top.serialize_element(&item_secret_key)?;
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
        let record = first.registry.record(self.env);
        let mut pollers: Vec<(&str, i64)> = environment
            .pollers()
            .map(|(worker, at)| (worker.as_str(), at.unix_micros()))
            .collect();
        pollers.sort_unstable();
        let profile = record;
        let wire_profile = WireProfile {
            name: &profile.name,
            config: &profile.config,
            description: profile.description.as_deref(),
            metadata: profile.metadata.iter().collect(),
            scope: profile.scope.map(WireScope::from),
            created_at: profile.created_at.unix_micros(),
            updated_at: profile.updated_at.unix_micros(),
            archived_at: profile.archived_at.map(Timestamp::unix_micros),
        };
        let key_ids: Vec<String> = profile.keys.iter().map(|key| key.id.to_string()).collect();
        let keys: Vec<WireKey<'_>> = profile
            .keys
            .iter()
            .zip(&key_ids)
            .map(|(key, id)| WireKey {
                id,
                name: key.name.as_deref(),
                digest: *key.digest.as_bytes(),
                created_at: key.created_at.unix_micros(),
            })
            .collect();
        let mut tuple = serializer.serialize_tuple(6)?;
        tuple.serialize_element(first.registry.text(self.env))?;
        tuple.serialize_element(&WireKind::from(record.kind))?;
        tuple.serialize_element(&wire_profile)?;
        tuple.serialize_element(&pollers)?;
        tuple.serialize_element(&ItemsOut {
            out: self.out,
            env: self.env,
        })?;
        tuple.serialize_element(&keys)?;
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
    table: &'a LeaseCore,
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
