#![doc = include_str!("../README.md")]
// Library code states the invariant behind every unwrap (`expect`); tests and examples may not.
#![warn(clippy::unwrap_used)]

mod error;
mod heartbeat;
mod ids;
mod item;
#[cfg(feature = "serde")]
pub mod json;
mod metadata;
mod request;
mod state;
mod table;
mod time;
mod ttl;

pub use error::{Error, Excerpt, Param};
pub use heartbeat::{Heartbeat, HeartbeatRequest, LeaseSnapshot, Precondition};
pub use ids::{mint_uuid_v7, AsId, EnvironmentId, MalformedId, SessionId, WorkId, WorkerId};
pub use item::{Transition, WorkItem};
pub use metadata::{Metadata, MetadataPatch};
pub use request::{parse_worker_id, Cursor, ListRequest, PollRequest};
pub use state::{Operation, WorkState};
pub use table::{Config, EnvironmentKind, LeaseTable, Page, Polled, QueueStats, StopMode, Updated};
pub use time::{ParsedInstant, Rfc3339, Timestamp, TimestampError};
pub use ttl::{Ttl, TtlOutOfRange};
