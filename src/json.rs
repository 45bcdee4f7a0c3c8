//! The documented JSON shapes (feature `serde`): thin wrappers that serialize the table's values
//! exactly as the API renders them, so every server built on the crate answers identically, and
//! the request bodies a server reads.
//!
//! Timestamps are written with [`Timestamp::to_rfc3339`] (UTC, `Z`, six fractional digits);
//! ids as their text. The wrappers borrow what they render, so serializing copies nothing.
//!
//! # Examples
//!
//! ```
//! use worklease::json::{ErrorEnvelope, Work};
//! use worklease::*;
//!
//! let mut table = LeaseTable::default();
//! let now = Timestamp::from_unix_micros(1_782_893_706_120_394);
//! table.register_environment("env_01".parse()?, EnvironmentKind::SelfHosted)?;
//! let item = table.create_work("env_01", "work_01".parse()?, "sess_01".parse()?, Metadata::new(), now)?;
//! let json = serde_json::to_value(Work(&item))?;
//! assert_eq!(json["type"], "work");
//! assert_eq!(json["created_at"], "2026-07-01T08:15:06.120394Z");
//! assert_eq!(json["data"]["id"], "sess_01");
//!
//! let refused = table.ack("env_01", "work_nope", None, now).unwrap_err();
//! let body = serde_json::to_value(ErrorEnvelope::of(&refused, "req_1"))?;
//! assert_eq!(body["error"]["type"], "not_found_error");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};

use crate::environment_record::{EnvironmentPage, EnvironmentRecord, EnvironmentScope};
use crate::error::{Error, Param};
use crate::heartbeat::{Heartbeat, LeaseSnapshot};
use crate::ids::EnvironmentId;
use crate::ids::SessionId;
use crate::item::WorkItem;
use crate::metadata::{Metadata, MetadataPatch};
use crate::outcome::{Page, QueueStats};
use crate::time::Timestamp;

/// Writes a value through its `Display` text.
struct Text<'a, T: fmt::Display>(&'a T);

impl<T: fmt::Display> Serialize for Text<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

/// An RFC 3339 timestamp, or `null`.
struct Instant(Option<Timestamp>);

impl Serialize for Instant {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(at) => serializer.serialize_str(at.to_rfc3339().as_str()),
            None => serializer.serialize_none(),
        }
    }
}

/// An id or `null`.
struct OptionalText<'a, T: fmt::Display>(Option<&'a T>);

impl<T: fmt::Display> Serialize for OptionalText<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(value) => serializer.collect_str(value),
            None => serializer.serialize_none(),
        }
    }
}

struct MetadataMap<'a>(&'a Metadata);

impl Serialize for MetadataMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0.iter() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

struct SessionData<'a>(&'a SessionId);

impl Serialize for SessionData<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut data = serializer.serialize_struct("data", 2)?;
        data.serialize_field("type", "session")?;
        data.serialize_field("id", &Text(self.0))?;
        data.end()
    }
}

/// A work item (`"type": "work"`), as docs/contract.md §1 lists its fields.
///
/// The table's extra bookkeeping ([`WorkItem::lapses`], the lease deadline, the worker) is not
/// part of the documented object and is not written.
#[derive(Clone, Copy, Debug)]
pub struct Work<'a>(pub &'a WorkItem);

impl Serialize for Work<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        work_object(self.0, None, serializer)
    }
}

/// A work item as a poll hands it out: [`Work`] with its `secret` (docs/contract.md §10), the
/// credential its worker uses for this delivery's heartbeats and stop. Every other read
/// renders `"secret": null`.
#[derive(Clone, Copy, Debug)]
pub struct DeliveredWork<'a> {
    /// The item.
    pub item: &'a WorkItem,
    /// The URL-safe base64 `secret` the server made for this delivery.
    pub secret: &'a str,
}

impl Serialize for DeliveredWork<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        work_object(self.item, Some(self.secret), serializer)
    }
}

