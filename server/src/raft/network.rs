//! Raft RPC between members: HTTP POSTs of `rpc` bytes to the internal routes of each member's
//! own listener (`/internal/raft/…`, `crate::http::internal`), authenticated with the cluster
//! secret ([`Links::member_call`], which forwarded requests go through too). A one-member
//! cluster never sends anything. With TLS on, members call each other over
//! HTTPS and check each other's certificate ([`Links::over_tls`]).

use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(any(test, feature = "testing"))]
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use worklease::Timestamp;

use super::{rpc, NodeId, TypeConfig};
use crate::clock::Clock;
use crate::cluster_secret::{self, ClusterSecret};

/// The internal routes, under each member's address.
pub(crate) const APPEND_ROUTE: &str = "/internal/raft/append";
pub(crate) const VOTE_ROUTE: &str = "/internal/raft/vote";
pub(crate) const SNAPSHOT_ROUTE: &str = "/internal/raft/snapshot";
/// Carries the sender's table configuration fingerprint on every RPC.
pub(crate) const CONFIG_HEADER: &str = "x-worklease-table-config";
/// Carries the leader's time on the table's timeline (Unix µs) on every append, heartbeats
/// included, so every member keeps a live view of that timeline without a log entry
/// (`crate::clock`).
pub(crate) const TABLE_TIME_HEADER: &str = "x-worklease-table-time";

/// What every connection of this node shares: one HTTP client (its connection pool), the
/// cluster secret, and (feature `testing`) switches that cut this node off from the others
/// (tests isolate a leader with them without stopping the process).
#[derive(Debug)]
pub(crate) struct Links {
    client: reqwest::Client,
    /// Sent on every call to another member (`None` only in a one-member cluster, which calls
    /// nobody).
    cluster_secret: Option<ClusterSecret>,
    /// Paces the error about a member refusing this member's cluster secret, per member.
    refused: parking_lot::Mutex<std::collections::BTreeMap<NodeId, crate::tls::Throttle>>,
    #[cfg(any(test, feature = "testing"))]
    cut: AtomicBool,
    /// Members this node's RPCs do not reach, a bit per id (ids below 64; tests split a
    /// cluster with it: cutting both directions between two members partitions them).
    #[cfg(any(test, feature = "testing"))]
    cut_from: AtomicU64,
    /// This member's table configuration fingerprints (`super::fingerprint`).
    config_tag: String,
    /// A refusal for a different configuration was logged already.
    mismatch_logged: AtomicBool,
    /// Tests: how many more forwarded requests reach the leader but lose their answers.
    #[cfg(any(test, feature = "testing"))]
    drop_answers: AtomicU32,
    /// This node's clock: a leader's appends carry its time on the table's timeline.
    clock: Arc<Clock>,
    /// `http`, or `https` once [`Links::over_tls`].
    scheme: &'static str,
    /// Paces the warning about a member whose certificate is not trusted.
    untrusted: crate::tls::Throttle,
}

impl Links {
    pub(crate) fn new(
        cluster_secret: Option<ClusterSecret>,
        config_tag: String,
        clock: Arc<Clock>,
    ) -> Self {
        Self {
            client: http_client(None),
            cluster_secret,
            refused: parking_lot::Mutex::default(),
            #[cfg(any(test, feature = "testing"))]
            cut: AtomicBool::new(false),
            #[cfg(any(test, feature = "testing"))]
            cut_from: AtomicU64::new(0),
            config_tag,
            mismatch_logged: AtomicBool::new(false),
            #[cfg(any(test, feature = "testing"))]
            drop_answers: AtomicU32::new(0),
            clock,
            scheme: "http",
            untrusted: crate::tls::Throttle::default(),
        }
    }

    /// The same links, calling the members (Raft RPCs and forwarded requests) over HTTPS and
    /// trusting what `tls` trusts.
    pub(crate) fn over_tls(self, tls: rustls::ClientConfig) -> Self {
        Self {
            client: http_client(Some(tls)),
            scheme: "https",
            ..self
        }
    }

    /// Logs (paced) why a member could not be reached when TLS is why.
    pub(crate) fn log_tls_failure(&self, target: NodeId, error: &reqwest::Error) {
        if let Some(cause) = crate::tls::rustls_cause(error) {
            if self.untrusted.allows() {
                tracing::warn!(
                    node = target,
                    error = %cause,
                    "cannot reach a member over TLS: does its certificate come from the CA in \
                     --tls-ca (or the system's roots), name its address, and is it still valid?"
                );
            }
        }
    }

