//! The Prometheus registry and the name of every metric (`GET /metrics`), rendered as
//! OpenMetrics text by `prometheus-client`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `worklease_http_requests_total` | counter | `route`, `status` |
//! | `worklease_heartbeats_total` | counter | `outcome` |
//! | `worklease_items` | gauge (at scrape) | `state` |
//! | `worklease_lapses_total` | counter | `to` |
//! | `worklease_forwarded_total` | counter | `outcome` |
//! | `worklease_credentials_refused_total` | counter | `reason` |
//! | `worklease_commit_latency_seconds` | histogram | — |
//! | `worklease_last_applied_index` | gauge | — |
//! | `worklease_log_syncs_total` | counter (read at scrape) | — |
//! | `worklease_read_rounds_total` | counter (read at scrape) | — |
//! | `worklease_raft_term`, `worklease_raft_leader_id` | gauge | — |

use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use worklease::{Error, WorkState};

use crate::raft::Status;

/// A request's labels: the route (an operation name, the same under both prefixes) and the
/// status code answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) route: &'static str,
    pub(crate) status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LapseLabels {
    to: &'static str,
}

/// Every state, in docs/contract.md §2's order; `worklease_items` reports each, zeros included.
pub(crate) const STATES: [WorkState; 5] = [
    WorkState::Queued,
    WorkState::Starting,
    WorkState::Active,
    WorkState::Stopping,
    WorkState::Stopped,
];

/// How a forwarded request can end (`worklease_forwarded_total`'s `outcome`).
pub(crate) const FORWARD_OUTCOMES: [&str; 3] = ["answered", "replayed", "unavailable"];

/// Why a credential was refused (`worklease_credentials_refused_total`'s `reason`,
/// `crate::access::Refusal::reason`, and [`NOT_A_MEMBER`]).
pub(crate) const REFUSAL_REASONS: [&str; 6] = [
    "missing",
    "malformed",
    "unknown",
    "out_of_scope",
    "stale_delivery",
    NOT_A_MEMBER,
];

/// The refusal of a call on the members' own routes (`/internal/…`) without this member's
/// cluster secret (401).
pub(crate) const NOT_A_MEMBER: &str = "not_a_member";

/// Every route label the edge counts requests under (`crate::http::route::Route::label`, and
/// `unmatched`), the heartbeat first: [`Metrics::request`] looks a route up here, in order.
pub(crate) const ROUTES: [&str; 17] = [
    "heartbeat",
    "ack",
    "poll",
    "stop",
    "retrieve",
    "update_metadata",
    "list",
    "create_work",
    "stats",
    "create_environment",
    "healthz",
    "readyz",
    "cluster",
    "metrics",
    "internal",
    "other",
    "unmatched",
];

/// The heartbeat outcomes counted, each a pre-registered counter (one atomic add per beat).
#[derive(Debug)]
struct HeartbeatOutcomes {
    accepted: Counter,
    precondition_failed: Counter,
    conflict: Counter,
    not_found: Counter,
    bad_request: Counter,
}