fn work_object<S: Serializer>(
    item: &WorkItem,
    secret: Option<&str>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut work = serializer.serialize_struct("work", 15)?;
    work.serialize_field("id", &Text(&item.id))?;
    work.serialize_field("type", "work")?;
    work.serialize_field("environment_id", &Text(&item.environment_id))?;
    work.serialize_field("data", &SessionData(&item.session_id))?;
    work.serialize_field("state", item.state.as_str())?;
    work.serialize_field("created_at", &Instant(Some(item.created_at)))?;
    work.serialize_field("acknowledged_at", &Instant(item.acknowledged_at))?;
    work.serialize_field("started_at", &Instant(item.started_at))?;
    work.serialize_field("latest_heartbeat_at", &Instant(item.latest_heartbeat_at))?;
    work.serialize_field("stop_requested_at", &Instant(item.stop_requested_at))?;
    work.serialize_field("stopped_at", &Instant(item.stopped_at))?;
    work.serialize_field("metadata", &MetadataMap(&item.metadata))?;
    // docs/contract.md §7.5: an added field; the documented ones above are unchanged.
    work.serialize_field("lease_epoch", &item.lease_epoch)?;
    work.serialize_field("secret", &secret)?;
    work.end()
}

/// An accepted heartbeat: the documented `work_heartbeat` object (docs/contract.md §3.3).
#[derive(Clone, Copy, Debug)]
pub struct WorkHeartbeat<'a>(pub &'a Heartbeat);

impl Serialize for WorkHeartbeat<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let beat = self.0;
        let mut object = serializer.serialize_struct("work_heartbeat", 6)?;
        object.serialize_field("type", "work_heartbeat")?;
        object.serialize_field("last_heartbeat", &Instant(beat.last_heartbeat))?;
        object.serialize_field("lease_extended", &beat.lease_extended())?;
        object.serialize_field("state", beat.state.as_str())?;
        object.serialize_field("ttl_seconds", &beat.ttl.seconds())?;
        object.serialize_field("lease_epoch", &beat.lease_epoch)?;
        object.end()
    }
}

impl WorkHeartbeat<'_> {
    /// The object as JSON: the same bytes as `serde_json::to_vec(&self)`, written directly
    /// into a buffer of exactly their length. The heartbeat is the hot path of a server;
    /// through serde (string escaping of every key and value, and a growing buffer) rendering
    /// it cost worklease-server ~3 900 instructions a request, about a third of what the
    /// server adds to a bare axum route (callgrind, `scripts/request-instructions.sh`).
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::json::WorkHeartbeat;
    /// use worklease::*;
    ///
    /// let mut table = LeaseTable::default();
    /// let now = Timestamp::from_unix_micros(1_782_893_706_120_394);
    /// table.register_environment("env_01".parse()?, EnvironmentKind::SelfHosted)?;
    /// table.create_work("env_01", "work_01".parse()?, "sess_01".parse()?, Metadata::new(), now)?;
    /// table.poll("env_01", &PollRequest::default(), now)?;
    /// table.ack("env_01", "work_01", None, now)?;
    /// let beat = table.heartbeat("env_01", "work_01", HeartbeatRequest::default(), now)?;
    /// assert_eq!(WorkHeartbeat(&beat).to_vec(), serde_json::to_vec(&WorkHeartbeat(&beat))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn to_vec(&self) -> Vec<u8> {
        const HEAD: &[u8] = br#"{"type":"work_heartbeat","last_heartbeat":"#;
        const EXTENDED: &[u8] = br#","lease_extended":true,"state":""#;
        const NOT_EXTENDED: &[u8] = br#","lease_extended":false,"state":""#;
        const TTL: &[u8] = br#"","ttl_seconds":"#;
        const EPOCH: &[u8] = br#","lease_epoch":"#;
        let beat = self.0;
        let (mut ttl, mut epoch) = ([0; 20], [0; 20]);
        let ttl = decimal(beat.ttl.seconds(), &mut ttl);
        let epoch = decimal(u64::from(beat.lease_epoch), &mut epoch);
        // Every piece is ASCII that JSON needs no escape for: fixed keys, an RFC 3339 text,
        // a state name, digits.
        let state = beat.state.as_str().as_bytes();
        let token = beat.last_heartbeat.map(Timestamp::to_rfc3339);
        let (open, last_heartbeat, close): (&[u8], &[u8], &[u8]) = match &token {
            Some(token) => (b"\"", token.as_bytes(), b"\""),
            None => (b"", b"null", b""),
        };
        let extended = if beat.lease_extended() {
            EXTENDED
        } else {
            NOT_EXTENDED
        };
        let pieces: [&[u8]; 11] = [
            HEAD,
            open,
            last_heartbeat,
            close,
            extended,
            state,
            TTL,
            ttl,
            EPOCH,
            epoch,
            b"}",
        ];
        let mut out = Vec::with_capacity(pieces.iter().map(|piece| piece.len()).sum());
        for piece in pieces {
            out.extend_from_slice(piece);
        }
        out
    }
}