    /// [`Self::log_tls_failure`] for a member known by its address only (a new member asking
    /// the ones in its `--peers`).
    pub(crate) fn log_tls_failure_at(&self, address: &str, error: &reqwest::Error) {
        if let Some(cause) = crate::tls::rustls_cause(error) {
            if self.untrusted.allows() {
                tracing::warn!(
                    %address,
                    error = %cause,
                    "cannot reach a member over TLS: does its certificate come from the CA in \
                     --tls-ca (or the system's roots), name its address, and is it still valid?"
                );
            }
        }
    }

    /// Whether the answer of this forwarded request is thrown away (a fault injector: the
    /// leader applied the change, the follower never hears back).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn drops_answers(&self) -> bool {
        self.drop_answers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Outside the crate's own tests and feature `testing`, no answer is thrown away.
    #[cfg(not(any(test, feature = "testing")))]
    pub(crate) fn drops_answers(&self) -> bool {
        false
    }

    /// Throws away the answers of the next `count` forwarded requests.
    #[cfg(any(test, feature = "testing"))]
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn drop_answers(&self, count: u32) {
        self.drop_answers.store(count, Ordering::Relaxed);
    }

    /// Whether an RPC's sender (whose fingerprints are `theirs`) applies commands under this
    /// member's table configuration. The first mismatch is logged here, with both
    /// fingerprints; the refusal the sender gets names neither (this member's configuration
    /// is its operator's to read, not a caller's).
    pub(crate) fn same_config(&self, theirs: Option<&str>) -> Result<(), String> {
        let disagreement = match super::fingerprint::agree(&self.config_tag, theirs) {
            Ok(()) => return Ok(()),
            Err(disagreement) => disagreement,
        };
        let advice = "start every member with the same --default-ttl-seconds and \
                      --max-attempts (a data directory keeps the configuration it was created \
                      with)";
        if !self.mismatch_logged.swap(true, Ordering::Relaxed) {
            tracing::error!(
                theirs = theirs.unwrap_or("none"),
                ours = %self.config_tag,
                "a member's table configuration differs from this member's: {disagreement}; \
                 refusing its Raft messages: {advice}"
            );
        }
        Err(format!(
            "refused by the receiving member: {disagreement}; {advice}; its log names both"
        ))
    }

    /// A call to the member at `address` (`HOST:PORT`, a host name resolved when a connection
    /// is made): `path` on its listener, over this member's scheme, carrying the cluster secret
    /// and this member's table configuration. Every call one member makes to another (Raft's
    /// RPCs, forwarded requests, admission and liveness questions) is built here, so none goes
    /// without the secret.
    pub(crate) fn member_call(
        &self,
        method: reqwest::Method,
        address: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let call = self
            .client
            .request(method, format!("{}://{address}{path}", self.scheme))
            .header(CONFIG_HEADER, &self.config_tag);
        match &self.cluster_secret {
            Some(secret) => call.header(cluster_secret::HEADER, secret.as_str()),
            None => call,
        }
    }

    /// Logs (paced) that member `peer` refused an internal call's credentials: its cluster
    /// secret is not this member's.
    pub(crate) fn log_refused_secret(&self, peer: NodeId, status: reqwest::StatusCode) {
        if self.refused.lock().entry(peer).or_default().allows() {
            tracing::error!(
                peer,
                %status,
                "peer {peer} refused our cluster secret: every member must be started with the \
                 same --cluster-secret (WORKLEASE_CLUSTER_SECRET)"
            );
        }
    }

    /// Cut off: nothing leaves, and RPCs arriving are refused.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }

    /// Outside the crate's own tests and feature `testing`, never cut off.
    #[cfg(not(any(test, feature = "testing")))]
    pub(crate) fn is_cut(&self) -> bool {
        false
    }

