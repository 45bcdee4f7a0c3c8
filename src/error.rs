//! The one error type: every refusal a caller can get, each mapped to an HTTP status, an error
//! type string and, where a parameter is at fault, its name (docs/contract.md §6).

use std::fmt;

use crate::excerpt::Excerpt;
use crate::heartbeat::{LeaseSnapshot, Precondition};
use crate::ids::{EnvironmentId, WorkerId};
use crate::state::{Operation, WorkState};

/// A request parameter, named as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Param {
    /// `desired_ttl_seconds` (heartbeat).
    DesiredTtlSeconds,
    /// `expected_last_heartbeat` (heartbeat).
    ExpectedLastHeartbeat,
    /// `reclaim_older_than_ms` (poll).
    ReclaimOlderThanMs,
    /// `block_ms` (poll).
    BlockMs,
    /// `limit` (list).
    Limit,
    /// `page` (list).
    Page,
    /// `after_id` (list).
    AfterId,
    /// `before_id` (list).
    BeforeId,
    /// The worker id header (poll, ack).
    WorkerId,
    /// `metadata` (create, update).
    Metadata,
    /// `data` (create).
    Data,
    /// `id` of a new environment or work item.
    Id,
    /// `name` (environments).
    Name,
    /// `description` (environments).
    Description,
    /// `config` (environments).
    Config,
    /// `scope` (environments).
    Scope,
    /// `include_archived` (environment list).
    IncludeArchived,
}

impl Param {
    /// The parameter's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DesiredTtlSeconds => "desired_ttl_seconds",
            Self::ExpectedLastHeartbeat => "expected_last_heartbeat",
            Self::ReclaimOlderThanMs => "reclaim_older_than_ms",
            Self::BlockMs => "block_ms",
            Self::Limit => "limit",
            Self::Page => "page",
            Self::AfterId => "after_id",
            Self::BeforeId => "before_id",
            Self::WorkerId => "worker_id",
            Self::Metadata => "metadata",
            Self::Data => "data",
            Self::Id => "id",
            Self::Name => "name",
            Self::Description => "description",
            Self::Config => "config",
            Self::Scope => "scope",
            Self::IncludeArchived => "include_archived",
        }
    }
}

impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every refusal of the table or the request parsers. Maps to HTTP with [`Error::status`],
/// [`Error::error_type`] and [`Error::param`].
///
/// Building any variant never allocates, so refusals cost no more than successes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is malformed or out of range (400).
    #[error("invalid {param}: expected {expected}, found {found:?}")]
    InvalidParameter {
        /// The parameter at fault.
        param: Param,
        /// What the parameter must be.
        expected: &'static str,
        /// What the caller sent (its start).
        found: Excerpt,
    },
    /// Two parameters that exclude each other were both given (400).
    #[error("{first} and {second} are mutually exclusive")]
    ConflictingParameters {
        /// The first of the two, in the contract's order (docs/contract.md).
        first: Param,
        /// The second.
        second: Param,
    },
    /// The environment exists but is a `cloud` one; work operations need `self_hosted` (400).
    #[error("environment {environment} is not self_hosted")]
    NotSelfHosted {
        /// The environment.
        environment: EnvironmentId,
    },
    /// No such environment, or the id is malformed (404).
    #[error("environment {id} not found")]
    EnvironmentNotFound {
        /// The id as given.
        id: Excerpt,
    },
    /// No such work item in this environment, or the id is malformed (404).
    #[error("work item {id} not found")]
    WorkNotFound {
        /// The id as given.
        id: Excerpt,
    },
    /// No such key in this environment, or the id is malformed (404, docs/contract.md §10).
    #[error("environment key {id} not found")]
    EnvironmentKeyNotFound {
        /// The id as given.
        id: Excerpt,
    },
    /// An environment or work item with this id already exists (409).
    #[error("{id} already exists")]
    AlreadyExists {
        /// The id.
        id: Excerpt,
    },
    /// The item's state does not allow the operation (409).
    #[error("cannot {operation} a work item that is {state}")]
    InvalidState {
        /// The refused operation.
        operation: Operation,
        /// The state the item is in.
        state: WorkState,
    },
    /// The item was delivered to or acknowledged by another worker (409).
    #[error("work item belongs to worker {holder}, not {worker}")]
    WorkerMismatch {
        /// The worker the item belongs to.
        holder: WorkerId,
        /// The worker that asked.
        worker: WorkerId,
    },
    /// The environment is archived: it takes no new work and no updates (400, error code
    /// `environment_archived`, docs/contract.md §9).
    #[error("environment {environment} is archived")]
    EnvironmentArchived {
        /// The environment.
        environment: EnvironmentId,
    },
    /// The environment cannot be deleted while items hold leases (409, docs/contract.md §9).
    #[error("environment {environment} has {leased} work items holding leases")]
    EnvironmentInUse {
        /// The environment.
        environment: EnvironmentId,
        /// How many of its items are starting, active or stopping.
        leased: usize,
    },
    /// `expected_last_heartbeat` does not match the lease: another worker took over (412).
    #[error("expected last heartbeat {expected}, but the lease has {}", current.describe_last_heartbeat())]
    PreconditionFailed {
        /// What the request expected.
        expected: Precondition,
        /// The lease as the table holds it.
        current: LeaseSnapshot,
    },
}

