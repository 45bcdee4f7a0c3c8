//! Every route the server serves, as a [`Route`]: its method and path pattern (from which the
//! router is built), its metric label, and whether a member that does not lead hands it to
//! the leader. Each of those is an exhaustive `match`, so a new route is counted, forwarded
//! (or not) and authenticated on purpose, never by a default.
//!
//! What the edge asks of a route on every request is `#[inline]`: the edge is another module,
//! and without it these small matches are calls across codegen units.

use axum::http::Method;

use crate::access::Opens;
use crate::raft::{ADMISSION_ROUTE, APPEND_ROUTE, SEED_ROUTE, SNAPSHOT_ROUTE, VOTE_ROUTE};

/// The API's two prefixes; every [`Pattern::Api`] route is served under both.
pub(crate) const PREFIXES: [&str; 2] = ["/api/v1/cloud", "/v1"];

/// Where a route is: under both [`PREFIXES`], or on the node itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// The path after a prefix; `{environment_id}` and `{work_id}` are path parameters.
    Api(&'static str),
    /// The whole path.
    Node(&'static str),
}

/// One route: one method on one path pattern (a few routes have two patterns).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Route {
    /// `POST /environments`.
    CreateEnvironment,
    /// `GET /environments`.
    ListEnvironments,
    /// `GET /environments/{environment_id}`.
    RetrieveEnvironment,
    /// `POST /environments/{environment_id}`.
    UpdateEnvironment,
    /// `DELETE /environments/{environment_id}`.
    DeleteEnvironment,
    /// `POST /environments/{environment_id}/archive`.
    ArchiveEnvironment,
    /// `POST /environments/{environment_id}/keys`.
    CreateEnvironmentKey,
    /// `GET /environments/{environment_id}/keys`.
    ListEnvironmentKeys,
    /// `DELETE /environments/{environment_id}/keys/{key_id}`.
    RevokeEnvironmentKey,
    /// `GET /environments/{environment_id}/work` (or `…/work/`).
    ListWork,
    /// `POST /environments/{environment_id}/work`.
    CreateWork,
    /// `GET …/work/poll`.
    Poll,
    /// `GET …/work/stats`.
    Stats,
    /// `GET …/work/{work_id}`.
    RetrieveWork,
    /// `POST …/work/{work_id}`: the item's metadata.
    UpdateWork,
    /// `POST …/work/{work_id}/ack`.
    Ack,
    /// `POST …/work/{work_id}/heartbeat`.
    Heartbeat,
    /// `POST …/work/{work_id}/stop`.
    Stop,
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `GET /cluster`.
    Cluster,
    /// `GET /metrics`.
    Metrics,
    /// `GET /cluster/members` (admin only).
    ListMembers,
    /// `POST /cluster/members` (admin only).
    AddMember,
    /// `DELETE /cluster/members/{node_id}` (admin only).
    RemoveMember,
    /// `GET /cluster/snapshot` (admin only): a backup.
    Backup,
    /// `GET /internal/digest`.
    Digest,
    /// Raft's append entries.
    RaftAppend,
    /// Raft's vote.
    RaftVote,
    /// Raft's snapshot installation.
    RaftSnapshot,
    /// A new member asks what the cluster knows of it.
    RaftAdmission,
    /// The lowest id in `--peers` seeds a new cluster.
    RaftSeed,
}

impl Route {
    /// Every route, once: the router registers exactly these.
    pub(crate) const ALL: [Self; 32] = [
        Self::CreateEnvironment,
        Self::ListEnvironments,
        Self::RetrieveEnvironment,
        Self::UpdateEnvironment,
        Self::DeleteEnvironment,
        Self::ArchiveEnvironment,
        Self::CreateEnvironmentKey,
        Self::ListEnvironmentKeys,
        Self::RevokeEnvironmentKey,
        Self::ListWork,
        Self::CreateWork,
        Self::Poll,
        Self::Stats,
        Self::RetrieveWork,
        Self::UpdateWork,
        Self::Ack,
        Self::Heartbeat,
        Self::Stop,
        Self::Healthz,
        Self::Readyz,
        Self::Cluster,
        Self::Metrics,
        Self::ListMembers,
        Self::AddMember,
        Self::RemoveMember,
        Self::Backup,
        Self::Digest,
        Self::RaftAppend,
        Self::RaftVote,
        Self::RaftSnapshot,
        Self::RaftAdmission,
        Self::RaftSeed,
    ];

