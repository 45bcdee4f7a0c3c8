#![doc = include_str!("../README.md")]
// No unsafe code in the library, ever (Cargo.toml only denies it, for the test crates).
#![forbid(unsafe_code)]
// Library code states the invariant behind every unwrap (`expect`); tests and examples may not.
#![warn(clippy::unwrap_used)]

mod command;
mod concurrent;
mod deadline;
mod environment;
mod environment_record;
mod error;
mod heartbeat;
mod ids;
mod index;
mod item;
#[cfg(feature = "serde")]
pub mod json;
mod metadata;
mod outcome;
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
pub use environment::EnvironmentKind;
pub use environment_record::{
    EnvironmentListRequest, EnvironmentPage, EnvironmentPatch, EnvironmentRecord, EnvironmentScope,
    NewEnvironment, MAX_CONFIG_BYTES, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS,
};
pub use error::{Error, Excerpt, Param};
pub use heartbeat::{Heartbeat, HeartbeatRequest, LeaseSnapshot, Precondition};
pub use ids::{mint_uuid_v7, AsId, EnvironmentId, MalformedId, SessionId, WorkId, WorkerId};
pub use item::{Transition, WorkItem};
pub use metadata::{Metadata, MetadataPatch};
pub use outcome::{Config, Page, Polled, QueueStats, StopMode, Updated};
pub use request::{parse_worker_id, Cursor, ListRequest, PollRequest};
#[cfg(feature = "snapshot")]
pub use snapshot::{DecodeError, SnapshotError};
pub use state::{Operation, WorkState};
pub use table::LeaseTable;
pub use time::{ParsedInstant, Rfc3339, Timestamp, TimestampError};
pub use ttl::{Ttl, TtlOutOfRange};
