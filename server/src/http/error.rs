//! Refusals as every handler returns them ([`ApiError`]) and JSON answers: a refusal becomes
//! the docs/contract.md §6 envelope once the edge knows the request id ([`render_refusal`]).

use std::sync::Arc;

use axum::body::Body;
use axum::http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use worklease::json::ErrorEnvelope;
use worklease::Error;

use crate::request::Mismatch;
use crate::submit::Refused;

/// A refusal, rendered as the docs/contract.md §6 envelope once the request id is known.
#[derive(Clone, Debug)]
pub(crate) enum ApiError {
    /// A refusal of the table or of the crate's parsers: status, type and param come from it.
    Table(Error),
    /// No answer now (no leader, lost leadership, not committed in time): 503 with
    /// `Retry-After: 1`, which the official SDK retries (docs/contract.md §8).
    Unavailable(String),
    /// A refusal of the server's own (auth, routing, bodies).
    Own {
        status: StatusCode,
        error_type: &'static str,
        message: String,
        param: Option<&'static str>,
    },
}

impl ApiError {
    /// A refusal of the server's own, with no parameter at fault.
    pub(crate) fn own(status: StatusCode, error_type: &'static str, message: String) -> Self {
        Self::Own {
            status,
            error_type,
            message,
            param: None,
        }
    }

    pub(crate) fn bad_request(message: String, param: Option<&'static str>) -> Self {
        Self::Own {
            status: StatusCode::BAD_REQUEST,
            error_type: "invalid_request_error",
            message,
            param,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Table(error) => {
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Own { status, .. } => *status,
        }
    }

    fn envelope<'a>(&'a self, request_id: &'a str) -> ErrorEnvelope<'a> {
        match self {
            Self::Table(error) => ErrorEnvelope::of(error, request_id),
            Self::Unavailable(message) => {
                ErrorEnvelope::new("api_error", message.as_str(), request_id)
            }
            Self::Own {
                error_type,
                message,
                param,
                ..
            } => {
                let envelope = ErrorEnvelope::new(error_type, message.as_str(), request_id);
                match param {
                    Some(param) => envelope.with_param(param),
                    None => envelope,
                }
            }
        }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self::Table(error)
    }
}

impl From<Mismatch> for ApiError {
    fn from(mismatch: Mismatch) -> Self {
        let (status, error_type) = match mismatch {
            Mismatch::Replay { .. } => (StatusCode::CONFLICT, "invalid_request_error"),
            Mismatch::Answer { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "api_error"),
        };
        Self::own(status, error_type, mismatch.to_string())
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Table(error) => Self::Table(error),
            Refused::Unavailable(why) => Self::Unavailable(why.0),
            Refused::Mismatch(mismatch) => mismatch.into(),
        }
    }
}

/// The refusal travels in the response's extensions until the edge renders it
/// ([`render_refusal`]): only that outermost layer knows the request id.
#[derive(Clone, Debug)]
struct Pending(Arc<ApiError>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        if matches!(self, Self::Unavailable(_)) {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.extensions_mut().insert(Pending(Arc::new(self)));
        response
    }
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => json_bytes(status, bytes),
        Err(error) => ApiError::own(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            format!("cannot render the response: {error}"),
        )
        .into_response(),
    }
}

/// A JSON response from bytes already rendered (for the heartbeat: `WorkHeartbeat::to_vec`).
/// A vector whose length is its capacity becomes the body without another copy.
pub(crate) fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// When `response` carries a refusal, replaces it with that refusal's envelope with the
/// request id `request_id` gives (asked only then), keeping the status and `Retry-After`.
/// Inline: the edge calls it on every request.
#[inline]
pub(super) fn render_refusal<'a>(response: &mut Response, request_id: impl FnOnce() -> &'a str) {
    let Some(Pending(error)) = response.extensions_mut().remove::<Pending>() else {
        return;
    };
    let request_id = request_id();
    let status = response.status();
    let retry_after = response.headers_mut().remove(RETRY_AFTER);
    *response = json(status, &error.envelope(request_id));
    if let Some(value) = retry_after {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
}

impl From<crate::access::Refusal> for ApiError {
    fn from(refusal: crate::access::Refusal) -> Self {
        let (status, error_type, message) = refusal.answer();
        Self::own(status, error_type, message.to_owned())
    }
}