/// The registry and a handle on each metric.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// Each route's series for status 200 in `requests`, once it exists: counting through the
    /// family hashes the labels and takes its lock, ~340 instructions a request (callgrind,
    /// scripts/request-instructions.sh). Created on first use, so a scrape shows only the
    /// series that were counted, as before.
    answered_ok: [OnceLock<Counter>; ROUTES.len()],
    heartbeats: HeartbeatOutcomes,
    items: Family<StateLabels, Gauge>,
    lapses: Family<LapseLabels, Counter>,
    forwarded: Family<OutcomeLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    commit_latency: Histogram,
    last_applied: Gauge,
    /// `worklease_log_syncs_total`: the log's own count (`Status::log_syncs`).
    log_syncs: ScrapedCounter,
    /// `worklease_read_rounds_total`: the leader's confirmation rounds for reads
    /// (`Status::read_rounds`).
    read_rounds: ScrapedCounter,
    term: Gauge,
    leader: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "worklease_http_requests",
            "HTTP requests answered, by route and status code",
            requests.clone(),
        );
        let heartbeat_family = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "worklease_heartbeats",
            "Heartbeats by outcome: accepted, precondition_failed (412), conflict (409), \
             not_found (404), bad_request (400)",
            heartbeat_family.clone(),
        );
        let outcome = |outcome| {
            heartbeat_family
                .get_or_create(&OutcomeLabels { outcome })
                .clone()
        };
        let heartbeats = HeartbeatOutcomes {
            accepted: outcome("accepted"),
            precondition_failed: outcome("precondition_failed"),
            conflict: outcome("conflict"),
            not_found: outcome("not_found"),
            bad_request: outcome("bad_request"),
        };
        let items = Family::<StateLabels, Gauge>::default();
        registry.register(
            "worklease_items",
            "Work items by state (starting, active and stopping ones hold a lease), counted at scrape",
            items.clone(),
        );
        let lapses = Family::<LapseLabels, Counter>::default();
        registry.register(
            "worklease_lapses",
            "Leases that lapsed, by the state the item went to (queued, or stopped)",
            lapses.clone(),
        );
        for to in ["queued", "stopped"] {
            // Registered at zero, so a scrape shows both series before the first lapse.
            drop(lapses.get_or_create(&LapseLabels { to }));
        }
        let forwarded = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "worklease_forwarded",
            "Requests this member forwarded to the leader, by how they were answered: answered \
             (the leader's answer), replayed (the forward broke and a replay was answered), \
             unavailable (503 to the client)",
            forwarded.clone(),
        );
        for outcome in FORWARD_OUTCOMES {
            drop(forwarded.get_or_create(&OutcomeLabels { outcome }));
        }
        let refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "worklease_credentials_refused",
            "Requests refused for their credential, by reason: missing, malformed, unknown \
             (401), out_of_scope, stale_delivery (403), not_a_member (401 on a member's own \
             routes); the credential itself is never recorded",
            refused.clone(),
        );
        for reason in REFUSAL_REASONS {
            drop(refused.get_or_create(&ReasonLabels { reason }));
        }
        // 1 µs to ~4 s: an in-memory apply takes microseconds; a durable commit milliseconds.
        let commit_latency = Histogram::new(exponential_buckets(1e-6, 4.0, 12));
        registry.register(
            "worklease_commit_latency_seconds",
            "Time from receiving a changing command to its being applied (in memory: the apply)",
            commit_latency.clone(),
        );
        let last_applied = Gauge::default();
        registry.register(
            "worklease_last_applied_index",
            "Commands applied to the table (a log index in durable modes)",
            last_applied.clone(),
        );
        let log_syncs = ScrapedCounter::default();
        registry.register(
            "worklease_log_syncs",
            "fdatasync calls on the write-ahead log: one per frame written, each frame a batch \
             of entries, a vote, a truncation or a purge (0 in memory). Not counted: syncs of \
             snapshot files, of new log segments and of the data directory",
            log_syncs.counter.clone(),
        );
        let read_rounds = ScrapedCounter::default();
        registry.register(
            "worklease_read_rounds",
            "Rounds in which this node, leading a cluster, confirmed with a majority that it \
             still leads before answering reads; concurrent reads share one (0 in memory and \
             for a single member)",
            read_rounds.counter.clone(),
        );
        let term = Gauge::default();
        registry.register(
            "worklease_raft_term",
            "The cluster's term (0 in memory)",
            term.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "worklease_raft_leader_id",
            "The node id of the leader, 0 while none is known (this node, 1, in memory)",
            leader.clone(),
        );
        Self {
            registry,
            requests,
            answered_ok: std::array::from_fn(|_| OnceLock::new()),
            heartbeats,
            items,
            lapses,
            forwarded,
            refused,
            commit_latency,
            last_applied,
            log_syncs,
            read_rounds,
            term,
            leader,
        }
    }

    /// One answered request.
    pub(crate) fn request(&self, route: &'static str, status: u16) {
        if status == 200 {
            if let Some(index) = ROUTES.iter().position(|known| *known == route) {
                self.answered_ok[index]
                    .get_or_init(|| {
                        self.requests
                            .get_or_create(&RequestLabels { route, status })
                            .clone()
                    })
                    .inc();
                return;
            }
        }
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
    }

    /// One request refused for its credential, for `reason` (one of [`REFUSAL_REASONS`]).
    pub(crate) fn credential_refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// One request forwarded to the leader, answered as `outcome` (one of
    /// [`FORWARD_OUTCOMES`]).
    pub(crate) fn forwarded(&self, outcome: &'static str) {
        self.forwarded
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// One heartbeat the table answered: accepted (`None`) or refused.
    pub(crate) fn heartbeat(&self, refusal: Option<&Error>) {
        let counter = match refusal {
            None => &self.heartbeats.accepted,
            Some(error) => match error.status() {
                412 => &self.heartbeats.precondition_failed,
                409 => &self.heartbeats.conflict,
                404 => &self.heartbeats.not_found,
                _ => &self.heartbeats.bad_request,
            },
        };
        counter.inc();
    }

    /// A heartbeat refused by the parameter parsers, before the table saw it.
    pub(crate) fn heartbeat_refused_early(&self) {
        self.heartbeats.bad_request.inc();
    }

    /// One lapse, to `to` (queued or stopped).
    pub(crate) fn lapse(&self, to: WorkState) {
        self.lapses
            .get_or_create(&LapseLabels { to: to.as_str() })
            .inc();
    }

    /// How long one command took to apply.
    pub(crate) fn commit(&self, took: Duration) {
        self.commit_latency.observe(took.as_secs_f64());
    }

    /// The registry as OpenMetrics text, with the values read at scrape time: the items by
    /// state, and this node's `status`.
    pub(crate) fn render(&self, items: [usize; 5], status: &Status) -> String {
        for (state, count) in STATES.iter().zip(items) {
            self.items
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.last_applied
            .set(i64::try_from(status.last_applied_index).unwrap_or(i64::MAX));
        self.log_syncs.catch_up(status.log_syncs);
        self.read_rounds.catch_up(status.read_rounds);
        self.term
            .set(i64::try_from(status.term).unwrap_or(i64::MAX));
        // 0: no leader known.
        self.leader.set(
            status
                .leader_id
                .map_or(0, |id| i64::try_from(id).unwrap_or(i64::MAX)),
        );
        let mut text = String::new();
        // Writing into a String cannot fail; an error here would be a bug in the encoder.
        encode(&mut text, &self.registry).expect("invariant: encoding into a String succeeds");
        text
    }
}

/// A counter whose count is kept elsewhere (the log, the read rounds) and read at each
/// scrape: the difference from the counter's value is added. A `Counter` only goes up, so the
/// difference is what moves it to the count; a custom collector would need a handle on the
/// log, which is built after these metrics (and is handed to [`Metrics::render`] like every
/// other value read at scrape). The mutex makes read-difference-add one step, so two scrapes
/// at once cannot both add the same difference.
#[derive(Debug, Default)]
struct ScrapedCounter {
    counter: Counter,
    update: Mutex<()>,
}

impl ScrapedCounter {
    /// Moves the counter up to `count`, which only grows while the process runs.
    fn catch_up(&self, count: u64) {
        let _update = self.update.lock();
        self.counter
            .inc_by(count.saturating_sub(self.counter.get()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(log_syncs: u64, read_rounds: u64) -> Status {
        Status {
            node_id: 1,
            leader_id: Some(1),
            term: 1,
            role: "leader",
            last_applied_index: 0,
            log_syncs,
            read_rounds,
        }
    }

    fn value<'a>(text: &'a str, name: &str) -> &'a str {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name}:\n{text}"))
    }

    #[test]
    fn counts_kept_elsewhere_follow_their_count_read_at_each_scrape() {
        let metrics = Metrics::new();
        for (syncs, rounds) in [(0, 0), (7, 3), (7, 3), (12, 40)] {
            let text = metrics.render([0; 5], &status(syncs, rounds));
            assert_eq!(value(&text, "worklease_log_syncs_total"), syncs.to_string());
            assert_eq!(
                value(&text, "worklease_read_rounds_total"),
                rounds.to_string()
            );
        }
        let text = metrics.render([0; 5], &status(12, 40));
        for name in ["worklease_log_syncs", "worklease_read_rounds"] {
            assert!(text.contains(&format!("# TYPE {name} counter")), "{text}");
        }
    }
}
