//! The cluster secret (docs/contract.md §10): the one credential that opens a member's
//! internal routes (everything under `/internal/`: Raft's RPCs and `/internal/digest`), and
//! the proof that a request came from a member, without which the internal headers a member
//! sets on a forwarded request (origin and replay tags, `x-worklease-*`) are dropped.
//!
//! Members send it in its own header, [`HEADER`], on every call to each other
//! (`crate::raft::Links::member_call`), never as `Authorization`: a forwarded request keeps
//! the client's own credential beside it, and the leader checks that credential as if the
//! client had called it, so forwarding lends a request no authority of the member's.
//!
//! No API credential opens an internal route, and a refusal there names nothing: no
//! credential, a wrong one and an admin token all get the same 401.

use std::fmt;
use std::sync::Arc;

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// The header a member sends the cluster secret in.
pub(crate) const HEADER: &str = "x-worklease-cluster-secret";

/// What every header a member sets for another member starts with.
pub(crate) const INTERNAL_PREFIX: &str = "x-worklease-";

/// The shortest secret accepted: 32 characters (`openssl rand -hex 32` makes 64).
const MIN_LEN: usize = 32;
/// The longest: it must fit in a header.
const MAX_LEN: usize = 256;

/// The cluster secret. Its `Debug` does not print it.
#[derive(Clone)]
pub(crate) struct ClusterSecret(Arc<Inner>);