/// `n` in decimal digits, written at the end of `buffer`.
fn decimal(mut n: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut start = buffer.len();
    loop {
        start -= 1;
        // A digit: `n % 10` is below 10.
        buffer[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buffer[start..];
        }
    }
}

/// The lease a refused heartbeat reports (`error.details.current_state` of a 412).
#[derive(Clone, Copy, Debug)]
pub struct CurrentState<'a>(pub &'a LeaseSnapshot);

impl Serialize for CurrentState<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let lease = self.0;
        let mut object = serializer.serialize_struct("current_state", 5)?;
        object.serialize_field("last_heartbeat", &Instant(lease.last_heartbeat))?;
        object.serialize_field("state", lease.state.as_str())?;
        object.serialize_field("ttl_seconds", &lease.ttl.seconds())?;
        object.serialize_field("lease_extended", &lease.lease_extended())?;
        object.serialize_field("lease_epoch", &lease.lease_epoch)?;
        object.end()
    }
}

/// An environment's queue statistics: the documented `work_queue_stats` object (docs/contract.md §3.5).
#[derive(Clone, Copy, Debug)]
pub struct WorkQueueStats<'a>(pub &'a QueueStats);

impl Serialize for WorkQueueStats<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let stats = self.0;
        let mut object = serializer.serialize_struct("work_queue_stats", 5)?;
        object.serialize_field("type", "work_queue_stats")?;
        object.serialize_field("depth", &stats.depth)?;
        object.serialize_field("pending", &stats.pending)?;
        object.serialize_field("oldest_queued_at", &Instant(stats.oldest_queued_at))?;
        object.serialize_field("workers_polling", &stats.workers_polling)?;
        object.end()
    }
}

/// A list page: `{data, first_id, last_id, has_more, next_page}` (docs/contract.md §3.5).
#[derive(Clone, Copy, Debug)]
pub struct ListPage<'a>(pub &'a Page);

impl Serialize for ListPage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Items<'a>(&'a [WorkItem]);
        impl Serialize for Items<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter().map(Work))
            }
        }
        let page = self.0;
        let ids = (&page.first_id, &page.last_id, &page.next_page);
        serialize_page(serializer, &Items(&page.data), ids, page.has_more)
    }
}

/// `{data, first_id, last_id, has_more, next_page}`: the list page of work items and of
/// environments alike.
fn serialize_page<S: Serializer, T: fmt::Display>(
    serializer: S,
    data: &impl Serialize,
    (first_id, last_id, next_page): (&Option<T>, &Option<T>, &Option<T>),
    has_more: bool,
) -> Result<S::Ok, S::Error> {
    let mut object = serializer.serialize_struct("page", 5)?;
    object.serialize_field("data", data)?;
    object.serialize_field("first_id", &OptionalText(first_id.as_ref()))?;
    object.serialize_field("last_id", &OptionalText(last_id.as_ref()))?;
    object.serialize_field("has_more", &has_more)?;
    object.serialize_field("next_page", &OptionalText(next_page.as_ref()))?;
    object.end()
}

/// An environment: docs/contract.md §9's object. The crate keeps `config` as the JSON text it was given,
/// so the caller passes it parsed (`C`, e.g. a `serde_json::Value` or `&RawValue` of
/// [`EnvironmentRecord::config`]) and it is written as is.
#[derive(Clone, Copy, Debug)]
pub struct Environment<'a, C>(pub &'a EnvironmentRecord, pub C);

impl<C: Serialize> Serialize for Environment<'_, C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Self(record, config) = self;
        let mut object = serializer.serialize_struct("environment", 10)?;
        object.serialize_field("id", &Text(&record.id))?;
        object.serialize_field("type", "environment")?;
        object.serialize_field("name", &record.name)?;
        object.serialize_field("config", config)?;
        object.serialize_field("metadata", &MetadataMap(&record.metadata))?;
        object.serialize_field("description", &record.description)?;
        object.serialize_field("created_at", &Instant(Some(record.created_at)))?;
        object.serialize_field("updated_at", &Instant(Some(record.updated_at)))?;
        object.serialize_field("archived_at", &Instant(record.archived_at))?;
        object.serialize_field("scope", &record.scope.map(EnvironmentScope::as_str))?;
        object.end()
    }
}

/// A page of environments: `{data, first_id, last_id, has_more, next_page}` (docs/contract.md §9), with
/// each environment's parsed config in `configs`, in the same order.
#[derive(Clone, Copy, Debug)]
pub struct EnvironmentList<'a, C>(pub &'a EnvironmentPage, pub &'a [C]);