    /// The method the route takes (a `GET` route answers `HEAD` too).
    pub(crate) fn method(self) -> Method {
        match self {
            Self::ListEnvironments
            | Self::RetrieveEnvironment
            | Self::ListEnvironmentKeys
            | Self::ListWork
            | Self::Poll
            | Self::Stats
            | Self::RetrieveWork
            | Self::Healthz
            | Self::Readyz
            | Self::Cluster
            | Self::Metrics
            | Self::ListMembers
            | Self::Backup
            | Self::Digest
            | Self::RaftAdmission => Method::GET,
            Self::CreateEnvironment
            | Self::UpdateEnvironment
            | Self::ArchiveEnvironment
            | Self::CreateEnvironmentKey
            | Self::CreateWork
            | Self::UpdateWork
            | Self::Ack
            | Self::Heartbeat
            | Self::Stop
            | Self::RaftAppend
            | Self::RaftVote
            | Self::RaftSnapshot
            | Self::AddMember
            | Self::RaftSeed => Method::POST,
            Self::DeleteEnvironment | Self::RevokeEnvironmentKey | Self::RemoveMember => {
                Method::DELETE
            }
        }
    }

    /// Where the route is.
    pub(crate) const fn patterns(self) -> &'static [Pattern] {
        match self {
            Self::CreateEnvironment | Self::ListEnvironments => &[Pattern::Api("/environments")],
            Self::RetrieveEnvironment | Self::UpdateEnvironment | Self::DeleteEnvironment => {
                &[Pattern::Api("/environments/{environment_id}")]
            }
            Self::ArchiveEnvironment => &[Pattern::Api("/environments/{environment_id}/archive")],
            Self::CreateEnvironmentKey | Self::ListEnvironmentKeys => {
                &[Pattern::Api("/environments/{environment_id}/keys")]
            }
            Self::RevokeEnvironmentKey => {
                &[Pattern::Api("/environments/{environment_id}/keys/{key_id}")]
            }
            Self::ListWork => &[
                Pattern::Api("/environments/{environment_id}/work"),
                Pattern::Api("/environments/{environment_id}/work/"),
            ],
            Self::CreateWork => &[Pattern::Api("/environments/{environment_id}/work")],
            Self::Poll => &[Pattern::Api("/environments/{environment_id}/work/poll")],
            Self::Stats => &[Pattern::Api("/environments/{environment_id}/work/stats")],
            Self::RetrieveWork | Self::UpdateWork => &[Pattern::Api(
                "/environments/{environment_id}/work/{work_id}",
            )],
            Self::Ack => &[Pattern::Api(
                "/environments/{environment_id}/work/{work_id}/ack",
            )],
            Self::Heartbeat => &[Pattern::Api(
                "/environments/{environment_id}/work/{work_id}/heartbeat",
            )],
            Self::Stop => &[Pattern::Api(
                "/environments/{environment_id}/work/{work_id}/stop",
            )],
            Self::Healthz => &[Pattern::Node("/healthz")],
            Self::Readyz => &[Pattern::Node("/readyz")],
            Self::Cluster => &[Pattern::Node("/cluster")],
            Self::Metrics => &[Pattern::Node("/metrics")],
            Self::ListMembers | Self::AddMember => &[Pattern::Node("/cluster/members")],
            Self::RemoveMember => &[Pattern::Node("/cluster/members/{node_id}")],
            Self::Backup => &[Pattern::Node("/cluster/snapshot")],
            Self::Digest => &[Pattern::Node("/internal/digest")],
            Self::RaftAppend => &[Pattern::Node(APPEND_ROUTE)],
            Self::RaftVote => &[Pattern::Node(VOTE_ROUTE)],
            Self::RaftSnapshot => &[Pattern::Node(SNAPSHOT_ROUTE)],
            Self::RaftAdmission => &[Pattern::Node(ADMISSION_ROUTE)],
            Self::RaftSeed => &[Pattern::Node(SEED_ROUTE)],
        }
    }

    /// Every path template the router registers for the route.
    pub(crate) fn paths(self) -> Vec<String> {
        self.patterns()
            .iter()
            .flat_map(|pattern| match *pattern {
                Pattern::Api(tail) => PREFIXES
                    .iter()
                    .map(|prefix| format!("{prefix}{tail}"))
                    .collect(),
                Pattern::Node(path) => vec![path.to_owned()],
            })
            .collect()
    }

    /// The route's `route` label in `worklease_http_requests_total`. Several routes share a
    /// label, as they did before routes were typed, so existing dashboards keep working.
    #[inline]
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Self::CreateEnvironment | Self::ListEnvironments => "create_environment",
            Self::RetrieveEnvironment
            | Self::UpdateEnvironment
            | Self::DeleteEnvironment
            | Self::ArchiveEnvironment
            | Self::CreateEnvironmentKey
            | Self::ListEnvironmentKeys
            | Self::RevokeEnvironmentKey => "other",
            Self::ListWork => "list",
            Self::CreateWork => "create_work",
            Self::Poll => "poll",
            Self::Stats => "stats",
            Self::RetrieveWork => "retrieve",
            Self::UpdateWork => "update_metadata",
            Self::Ack => "ack",
            Self::Heartbeat => "heartbeat",
            Self::Stop => "stop",
            Self::Healthz => "healthz",
            Self::Readyz => "readyz",
            Self::Cluster
            | Self::ListMembers
            | Self::AddMember
            | Self::RemoveMember
            | Self::Backup => "cluster",
            Self::Metrics => "metrics",
            Self::Digest
            | Self::RaftAppend
            | Self::RaftVote
            | Self::RaftSnapshot
            | Self::RaftAdmission
            | Self::RaftSeed => "internal",
        }
    }

    /// Whether a member that does not lead hands the request to the leader: every API route
    /// (reads too, so a client reads what it wrote) and the membership routes (the leader
    /// changes the membership), but not the node's own operations endpoints or Raft's
    /// routes, which are about this node.
    #[inline]
    pub(crate) const fn goes_to_leader(self) -> bool {
        match self {
            Self::CreateEnvironment
            | Self::ListEnvironments
            | Self::RetrieveEnvironment
            | Self::UpdateEnvironment
            | Self::DeleteEnvironment
            | Self::ArchiveEnvironment
            | Self::CreateEnvironmentKey
            | Self::ListEnvironmentKeys
            | Self::RevokeEnvironmentKey
            | Self::ListWork
            | Self::CreateWork
            | Self::Poll
            | Self::Stats
            | Self::RetrieveWork
            | Self::UpdateWork
            | Self::Ack
            | Self::Heartbeat
            | Self::Stop
            | Self::ListMembers
            | Self::AddMember
            | Self::RemoveMember
            | Self::Backup => true,
            Self::Healthz
            | Self::Readyz
            | Self::Cluster
            | Self::Metrics
            | Self::Digest
            | Self::RaftAppend
            | Self::RaftVote
            | Self::RaftSnapshot
            | Self::RaftAdmission
            | Self::RaftSeed => false,
        }
    }

    /// Whether the route answers without credentials: only the probes, which a load balancer
    /// or orchestrator calls without the token.
    #[inline]
    pub(crate) const fn is_open(self) -> bool {
        match self {
            Self::Healthz | Self::Readyz => true,
            Self::CreateEnvironment
            | Self::ListEnvironments
            | Self::RetrieveEnvironment
            | Self::UpdateEnvironment
            | Self::DeleteEnvironment
            | Self::ArchiveEnvironment
            | Self::CreateEnvironmentKey
            | Self::ListEnvironmentKeys
            | Self::RevokeEnvironmentKey
            | Self::ListWork
            | Self::CreateWork
            | Self::Poll
            | Self::Stats
            | Self::RetrieveWork
            | Self::UpdateWork
            | Self::Ack
            | Self::Heartbeat
            | Self::Stop
            | Self::Cluster
            | Self::Metrics
            | Self::ListMembers
            | Self::AddMember
            | Self::RemoveMember
            | Self::Backup
            | Self::Digest
            | Self::RaftAppend
            | Self::RaftVote
            | Self::RaftSnapshot
            | Self::RaftAdmission
            | Self::RaftSeed => false,
        }
    }
}