struct Inner {
    secret: Box<str>,
    /// Paces the error about calls that present another cluster secret.
    refused: crate::tls::Throttle,
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// `--cluster-secret`: 32 to 256 visible ASCII characters.
    ///
    /// # Errors
    ///
    /// Why the value cannot be a cluster secret (without the value).
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() < MIN_LEN || raw.len() > MAX_LEN || !raw.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "a cluster secret is {MIN_LEN} to {MAX_LEN} visible ASCII characters \
                 (`openssl rand -hex 32` makes one)"
            ));
        }
        Ok(Self(Arc::new(Inner {
            secret: raw.into(),
            refused: crate::tls::Throttle::default(),
        })))
    }

    /// The header value a member sends.
    pub(crate) fn as_str(&self) -> &str {
        &self.0.secret
    }

    /// Whether `presented` is this secret, compared in time that does not depend on where
    /// they differ.
    pub(crate) fn is(&self, presented: &[u8]) -> bool {
        self.0.secret.as_bytes().ct_eq(presented).into()
    }

    /// Whether `headers` carry this secret in [`HEADER`].
    pub(crate) fn is_presented_in(&self, headers: &HeaderMap) -> bool {
        headers
            .get(HEADER)
            .is_some_and(|value| self.is(value.as_bytes()))
    }

    /// Refuses a secret that is also an admin token: whoever holds the token would hold the
    /// cluster's own credential.
    ///
    /// # Errors
    ///
    /// The refusal, naming the flags, not the values.
    pub(crate) fn differs_from_tokens<'a>(
        &self,
        tokens: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), String> {
        if tokens.into_iter().any(|token| self.is(token.as_bytes())) {
            return Err(
                "--cluster-secret must differ from every --token: the cluster secret \
                        opens the members' internal routes, which no API credential may open"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// Whether `path` is an internal route's (known or not): the cluster secret's alone.
#[inline]
pub(crate) fn is_internal(path: &str) -> bool {
    path.strip_prefix("/internal")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The edge's check on an internal route: the request must carry this member's cluster
/// secret. Nothing else is looked at, so no API credential opens these routes; without a
/// cluster secret (a server that is not a member) nothing does.
///
/// # Errors
///
/// [`NotAMember`], whatever was wrong, so a caller learns nothing of this member's
/// configuration.
pub(crate) fn admit(
    secret: Option<&ClusterSecret>,
    headers: &HeaderMap,
    path: &str,
) -> Result<(), NotAMember> {
    if let Some(secret) = secret {
        if secret.is_presented_in(headers) {
            return Ok(());
        }
        // Someone sent a cluster secret, just not this one: most likely a member started with
        // another. Said here (paced, never the value), as the caller is told nothing.
        if headers.contains_key(HEADER) && secret.0.refused.allows() {
            tracing::error!(
                path,
                "refused an internal call that presented another cluster secret: every member \
                 must be started with the same --cluster-secret (WORKLEASE_CLUSTER_SECRET)"
            );
        }
    }
    Err(NotAMember)
}

/// A call on an internal route without this member's cluster secret: answered 401
/// `authentication_error` with [`NotAMember::MESSAGE`], the same whatever was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotAMember;

impl NotAMember {
    /// The refusal's only words.
    pub(crate) const MESSAGE: &'static str = "authentication failed";
}

/// Whether a request on an API route comes from a member: it carries the cluster secret.
pub(crate) fn from_member(secret: Option<&ClusterSecret>, headers: &HeaderMap) -> bool {
    secret.is_some_and(|secret| secret.is_presented_in(headers))
}

/// The edge's step on an API route in a cluster: a request that does not carry the cluster
/// secret loses every internal header ([`drop_internal_headers`]), so what only a member may
/// say (origin and replay tags, the forwarding mark) is ignored from anyone else. The request
/// is then served as its own credential allows.
pub(crate) fn ignore_unless_member(secret: Option<&ClusterSecret>, headers: &mut HeaderMap) {
    if !from_member(secret, headers) {
        drop_internal_headers(headers);
    }
}

/// Removes every `x-worklease-*` header (origin and replay tags, the forwarding mark, a
/// presented cluster secret).
fn drop_internal_headers(headers: &mut HeaderMap) {
    let internal: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(INTERNAL_PREFIX))
        .cloned()
        .collect();
    for name in internal {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn secret() -> ClusterSecret {
        ClusterSecret::parse(SECRET).expect("a secret")
    }

    #[test]
    fn a_secret_is_long_visible_ascii() {
        assert!(ClusterSecret::parse(SECRET).is_ok());
        assert!(ClusterSecret::parse(&SECRET[1..]).is_err());
        assert!(ClusterSecret::parse(&"x".repeat(257)).is_err());
        assert!(ClusterSecret::parse(&format!("{SECRET} ")).is_err());
        assert!(!format!("{:?}", secret()).contains(SECRET));
    }

    #[test]
    fn only_the_secret_itself_is_admitted() {
        let secret = secret();
        let mut headers = HeaderMap::new();
        assert!(admit(Some(&secret), &headers, "/internal/raft/vote").is_err());
        headers.insert("authorization", HeaderValue::from_static("Bearer admin"));
        assert!(admit(Some(&secret), &headers, "/internal/raft/vote").is_err());
        for wrong in [&SECRET[..31], "0123456789abcdef0123456789abcdeF", "x"] {
            headers.insert(HEADER, HeaderValue::from_str(wrong).unwrap());
            assert!(
                admit(Some(&secret), &headers, "/internal/raft/vote").is_err(),
                "{wrong}"
            );
        }
        headers.insert(HEADER, HeaderValue::from_static(SECRET));
        assert!(admit(Some(&secret), &headers, "/internal/raft/vote").is_ok());
        assert!(from_member(Some(&secret), &headers));
        // A server without a secret opens its internal routes to nobody.
        assert!(admit(None, &headers, "/internal/raft/vote").is_err());
        assert!(!from_member(None, &headers));
    }

    #[test]
    fn a_secret_equal_to_a_token_is_refused() {
        let secret = secret();
        assert!(secret.differs_from_tokens(["admin", "other"]).is_ok());
        let refusal = secret
            .differs_from_tokens(["admin", SECRET])
            .expect_err("refused");
        assert!(!refusal.contains(SECRET), "{refusal}");
    }

    #[test]
    fn internal_paths_are_everything_under_internal() {
        for path in [
            "/internal",
            "/internal/",
            "/internal/digest",
            "/internal/raft/append",
            "/internal/other",
        ] {
            assert!(is_internal(path), "{path}");
        }
        for path in ["/internals", "/v1/internal/digest", "/healthz", "/"] {
            assert!(!is_internal(path), "{path}");
        }
    }

    #[test]
    fn internal_headers_are_dropped_and_others_kept() {
        let secret = secret();
        let mut member = HeaderMap::new();
        member.insert("x-worklease-origin", HeaderValue::from_static("1"));
        member.insert(HEADER, HeaderValue::from_static(SECRET));
        ignore_unless_member(Some(&secret), &mut member);
        assert_eq!(member.len(), 2, "a member's headers are kept");
        let mut headers = HeaderMap::new();
        headers.insert("x-worklease-origin", HeaderValue::from_static("1"));
        headers.insert("x-worklease-replay", HeaderValue::from_static("1"));
        headers.insert("x-worklease-forwarded-by", HeaderValue::from_static("2"));
        headers.insert(HEADER, HeaderValue::from_static("guess"));
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        headers.insert("x-request-id", HeaderValue::from_static("r"));
        ignore_unless_member(Some(&secret), &mut headers);
        let mut left: Vec<&str> = headers.keys().map(|name| name.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "x-request-id"]);
    }
}