impl<C: Serialize> Serialize for EnvironmentList<'_, C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Self(page, configs) = self;
        let ids = (&page.first_id, &page.last_id, &page.next_page);
        serialize_page(
            serializer,
            &Records(&page.data, configs),
            ids,
            page.has_more,
        )
    }
}

/// `{"id": …, "type": "environment_deleted"}` (docs/contract.md §9 delete).
#[derive(Clone, Copy, Debug)]
pub struct EnvironmentDeleted<'a>(pub &'a EnvironmentId);

impl Serialize for EnvironmentDeleted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut object = serializer.serialize_struct("environment_deleted", 2)?;
        object.serialize_field("id", &Text(self.0))?;
        object.serialize_field("type", "environment_deleted")?;
        object.end()
    }
}

/// Environments with their parsed configs, as a sequence.
struct Records<'a, C>(&'a [EnvironmentRecord], &'a [C]);

impl<C: Serialize> Serialize for Records<'_, C> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let pairs = self.0.iter().zip(self.1);
        serializer.collect_seq(pairs.map(|(record, config)| Environment(record, config)))
    }
}

/// The error envelope of docs/contract.md §6:
/// `{"type":"error","request_id":…,"error":{"type":…,"message":…,"param":…}}`, plus
/// `error.details` for the errors with an error code (a 412's carries the lease as held; an
/// archived environment's, docs/contract.md §9, only its code).
///
/// Build it from an [`Error`] with [`ErrorEnvelope::of`], or for a refusal the table does not
/// make (authentication, an unknown route, a malformed body) with [`ErrorEnvelope::new`].
#[derive(Clone, Debug)]
pub struct ErrorEnvelope<'a> {
    request_id: &'a str,
    error_type: &'a str,
    message: String,
    param: Option<&'a str>,
    error_code: Option<&'static str>,
    current_state: Option<LeaseSnapshot>,
}

impl<'a> ErrorEnvelope<'a> {
    /// The envelope of a table or parser refusal: its error type, message and parameter, and
    /// for [`Error::PreconditionFailed`] the lease as the table holds it.
    pub fn of(error: &Error, request_id: &'a str) -> Self {
        let current_state = match error {
            Error::PreconditionFailed { current, .. } => Some(*current),
            _ => None,
        };
        Self {
            request_id,
            error_type: error.error_type(),
            message: error.to_string(),
            param: error.param().map(Param::as_str),
            error_code: error.error_code(),
            current_state,
        }
    }

    /// An envelope for a refusal of the server's own (`authentication_error`,
    /// `not_found_error` for an unknown route, `invalid_request_error` for a bad body, …).
    pub fn new(error_type: &'a str, message: impl Into<String>, request_id: &'a str) -> Self {
        Self {
            request_id,
            error_type,
            message: message.into(),
            param: None,
            error_code: None,
            current_state: None,
        }
    }

    /// Names the parameter at fault.
    #[must_use]
    pub fn with_param(mut self, param: &'a str) -> Self {
        self.param = Some(param);
        self
    }

    /// The error type (`error.type`).
    pub fn error_type(&self) -> &str {
        self.error_type
    }

    /// The message (`error.message`).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl Serialize for ErrorEnvelope<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Details<'a>(&'static str, Option<&'a LeaseSnapshot>);
        impl Serialize for Details<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let fields = 1 + usize::from(self.1.is_some());
                let mut details = serializer.serialize_struct("details", fields)?;
                details.serialize_field("error_code", self.0)?;
                if let Some(lease) = self.1 {
                    details.serialize_field("current_state", &CurrentState(lease))?;
                }
                details.end()
            }
        }
        struct Inner<'a>(&'a ErrorEnvelope<'a>);
        impl Serialize for Inner<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let envelope = self.0;
                let fields = 3 + usize::from(envelope.error_code.is_some());
                let mut error = serializer.serialize_struct("error", fields)?;
                error.serialize_field("type", envelope.error_type)?;
                error.serialize_field("message", &envelope.message)?;
                error.serialize_field("param", &envelope.param)?;
                if let Some(code) = envelope.error_code {
                    let details = Details(code, envelope.current_state.as_ref());
                    error.serialize_field("details", &details)?;
                }
                error.end()
            }
        }
        let mut envelope = serializer.serialize_struct("error_envelope", 3)?;
        envelope.serialize_field("type", "error")?;
        envelope.serialize_field("request_id", self.request_id)?;
        envelope.serialize_field("error", &Inner(self))?;
        envelope.end()
    }
}

