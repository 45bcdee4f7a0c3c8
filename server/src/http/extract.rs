//! What handlers read from a request: path ids, query values, the worker header and bodies
//! (bounded in size and time). Everything a client sends is checked here or by the crate's
//! parsers, so no input reaches the table unvalidated and none can panic the server.

use std::borrow::Cow;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::RawPathParams;
use axum::http::header::{HeaderMap, HeaderName};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The largest request body read; larger ones get 413.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

/// How long a body may take to arrive: a client that announces more than it sends gets 408
/// instead of holding a task forever.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

const WORKER_ID: HeaderName = HeaderName::from_static("worker-id");
const ANTHROPIC_WORKER_ID: HeaderName = HeaderName::from_static("anthropic-worker-id");

/// A request's query values, first occurrence wins; unknown names are simply never asked for.
/// Values borrow from the query string unless they had to be decoded.
#[derive(Debug, Default)]
pub(crate) struct Query<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Query<'a> {
    pub(crate) fn parse(raw: Option<&'a str>) -> Self {
        Self(form_urlencoded::parse(raw.unwrap_or("").as_bytes()).collect())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_ref())
    }
}

/// The raw worker id from `Worker-ID`, else `Anthropic-Worker-ID`, for the crate's parsers.
pub(crate) fn worker_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get(WORKER_ID)
        .or_else(|| headers.get(ANTHROPIC_WORKER_ID))
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// Reads a body of at most [`BODY_LIMIT`] bytes, within [`BODY_TIMEOUT`].
pub(crate) async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::own(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("request bodies are limited to {BODY_LIMIT} bytes"),
        )
    };
    // A declared length over the limit is refused before anything is read.
    if axum::body::HttpBody::size_hint(&body).lower() > BODY_LIMIT as u64 {
        return Err(too_large());
    }
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        // A length-limit error, or the connection failed mid-body: either way the body is
        // not one we will read.
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err(ApiError::own(
            StatusCode::REQUEST_TIMEOUT,
            "timeout_error",
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// Parses a JSON body; `None` when it is empty (or only whitespace).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<Option<T>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}"), None))
}

/// A request's path ids, as sent (percent-decoded), without copying them.
pub(super) struct Ids(RawPathParams);

impl Ids {
    /// Path segments that do not even decode are malformed ids: 404, like any unknown id.
    pub(super) fn of(
        params: Result<RawPathParams, RawPathParamsRejection>,
    ) -> Result<Self, ApiError> {
        params.map(Self).map_err(|rejection| {
            ApiError::own(
                StatusCode::NOT_FOUND,
                "not_found_error",
                format!("not found: {rejection}"),
            )
        })
    }

    /// A named segment; a missing one is empty, which no id is (so: not found).
    fn named(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| *key == name)
            .map_or("", |(_, value)| value)
    }

    pub(super) fn environment(&self) -> &str {
        self.named("environment_id")
    }

    pub(super) fn work(&self) -> &str {
        self.named("work_id")
    }

    pub(super) fn key(&self) -> &str {
        self.named("key_id")
    }
}

/// The start of a caller's text, for messages.
pub(super) fn excerpt(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_query_value_wins_and_is_decoded() {
        let query = Query::parse(Some("a=1&b=x%2By&a=2&beta=true"));
        assert_eq!(query.get("a"), Some("1"));
        assert_eq!(query.get("b"), Some("x+y"));
        assert_eq!(query.get("c"), None);
    }
}