    /// Cuts this node off from the others, or joins it back (a fault injector for tests).
    #[cfg(any(test, feature = "testing"))]
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::Relaxed);
    }

    /// Stops this node's RPCs to `peer`, or lets them through again (a fault injector for
    /// tests; answers travel with their requests, so cutting both directions partitions two
    /// members).
    #[cfg(any(test, feature = "testing"))]
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn set_cut_from(&self, peer: NodeId, cut: bool) {
        let bit = 1u64 << (peer % 64);
        if cut {
            self.cut_from.fetch_or(bit, Ordering::Relaxed);
        } else {
            self.cut_from.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    /// Whether this node's RPCs reach `peer` (not cut by [`Self::set_cut`] or
    /// [`Self::set_cut_from`]).
    #[cfg(any(test, feature = "testing"))]
    fn reaches(&self, peer: NodeId) -> bool {
        !self.is_cut() && self.cut_from.load(Ordering::Relaxed) & (1u64 << (peer % 64)) == 0
    }

    /// Outside the crate's own tests and feature `testing`, every member is reached.
    #[cfg(not(any(test, feature = "testing")))]
    fn reaches(&self, _peer: NodeId) -> bool {
        true
    }
}

/// The client members call each other with: plain HTTP, or HTTPS trusting what `tls` trusts.
fn http_client(tls: Option<rustls::ClientConfig>) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true);
    match tls {
        None => builder.build(),
        Some(tls) => builder.use_preconfigured_tls(tls).build(),
    }
    .expect("invariant: an HTTP client with a rustls configuration builds")
}

/// Makes a connection per member, each an address and the shared [`Links`].
#[derive(Debug, Clone)]
pub(crate) struct Network(pub(crate) Arc<Links>);

/// A connection to one member.
#[derive(Debug)]
pub(crate) struct Peer {
    target: NodeId,
    address: String,
    links: Arc<Links>,
}

/// Why an RPC got no answer.
enum Failure {
    /// Not reachable at all (cut off, connection refused): openraft backs off.
    Unreachable(std::io::Error),
    /// Reached, but no usable answer.
    Network(std::io::Error),
    /// The member's Raft answered with an error of its own.
    Remote(NodeId, Box<Fatal<NodeId>>),
}

impl Failure {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        match self {
            Self::Unreachable(error) => RPCError::Unreachable(Unreachable::new(&error)),
            Self::Network(error) => RPCError::Network(NetworkError::new(&error)),
            Self::Remote(target, fatal) => {
                RPCError::RemoteError(RemoteError::new(target, RaftError::Fatal(*fatal)))
            }
        }
    }
}

impl Peer {
    /// POSTs `body` to `route` on the member and returns the answer's bytes.
    async fn call(
        &self,
        route: &str,
        body: Vec<u8>,
        timeout: Duration,
        table_time: Option<Timestamp>,
    ) -> Result<Vec<u8>, Failure> {
        if !self.links.reaches(self.target) {
            return Err(Failure::Unreachable(std::io::Error::other(format!(
                "node {}: this node is cut off from it",
                self.target
            ))));
        }
        let mut request = self
            .links
            .member_call(reqwest::Method::POST, &self.address, route)
            .header("content-type", "application/octet-stream")
            .timeout(timeout)
            .body(body);
        if let Some(at) = table_time {
            request = request.header(TABLE_TIME_HEADER, at.unix_micros().to_string());
        }
        let response = request.send().await.map_err(|error| {
            self.links.log_tls_failure(self.target, &error);
            let io = std::io::Error::other(format!("node {}: {error}", self.target));
            if error.is_connect() {
                Failure::Unreachable(io)
            } else {
                Failure::Network(io)
            }
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            self.links.log_refused_secret(self.target, status);
        }
        let response_is_raft_error = response.headers().contains_key(rpc::RAFT_ERROR_HEADER);
        let bytes = response.bytes().await.map_err(|error| {
            Failure::Network(std::io::Error::other(format!(
                "node {}: {error}",
                self.target
            )))
        })?;
        if response_is_raft_error {
            return Err(match rpc::decode_fatal(&bytes) {
                Ok(fatal) => Failure::Remote(self.target, Box::new(fatal)),
                Err(error) => self.undecodable(&error),
            });
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            let error =
                std::io::Error::other(format!("node {} answered {status}: {text}", self.target));
            // A member that takes no messages now (new and not let in yet, cut off, stopping):
            // openraft backs off instead of asking again at once.
            return Err(if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                Failure::Unreachable(error)
            } else {
                Failure::Network(error)
            });
        }
        Ok(bytes.to_vec())
    }