impl Route {
    /// What the route opens to environment keys and item secrets, for the credential check.
    #[inline]
    pub(crate) const fn opens(self) -> Opens {
        Opens {
            at_leader: self.goes_to_leader(),
            to_environment_keys: self.opens_to_environment_keys(),
            to_item_secrets: self.opens_to_item_secrets(),
        }
    }

    /// Whether an environment key opens the route in its own environment (docs/contract.md
    /// §10): what a runner does. Retrieving and updating work, creating it, environments and
    /// their keys, and the node's routes are the admin's.
    #[inline]
    pub(crate) const fn opens_to_environment_keys(self) -> bool {
        match self {
            Self::Poll
            | Self::Ack
            | Self::Heartbeat
            | Self::Stop
            | Self::ListWork
            | Self::Stats => true,
            Self::CreateEnvironment
            | Self::ListEnvironments
            | Self::RetrieveEnvironment
            | Self::UpdateEnvironment
            | Self::DeleteEnvironment
            | Self::ArchiveEnvironment
            | Self::CreateEnvironmentKey
            | Self::ListEnvironmentKeys
            | Self::RevokeEnvironmentKey
            | Self::CreateWork
            | Self::RetrieveWork
            | Self::UpdateWork
            | Self::Healthz
            | Self::Readyz
            | Self::Cluster
            | Self::Metrics
            | Self::Digest
            | Self::RaftAppend
            | Self::RaftVote
            | Self::RaftSnapshot
            | Self::ListMembers
            | Self::AddMember
            | Self::RemoveMember
            | Self::Backup
            | Self::RaftAdmission
            | Self::RaftSeed => false,
        }
    }

    /// Whether an item secret opens the route for its own item: heartbeat and stop only.
    #[inline]
    pub(crate) const fn opens_to_item_secrets(self) -> bool {
        match self {
            Self::Heartbeat | Self::Stop => true,
            Self::CreateEnvironment
            | Self::ListEnvironments
            | Self::RetrieveEnvironment
            | Self::UpdateEnvironment
            | Self::DeleteEnvironment
            | Self::ArchiveEnvironment
            | Self::CreateEnvironmentKey
            | Self::ListEnvironmentKeys
            | Self::RevokeEnvironmentKey
            | Self::ListWork
            | Self::CreateWork
            | Self::Poll
            | Self::Stats
            | Self::RetrieveWork
            | Self::UpdateWork
            | Self::Ack
            | Self::Healthz
            | Self::Readyz
            | Self::Cluster
            | Self::Metrics
            | Self::Digest
            | Self::RaftAppend
            | Self::RaftVote
            | Self::RaftSnapshot
            | Self::ListMembers
            | Self::AddMember
            | Self::RemoveMember
            | Self::Backup
            | Self::RaftAdmission
            | Self::RaftSeed => false,
        }
    }
}

/// The metric label of a request that matched no route.
pub(crate) const UNMATCHED: &str = "unmatched";
