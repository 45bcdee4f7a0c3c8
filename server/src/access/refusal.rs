//! Why a credential was refused, as answered (401 or 403, docs/contract.md §10) and counted
//! (`worklease_credentials_refused_total`). The answers' messages never say whether the
//! environment or item exists, and never quote the credential.

use axum::http::StatusCode;

/// Why a request's credential does not open the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No credential (401).
    Missing,
    /// Text that is no credential's shape: a header that is not text, a truncated or
    /// changed key or secret (401).
    Malformed,
    /// A well-formed credential that nothing here issued, or revoked (401).
    Unknown,
    /// A valid credential used outside what it may do (403).
    OutOfScope,
    /// An item secret whose delivery is no longer current (403).
    StaleDelivery,
}

impl Refusal {
    /// The metric label.
    pub(crate) const fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::OutOfScope => "out_of_scope",
            Self::StaleDelivery => "stale_delivery",
        }
    }

    /// The answer's status, error type and message.
    pub(crate) const fn answer(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Missing => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "missing credentials: send `Authorization: Bearer <token>` or `x-api-key: <token>`",
            ),
            Self::Malformed | Self::Unknown => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid credentials",
            ),
            Self::OutOfScope => (
                StatusCode::FORBIDDEN,
                "permission_error",
                "this credential does not allow this request",
            ),
            Self::StaleDelivery => (
                StatusCode::FORBIDDEN,
                "permission_error",
                "this item secret belongs to an earlier delivery of the item",
            ),
        }
    }
}
