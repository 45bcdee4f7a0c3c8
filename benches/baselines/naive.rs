//! The honest first draft: one `std::sync::Mutex` around a SipHash `HashMap` keyed by
//! `(String, String)`, chrono `DateTime<Utc>` fields, `String` ids in the value, a `BTreeMap`
//! expiry index keyed by `(DateTime<Utc>, (String, String))`, keys built per call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::{Beat, Leases};

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    Starting,
    Active,
    Stopped,
}

struct Lease {
    environment_id: String,
    work_id: String,
    state: State,
    last_heartbeat: Option<DateTime<Utc>>,
    deadline: Option<DateTime<Utc>>,
    ttl_seconds: u64,
}

type Key = (String, String);
type Expiry = BTreeMap<(DateTime<Utc>, Key), ()>;

#[derive(Default)]
struct Inner {
    leases: HashMap<Key, Lease>,
    expiry: Expiry,
    queued: BTreeMap<String, BTreeSet<String>>,
}

/// The naive baseline.
pub struct Naive(Mutex<Inner>);

fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).expect("in range")
}

impl Leases for Naive {
    type Token = DateTime<Utc>;
    const NAME: &'static str = "naive";

    fn new() -> Self {
        Self(Mutex::new(Inner::default()))
    }

    fn register(&self, env: &str) {
        self.0
            .lock()
            .expect("not poisoned")
            .queued
            .insert(env.to_string(), BTreeSet::new());
    }

    fn create(&self, env: &str, work: &str, _now: i64) {
        let mut inner = self.0.lock().expect("not poisoned");
        let lease = Lease {
            environment_id: env.to_string(),
            work_id: work.to_string(),
            state: State::Queued,
            last_heartbeat: None,
            deadline: None,
            ttl_seconds: 60,
        };
        inner
            .leases
            .insert((env.to_string(), work.to_string()), lease);
        inner
            .queued
            .get_mut(env)
            .expect("registered")
            .insert(work.to_string());
    }

    fn poll(&self, env: &str, _now: i64) -> Option<String> {
        let mut inner = self.0.lock().expect("not poisoned");
        inner.queued.get_mut(env)?.pop_first()
    }

    fn ack(&self, env: &str, work: &str, now: i64) -> bool {
        let now = time(now);
        let key = (env.to_string(), work.to_string());
        let mut inner = self.0.lock().expect("not poisoned");
        let inner = &mut *inner;
        let Some(lease) = inner.leases.get_mut(&key) else {
            return false;
        };
        if lease.state != State::Queued {
            return false;
        }
        if let Some(queue) = inner.queued.get_mut(env) {
            queue.remove(work);
        }
        let deadline = now + Duration::seconds(60);
        lease.state = State::Starting;
        lease.deadline = Some(deadline);
        lease.last_heartbeat = None;
        inner.expiry.insert((deadline, key), ());
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
        let now = time(now);
        let key = (env.to_string(), work.to_string());
        let mut inner = self.0.lock().expect("not poisoned");
        let inner = &mut *inner;
        let Some(lease) = inner.leases.get_mut(&key) else {
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
        if let Some(old) = lease.deadline {
            inner.expiry.remove(&(old, key.clone()));
        }
        inner.expiry.insert((deadline, key), ());
        lease.state = State::Active;
        lease.last_heartbeat = Some(token);
        lease.deadline = Some(deadline);
        lease.ttl_seconds = ttl;
        Ok(token)
    }

    fn stop(&self, env: &str, work: &str, _now: i64) {
        let key = (env.to_string(), work.to_string());
        let mut inner = self.0.lock().expect("not poisoned");
        let inner = &mut *inner;
        if let Some(lease) = inner.leases.get_mut(&key) {
            if let Some(old) = lease.deadline.take() {
                inner.expiry.remove(&(old, key.clone()));
            }
            if lease.state == State::Queued {
                if let Some(queue) = inner.queued.get_mut(env) {
                    queue.remove(work);
                }
            }
            lease.state = State::Stopped;
        }
    }

    fn sweep(&self, now: i64) -> (usize, u64) {
        let now = time(now);
        let started = Instant::now();
        let mut inner = self.0.lock().expect("not poisoned");
        let inner = &mut *inner;
        let mut count = 0;
        while let Some(entry) = inner.expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (_, key) = entry.remove_entry().0;
            let lease = inner.leases.get_mut(&key).expect("indexed");
            lease.state = State::Queued;
            lease.deadline = None;
            lease.last_heartbeat = None;
            inner
                .queued
                .get_mut(&lease.environment_id)
                .expect("registered")
                .insert(lease.work_id.clone());
            count += 1;
        }
        (count, started.elapsed().as_nanos() as u64)
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
