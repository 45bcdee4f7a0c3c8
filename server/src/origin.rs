//! Answering a forwarded change exactly once (docs/contract.md §8 "Any node answers").
//!
//! A follower forwards a change to the leader; if the leader dies after committing it but
//! before answering, the follower has no answer, and a client that retries (the official SDK
//! retries a 503 with the same `expected_last_heartbeat`) would be told 412: its own committed
//! heartbeat moved the token. So a follower tags every change it forwards with an *origin*
//! id, the leader logs the tag beside the command, and every replica remembers the answers of
//! recently applied tagged commands. When a forward breaks, the follower waits for a leader and
//! sends the same request again as a *replay* with the same tag: the leader first makes sure it
//! has applied everything committed, then answers a tag it has applied with the answer recorded
//! at the time (the client sees the first attempt's 200), and proposes the command only when
//! the tag was never applied. A replay must repeat the request its tag was first used for:
//! the record keeps what that request asked (`crate::request::Asked`), and a replay that asks
//! something else is refused with 409 rather than answered with the other request's answer.
//!
//! The tag travels in the `x-worklease-origin` header (32 hex digits) and reaches the write
//! path as a task-local, so the handlers do not carry it.

use axum::http::HeaderMap;

/// The header carrying a forwarded change's origin id.
pub(crate) const ORIGIN_HEADER: &str = "x-worklease-origin";
/// The header marking a second attempt of the same origin.
pub(crate) const REPLAY_HEADER: &str = "x-worklease-replay";

/// A forwarded change's tag, as the write path sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestOrigin {
    pub(crate) id: u128,
    /// A second attempt: answer from the record if the first was applied.
    pub(crate) replay: bool,
}

tokio::task_local! {
    /// The origin of the request being served, when a follower forwarded it.
    pub(crate) static ORIGIN: RequestOrigin;
}

impl RequestOrigin {
    /// The origin a request carries, if any (malformed tags are ignored).
    pub(crate) fn of(headers: &HeaderMap) -> Option<Self> {
        let id = headers.get(ORIGIN_HEADER)?.to_str().ok()?;
        if id.len() != 32 {
            return None;
        }
        let id = u128::from_str_radix(id, 16).ok()?;
        Some(Self {
            id,
            replay: headers.contains_key(REPLAY_HEADER),
        })
    }

    /// The origin of the request this task serves.
    pub(crate) fn current() -> Option<Self> {
        ORIGIN.try_with(|origin| *origin).ok()
    }

    /// The header value.
    pub(crate) fn header(id: u128) -> String {
        format!("{id:032x}")
    }
}