/// The `data` of a create-work body: `{"type": "session", "id": "sess_…"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct WorkData {
    /// Must be `"session"`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// A session id (`sess_…`).
    #[serde(default)]
    pub id: Option<String>,
}

/// The body that creates a work item: `{"data": {"type": "session", "id": "sess_…"},
/// "metadata": {…}}`. Unknown fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct CreateWork {
    /// The work's data.
    #[serde(default)]
    pub data: Option<WorkData>,
    /// Initial metadata (string → string); omitted or `null` means none.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl CreateWork {
    /// The session the work runs.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`data`) unless `data` is present with `type` `"session"`
    /// and an `id` that is a session id.
    pub fn session(&self) -> Result<SessionId, Error> {
        let Some(data) = &self.data else {
            return Err(Error::invalid(
                Param::Data,
                "{\"type\": \"session\", \"id\": \"sess_…\"}",
                "nothing",
            ));
        };
        if data.kind.as_deref() != Some("session") {
            return Err(Error::invalid(
                Param::Data,
                "data.type \"session\"",
                data.kind.as_deref().unwrap_or("nothing"),
            ));
        }
        let id = data.id.as_deref().unwrap_or("");
        SessionId::parse(id).map_err(|_| Error::invalid(Param::Data, "data.id `sess_…`", id))
    }

    /// The initial metadata, validated.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`metadata`) when it breaks a [`Metadata`] limit.
    pub fn metadata(&self) -> Result<Metadata, Error> {
        self.metadata
            .clone()
            .map_or_else(|| Ok(Metadata::new()), Metadata::from_map)
    }
}

/// The body of a metadata update: `{"metadata": {"key": "value" | null, …}}` (a merge patch).
/// Unknown fields are ignored; an omitted `metadata` patches nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct UpdateWork {
    /// The patch: a string sets a key, `null` deletes it.
    #[serde(default)]
    pub metadata: Option<MetadataPatch>,
}