    fn undecodable(&self, error: &super::codec::CodecError) -> Failure {
        Failure::Network(std::io::Error::other(format!(
            "node {}: {error}",
            self.target
        )))
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        Peer {
            target,
            address: node.addr.clone(),
            links: self.0.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let bytes = self
            .call(
                APPEND_ROUTE,
                rpc::encode_append(&rpc),
                option.hard_ttl(),
                Some(self.links.clock.now_in_term(rpc.vote.leader_id.term)),
            )
            .await
            .map_err(Failure::into_rpc)?;
        rpc::decode_append_response(&bytes).map_err(|e| self.undecodable(&e).into_rpc())
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let bytes = self
            .call(
                SNAPSHOT_ROUTE,
                rpc::encode_install(&rpc),
                option.hard_ttl(),
                None,
            )
            .await
            .map_err(Failure::into_rpc)?;
        match rpc::decode_install_response(&bytes) {
            Ok(Ok(installed)) => Ok(installed),
            Ok(Err(refused)) => Err(RPCError::RemoteError(RemoteError::new(
                self.target,
                RaftError::APIError(refused),
            ))),
            Err(error) => Err(self.undecodable(&error).into_rpc()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let bytes = self
            .call(
                VOTE_ROUTE,
                rpc::encode_vote_request(&rpc),
                option.hard_ttl(),
                None,
            )
            .await
            .map_err(Failure::into_rpc)?;
        rpc::decode_vote_response(&bytes).map_err(|e| self.undecodable(&e).into_rpc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member whose Raft fails an RPC answers with the error (`crate::http::internal`); the
    /// caller hands it to its openraft as a `RemoteError` of that kind, not a network error.
    #[tokio::test]
    async fn a_members_raft_error_reaches_the_caller_as_a_remote_error() {
        use axum::http::StatusCode;
        let answer = |status: StatusCode, raft_error: bool| {
            axum::Router::new().route(
                VOTE_ROUTE,
                axum::routing::post(move || async move {
                    let mut response = axum::response::IntoResponse::into_response((
                        status,
                        rpc::encode_fatal(&Fatal::Stopped),
                    ));
                    if raft_error {
                        response.headers_mut().insert(
                            rpc::RAFT_ERROR_HEADER,
                            axum::http::HeaderValue::from_static("1"),
                        );
                    }
                    response
                }),
            )
        };
        let mut outcomes = Vec::new();
        for raft_error in [true, false] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("binds");
            let address = listener.local_addr().expect("an address").to_string();
            let served = tokio::spawn(async move {
                axum::serve(
                    listener,
                    answer(StatusCode::INTERNAL_SERVER_ERROR, raft_error),
                )
                .await
            });
            let links = Arc::new(Links::new(
                None,
                "v1:test".to_owned(),
                Arc::new(Clock::new()),
            ));
            let mut peer = Network(links)
                .new_client(2, &BasicNode::new(&address))
                .await;
            let request = VoteRequest::new(openraft::Vote::new(1, 1), None);
            let outcome = peer
                .vote(request, RPCOption::new(Duration::from_secs(5)))
                .await
                .expect_err("refused");
            outcomes.push(outcome);
            served.abort();
        }
        assert!(
            matches!(
                &outcomes[0],
                RPCError::RemoteError(RemoteError {
                    target: 2,
                    source: RaftError::Fatal(Fatal::Stopped),
                    ..
                })
            ),
            "{:?}",
            outcomes[0]
        );
        // Without the header, a 500 is only a failed call.
        assert!(
            matches!(&outcomes[1], RPCError::Network(_)),
            "{:?}",
            outcomes[1]
        );
    }

    #[test]
    fn a_refusal_does_not_tell_the_sender_this_members_configuration() {
        let mut config = worklease::Config::default();
        let theirs = super::super::fingerprint::header(&config);
        config.max_attempts = std::num::NonZeroU32::new(7);
        let ours = super::super::fingerprint::header(&config);
        let links = Links::new(None, ours.clone(), Arc::new(Clock::new()));
        assert_eq!(links.same_config(Some(&ours)), Ok(()));
        let refusal = links
            .same_config(Some(&theirs))
            .expect_err("another configuration is refused");
        assert!(!refusal.contains("max_attempts=7"), "{refusal}");
        assert!(refusal.contains("differs"), "{refusal}");
    }
}