impl Error {
    /// The HTTP status (docs/contract.md §6).
    pub const fn status(&self) -> u16 {
        match self {
            Self::InvalidParameter { .. }
            | Self::ConflictingParameters { .. }
            | Self::NotSelfHosted { .. }
            | Self::EnvironmentArchived { .. } => 400,
            Self::EnvironmentNotFound { .. }
            | Self::WorkNotFound { .. }
            | Self::EnvironmentKeyNotFound { .. } => 404,
            Self::AlreadyExists { .. }
            | Self::InvalidState { .. }
            | Self::WorkerMismatch { .. }
            | Self::EnvironmentInUse { .. } => 409,
            Self::PreconditionFailed { .. } => 412,
        }
    }

    /// The error type string of the HTTP envelope (docs/contract.md §6).
    pub const fn error_type(&self) -> &'static str {
        match self.status() {
            404 => "not_found_error",
            412 => "precondition_failed_error",
            _ => "invalid_request_error",
        }
    }

    /// The parameter at fault, if one is.
    pub const fn param(&self) -> Option<Param> {
        match self {
            Self::InvalidParameter { param, .. } => Some(*param),
            Self::ConflictingParameters { second, .. } => Some(*second),
            Self::NotSelfHosted { .. }
            | Self::EnvironmentNotFound { .. }
            | Self::WorkNotFound { .. }
            | Self::EnvironmentKeyNotFound { .. }
            | Self::AlreadyExists { .. }
            | Self::InvalidState { .. }
            | Self::WorkerMismatch { .. }
            | Self::EnvironmentArchived { .. }
            | Self::EnvironmentInUse { .. }
            | Self::PreconditionFailed { .. } => None,
        }
    }

    /// The `error_code` of the HTTP envelope's `details`, for the errors that carry one.
    pub const fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::PreconditionFailed { .. } => Some("heartbeat_precondition_failed"),
            Self::EnvironmentArchived { .. } => Some("environment_archived"),
            Self::InvalidParameter { .. }
            | Self::ConflictingParameters { .. }
            | Self::NotSelfHosted { .. }
            | Self::EnvironmentNotFound { .. }
            | Self::WorkNotFound { .. }
            | Self::EnvironmentKeyNotFound { .. }
            | Self::AlreadyExists { .. }
            | Self::InvalidState { .. }
            | Self::WorkerMismatch { .. }
            | Self::EnvironmentInUse { .. } => None,
        }
    }

    pub(crate) fn invalid(param: Param, expected: &'static str, found: &str) -> Self {
        Self::InvalidParameter {
            param,
            expected,
            found: Excerpt::new(found),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_spec_section_6() {
        let bad = Error::invalid(Param::Limit, "a positive integer", "abc");
        assert_eq!(
            (bad.status(), bad.error_type(), bad.param()),
            (400, "invalid_request_error", Some(Param::Limit))
        );
        let missing = Error::WorkNotFound {
            id: Excerpt::new("work_x"),
        };
        assert_eq!(
            (missing.status(), missing.error_type()),
            (404, "not_found_error")
        );
        let state = Error::InvalidState {
            operation: Operation::Ack,
            state: WorkState::Stopped,
        };
        assert_eq!(
            (state.status(), state.error_type()),
            (409, "invalid_request_error")
        );
        assert_eq!(state.to_string(), "cannot ack a work item that is stopped");
        assert_eq!(
            bad.to_string(),
            "invalid limit: expected a positive integer, found \"abc\""
        );
    }

    #[test]
    fn errors_stay_small() {
        assert!(
            std::mem::size_of::<Error>() <= 96,
            "{}",
            std::mem::size_of::<Error>()
        );
    }
}
