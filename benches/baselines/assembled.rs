//! What a competent user assembles from crates in an afternoon: a `dashmap` keyed by the work
//! id (`Arc<str>`, looked up by `&str` without allocating) with foldhash, chrono times, and a
//! `Mutex<BTreeMap>` expiry index whose keys share the id's `Arc`. Ids are not validated
//! (only compared as text), which is cheaper than worklease's parsing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use dashmap::DashMap;

use super::{Beat, Leases};

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    Starting,
    Active,
    Stopped,
}

type Expiry = BTreeMap<(DateTime<Utc>, Arc<str>), ()>;

struct Lease {
    id: Arc<str>,
    state: State,
    last_heartbeat: Option<DateTime<Utc>>,
    deadline: Option<DateTime<Utc>>,
    ttl_seconds: u64,
}

/// The assembled baseline (one environment's worth of state per table is enough for the
/// workloads; the environment is checked by name).
pub struct Assembled {
    /// The one environment; every call checks it, as a 404 for a wrong one requires.
    env: OnceLock<Box<str>>,
    leases: DashMap<Arc<str>, Lease, foldhash::fast::RandomState>,
    expiry: Mutex<Expiry>,
    queued: Mutex<BTreeSet<Arc<str>>>,
}

fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).expect("in range")
}

impl Leases for Assembled {
    type Token = DateTime<Utc>;
    const NAME: &'static str = "assembled";

    fn new() -> Self {
        Self {
            env: OnceLock::new(),
            leases: DashMap::default(),
            expiry: Mutex::new(BTreeMap::new()),
            queued: Mutex::new(BTreeSet::new()),
        }
    }

    fn register(&self, env: &str) {
        self.env.set(env.into()).expect("one environment");
    }

    fn create(&self, _env: &str, work: &str, _now: i64) {
        let id: Arc<str> = Arc::from(work);
        self.leases.insert(
            id.clone(),
            Lease {
                id: id.clone(),
                state: State::Queued,
                last_heartbeat: None,
                deadline: None,
                ttl_seconds: 60,
            },
        );
        self.queued.lock().expect("not poisoned").insert(id);
    }

    fn poll(&self, _env: &str, _now: i64) -> Option<String> {
        self.queued
            .lock()
            .expect("not poisoned")
            .pop_first()
            .map(|id| id.to_string())
    }

    fn ack(&self, env: &str, work: &str, now: i64) -> bool {
        if self.env.get().map(|e| &**e) != Some(env) {
            return false;
        }
        let Some(mut lease) = self.leases.get_mut(work) else {
            return false;
        };
        if lease.state != State::Queued {
            return false;
        }
        self.queued.lock().expect("not poisoned").remove(work);
        let deadline = time(now) + Duration::seconds(60);
        lease.state = State::Starting;
        lease.deadline = Some(deadline);
        lease.last_heartbeat = None;
        self.expiry
            .lock()
            .expect("not poisoned")
            .insert((deadline, lease.id.clone()), ());
        true
    }

    fn heartbeat(
        &self,
        env: &str,
        work: &str,
        expected: Option<DateTime<Utc>>,
        ttl: u64,
        now: i64,
    ) -> Beat<DateTime<Utc>> {
        if self.env.get().map(|e| &**e) != Some(env) {
            return Err(404);
        }
        let now = time(now);
        let Some(mut lease) = self.leases.get_mut(work) else {
            return Err(404);
        };
        if !matches!(lease.state, State::Starting | State::Active) {
            return Err(409);
        }
        if lease.last_heartbeat != expected {
            return Err(412);
        }
        let token = match lease.last_heartbeat {
            Some(previous) if previous >= now => previous + Duration::microseconds(1),
            _ => now,
        };
        let deadline = token + Duration::seconds(ttl as i64);
        {
            let mut expiry = self.expiry.lock().expect("not poisoned");
            if let Some(old) = lease.deadline {
                expiry.remove(&(old, lease.id.clone()));
            }
            expiry.insert((deadline, lease.id.clone()), ());
        }
        lease.state = State::Active;
        lease.last_heartbeat = Some(token);
        lease.deadline = Some(deadline);
        lease.ttl_seconds = ttl;
        Ok(token)
    }

    fn stop(&self, _env: &str, work: &str, _now: i64) {
        if let Some(mut lease) = self.leases.get_mut(work) {
            if let Some(old) = lease.deadline.take() {
                self.expiry
                    .lock()
                    .expect("not poisoned")
                    .remove(&(old, lease.id.clone()));
            }
            if lease.state == State::Queued {
                self.queued.lock().expect("not poisoned").remove(work);
            }
            lease.state = State::Stopped;
        }
    }

    fn sweep(&self, now: i64) -> (usize, u64) {
        let now = time(now);
        let started = Instant::now();
        let mut due = Vec::new();
        {
            let mut expiry = self.expiry.lock().expect("not poisoned");
            while let Some(entry) = expiry.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove_entry().0);
            }
        }
        let longest = started.elapsed().as_nanos() as u64;
        for (deadline, id) in &due {
            if let Some(mut lease) = self.leases.get_mut(&**id) {
                if lease.deadline == Some(*deadline) {
                    lease.state = State::Queued;
                    lease.deadline = None;
                    lease.last_heartbeat = None;
                    self.queued.lock().expect("not poisoned").insert(id.clone());
                }
            }
        }
        (due.len(), longest)
    }

    fn parse_token(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    fn format_token(token: DateTime<Utc>, out: &mut [u8; 27]) {
        let text = token.to_rfc3339_opts(SecondsFormat::Micros, true);
        out.copy_from_slice(text.as_bytes());
    }
}