/// The optional body of a stop: `{"force": true}`. Unknown fields are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct StopWork {
    /// Stop at once instead of asking the holder to drain; omitted or `null` means `false`.
    #[serde(default)]
    pub force: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::HeartbeatRequest;
    use crate::ids::{EnvironmentId, WorkId};
    use crate::request::{ListRequest, PollRequest};
    use crate::ttl::Ttl;
    use crate::WorkState;
    use crate::{EnvironmentKind, LeaseTable, Polled, StopMode};
    use serde_json::{json, Value};

    const T0: i64 = 1_782_893_706_120_394;

    fn table_with_item() -> (LeaseTable, WorkItem) {
        let mut table = LeaseTable::default();
        let env = EnvironmentId::parse("env_019e64e01a137caf953ac2ac7b42ec5c").unwrap();
        table
            .register_environment(env, EnvironmentKind::SelfHosted)
            .unwrap();
        let mut metadata = Metadata::new();
        metadata
            .apply(&MetadataPatch::from([(
                "repo".to_string(),
                Some("worklease".to_string()),
            )]))
            .unwrap();
        let item = table
            .create_work(
                "env_019e64e01a137caf953ac2ac7b42ec5c",
                WorkId::parse("work_019f3be4fd2475d9a784bf2c739e1194").unwrap(),
                SessionId::parse("sess_01").unwrap(),
                metadata,
                Timestamp::from_unix_micros(T0),
            )
            .unwrap();
        (table, item)
    }

    fn to_json(value: impl Serialize) -> Value {
        serde_json::to_value(value).unwrap()
    }

    #[test]
    fn a_delivered_item_carries_its_secret_and_every_other_rendering_null() {
        let (_, item) = table_with_item();
        let delivered = to_json(DeliveredWork {
            item: &item,
            secret: "c2VjcmV0",
        });
        assert_eq!(delivered["secret"], "c2VjcmV0");
        assert_eq!(to_json(Work(&item))["secret"], Value::Null);
        let mut without = delivered;
        without["secret"] = Value::Null;
        assert_eq!(without, to_json(Work(&item)));
    }

    #[test]
    fn a_work_item_renders_every_documented_field_in_order() {
        let (_, item) = table_with_item();
        let text = serde_json::to_string(&Work(&item)).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"id":"work_019f3be4fd2475d9a784bf2c739e1194","type":"work","#,
                r#""environment_id":"env_019e64e01a137caf953ac2ac7b42ec5c","#,
                r#""data":{"type":"session","id":"sess_01"},"state":"queued","#,
                r#""created_at":"2026-07-01T08:15:06.120394Z","acknowledged_at":null,"#,
                r#""started_at":null,"latest_heartbeat_at":null,"stop_requested_at":null,"#,
                r#""stopped_at":null,"metadata":{"repo":"worklease"},"lease_epoch":0,"#,
                r#""secret":null}"#
            )
        );
    }

    #[test]
    fn a_heartbeat_renders_the_documented_example_shape() {
        let (mut table, item) = table_with_item();
        let now = Timestamp::from_unix_micros(T0);
        table
            .ack(&item.environment_id, &item.id, None, now)
            .unwrap();
        let request = HeartbeatRequest::parse(Some("NO_HEARTBEAT"), Some("60")).unwrap();
        let beat = table
            .heartbeat(&item.environment_id, &item.id, request, now)
            .unwrap();
        assert_eq!(
            to_json(WorkHeartbeat(&beat)),
            json!({
                "type": "work_heartbeat",
                "last_heartbeat": "2026-07-01T08:15:06.120394Z",
                "lease_extended": true,
                "state": "active",
                "ttl_seconds": 60,
                "lease_epoch": 1
            })
        );
    }

    #[test]
    fn a_stopping_items_heartbeat_renders_the_held_lease_not_extended() {
        let (mut table, item) = table_with_item();
        let now = Timestamp::from_unix_micros(T0);
        let (env, id) = (&item.environment_id, &item.id);
        table.ack(env, id, None, now).unwrap();
        table.stop(env, id, StopMode::Graceful, now).unwrap();
        let later = now.saturating_add_micros(1_000_000);
        let beat = table
            .heartbeat(env, id, HeartbeatRequest::default(), later)
            .unwrap();
        assert_eq!(
            to_json(WorkHeartbeat(&beat)),
            json!({
                "type": "work_heartbeat",
                "last_heartbeat": null,
                "lease_extended": false,
                "state": "stopping",
                "ttl_seconds": 60,
                "lease_epoch": 1
            })
        );
        assert_eq!(
            WorkHeartbeat(&beat).to_vec(),
            serde_json::to_vec(&WorkHeartbeat(&beat)).unwrap()
        );
    }

    #[test]
    fn a_heartbeat_written_directly_is_what_serde_writes() {
        let states = [WorkState::Active, WorkState::Stopping, WorkState::Starting];
        for (i, epoch) in [0, 1, 9, 10, 99, 4_294_967_295].into_iter().enumerate() {
            for ttl in [10, 60, 99, 100, 600] {
                // A stopping item stopped before its first heartbeat has no token.
                let token = Timestamp::from_unix_micros(T0 + i64::from(epoch) * 7);
                let beat = Heartbeat {
                    last_heartbeat: (ttl != 99).then_some(token),
                    state: states[i % states.len()],
                    ttl: Ttl::from_seconds(ttl).unwrap(),
                    ttl_clamped: false,
                    deadline: Timestamp::from_unix_micros(T0),
                    lease_epoch: epoch,
                };
                let direct = WorkHeartbeat(&beat).to_vec();
                assert_eq!(direct, serde_json::to_vec(&WorkHeartbeat(&beat)).unwrap());
                assert_eq!(direct.len(), direct.capacity());
            }
        }
    }

    #[test]
    fn a_precondition_failure_carries_the_lease_in_details() {
        let (mut table, item) = table_with_item();
        let now = Timestamp::from_unix_micros(T0);
        table
            .ack(&item.environment_id, &item.id, None, now)
            .unwrap();
        let request = HeartbeatRequest::parse(Some("NO_HEARTBEAT"), Some("30")).unwrap();
        table
            .heartbeat(&item.environment_id, &item.id, request, now)
            .unwrap();
        let error = table
            .heartbeat(&item.environment_id, &item.id, request, now)
            .unwrap_err();
        let body = to_json(ErrorEnvelope::of(&error, "req_7"));
        assert_eq!(
            body,
            json!({
                "type": "error",
                "request_id": "req_7",
                "error": {
                    "type": "precondition_failed_error",
                    "message": error.to_string(),
                    "param": null,
                    "details": {
                        "error_code": "heartbeat_precondition_failed",
                        "current_state": {
                            "last_heartbeat": "2026-07-01T08:15:06.120394Z",
                            "state": "active",
                            "ttl_seconds": 30,
                            "lease_extended": false,
                            "lease_epoch": 1
                        }
                    }
                }
            })
        );
    }

    #[test]
    fn an_environment_renders_sdk_shapes_and_an_archived_one_refuses_work_with_its_code() {
        let mut table = LeaseTable::default();
        let now = Timestamp::from_unix_micros(T0);
        let mut new = crate::NewEnvironment::self_hosted("builds");
        new.metadata = Metadata::from_map(BTreeMap::from([("team".into(), "ci".into())])).unwrap();
        let id: EnvironmentId = "env_01".parse().unwrap();
        let record = table.create_environment(id.clone(), new, now).unwrap();
        let config: Value = serde_json::from_str(&record.config).unwrap();
        assert_eq!(
            to_json(Environment(&record, &config)),
            json!({
                "id": "env_01", "type": "environment", "name": "builds",
                "config": {"type": "self_hosted"}, "metadata": {"team": "ci"},
                "description": null, "created_at": "2026-07-01T08:15:06.120394Z",
                "updated_at": "2026-07-01T08:15:06.120394Z", "archived_at": null, "scope": null
            })
        );
        let page = table.list_environments(&crate::EnvironmentListRequest::default());
        let listed = to_json(EnvironmentList(&page, &[config]));
        assert_eq!(listed["data"][0]["name"], "builds");
        assert_eq!(listed["next_page"], Value::Null);
        table.archive_environment(&id, now).unwrap();
        let refused = table
            .create_work(
                &id,
                "work_01".parse().unwrap(),
                "sess_01".parse().unwrap(),
                Metadata::new(),
                now,
            )
            .unwrap_err();
        let body = to_json(ErrorEnvelope::of(&refused, "req_9"));
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(
            body["error"]["details"],
            json!({"error_code": "environment_archived"})
        );
        assert_eq!(
            to_json(EnvironmentDeleted(&id)),
            json!({"id": "env_01", "type": "environment_deleted"})
        );
    }

    #[test]
    fn an_unclaimed_lease_reports_a_null_last_heartbeat() {
        let lease = LeaseSnapshot {
            last_heartbeat: None,
            state: WorkState::Starting,
            ttl: Ttl::DEFAULT,
            deadline: Timestamp::from_unix_micros(T0),
            lease_epoch: 1,
        };
        assert_eq!(
            to_json(CurrentState(&lease)),
            json!({"last_heartbeat": null, "state": "starting", "ttl_seconds": 60, "lease_extended": false, "lease_epoch": 1})
        );
    }

    #[test]
    fn parameter_errors_name_the_parameter_and_have_no_details() {
        let error = HeartbeatRequest::parse(None, Some("-5")).unwrap_err();
        let body = to_json(ErrorEnvelope::of(&error, "req_1"));
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "desired_ttl_seconds");
        assert!(body["error"].get("details").is_none());
        let own = to_json(
            ErrorEnvelope::new("authentication_error", "missing bearer token", "req_2")
                .with_param("authorization"),
        );
        assert_eq!(
            own,
            json!({"type": "error", "request_id": "req_2", "error": {
                "type": "authentication_error", "message": "missing bearer token", "param": "authorization"}})
        );
    }

    #[test]
    fn stats_render_the_documented_object() {
        let (table, item) = table_with_item();
        let now = Timestamp::from_unix_micros(T0);
        let stats = table.stats(&item.environment_id, now).unwrap();
        assert_eq!(
            to_json(WorkQueueStats(&stats)),
            json!({
                "type": "work_queue_stats",
                "depth": 1,
                "pending": 0,
                "oldest_queued_at": "2026-07-01T08:15:06.120394Z",
                "workers_polling": 0
            })
        );
        let empty = QueueStats {
            depth: 0,
            pending: 0,
            oldest_queued_at: None,
            workers_polling: 0,
        };
        assert_eq!(
            to_json(WorkQueueStats(&empty))["oldest_queued_at"],
            Value::Null
        );
    }

    #[test]
    fn list_pages_render_items_and_cursors() {
        let (mut table, item) = table_with_item();
        let now = Timestamp::from_unix_micros(T0);
        let second = table
            .create_work(
                &item.environment_id,
                WorkId::parse("work_019f3be4fd2475d9a784bf2c739e1195").unwrap(),
                SessionId::parse("sess_02").unwrap(),
                Metadata::new(),
                now,
            )
            .unwrap();
        let request = ListRequest::parse(Some("1"), None, None, None).unwrap();
        let page = table.list(&item.environment_id, &request, now).unwrap();
        let body = to_json(ListPage(&page));
        assert_eq!(body["data"], json!([to_json(Work(&item))]));
        assert_eq!(body["first_id"], item.id.to_string());
        assert_eq!(body["last_id"], item.id.to_string());
        assert_eq!(body["has_more"], true);
        assert_eq!(body["next_page"], item.id.to_string());
        let request = ListRequest::parse(None, Some(&item.id.to_string()), None, None).unwrap();
        let last = to_json(ListPage(
            &table.list(&item.environment_id, &request, now).unwrap(),
        ));
        assert_eq!(last["first_id"], second.id.to_string());
        assert_eq!(
            (&last["has_more"], &last["next_page"]),
            (&json!(false), &Value::Null)
        );
        let empty = table
            .list(
                &item.environment_id,
                &ListRequest::parse(None, None, Some(&second.id.to_string()), None).unwrap(),
                now,
            )
            .unwrap();
        assert_eq!(
            to_json(ListPage(&empty)),
            json!({"data": [], "first_id": null, "last_id": null, "has_more": false, "next_page": null})
        );
    }

    #[test]
    fn a_stopped_item_renders_its_lifecycle_timestamps() {
        let (mut table, item) = table_with_item();
        let t = |offset: i64| Timestamp::from_unix_micros(T0 + offset);
        let env = item.environment_id.clone();
        let Polled::Delivered(_) = table.poll(&env, &PollRequest::default(), t(0)).unwrap() else {
            panic!("one queued item");
        };
        table.ack(&env, &item.id, None, t(1)).unwrap();
        table
            .heartbeat(&env, &item.id, HeartbeatRequest::default(), t(2))
            .unwrap();
        table
            .stop(&env, &item.id, crate::StopMode::Graceful, t(3))
            .unwrap();
        let stopped = table
            .stop(&env, &item.id, crate::StopMode::Graceful, t(4))
            .unwrap();
        let body = to_json(Work(&stopped.item));
        assert_eq!(body["state"], "stopped");
        assert_eq!(body["acknowledged_at"], "2026-07-01T08:15:06.120395Z");
        assert_eq!(body["started_at"], "2026-07-01T08:15:06.120396Z");
        assert_eq!(body["latest_heartbeat_at"], "2026-07-01T08:15:06.120396Z");
        assert_eq!(body["stop_requested_at"], "2026-07-01T08:15:06.120397Z");
        assert_eq!(body["stopped_at"], "2026-07-01T08:15:06.120398Z");
    }

    #[test]
    fn create_work_bodies_are_validated_with_param_data() {
        let ok: CreateWork = serde_json::from_value(json!({
            "data": {"type": "session", "id": "sess_01"},
            "metadata": {"repo": "worklease"},
            "unknown": 1
        }))
        .unwrap();
        assert_eq!(ok.session().unwrap().to_string(), "sess_01");
        assert_eq!(ok.metadata().unwrap().get("repo"), Some("worklease"));
        for body in [
            json!({}),
            json!({"data": {"id": "sess_01"}}),
            json!({"data": {"type": "file", "id": "sess_01"}}),
            json!({"data": {"type": "session", "id": "session_01"}}),
            json!({"data": {"type": "session"}}),
        ] {
            let parsed: CreateWork = serde_json::from_value(body.clone()).unwrap();
            let error = parsed.session().expect_err(&body.to_string());
            assert_eq!(error.param(), Some(Param::Data), "{body}");
        }
        let big: CreateWork = serde_json::from_value(json!({
            "data": {"type": "session", "id": "sess_01"},
            "metadata": {"k": "x".repeat(513)}
        }))
        .unwrap();
        assert_eq!(big.metadata().unwrap_err().param(), Some(Param::Metadata));
        assert!(serde_json::from_value::<CreateWork>(json!({"metadata": {"k": 1}})).is_err());
    }

    #[test]
    fn update_and_stop_bodies_tolerate_omissions() {
        let update: UpdateWork =
            serde_json::from_value(json!({"metadata": {"a": "1", "b": null}})).unwrap();
        assert_eq!(
            update.metadata,
            Some(MetadataPatch::from([
                ("a".to_string(), Some("1".to_string())),
                ("b".to_string(), None)
            ]))
        );
        assert_eq!(
            serde_json::from_value::<UpdateWork>(json!({})).unwrap(),
            UpdateWork::default()
        );
        assert_eq!(
            serde_json::from_value::<StopWork>(json!({"force": true}))
                .unwrap()
                .force,
            Some(true)
        );
        assert_eq!(
            serde_json::from_value::<StopWork>(json!({"force": null})).unwrap(),
            StopWork::default()
        );
    }
}
