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
//!
//! A member may hold more than one secret, so the secret rotates without stopping the cluster:
//! it sends the first and accepts each of them (docs/security.md, "Rotating the cluster
//! secret", has the three rolling restarts).

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

/// One `--cluster-secret` value, checked. Its `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretText(Box<str>);

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(..)")
    }
}

impl SecretText {
    /// One `--cluster-secret` value: 32 to 256 visible ASCII characters other than the comma,
    /// which separates the values of `WORKLEASE_CLUSTER_SECRET`.
    ///
    /// # Errors
    ///
    /// Why the value cannot be a cluster secret (without the value).
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() < MIN_LEN
            || raw.len() > MAX_LEN
            || !raw.bytes().all(|b| b.is_ascii_graphic() && b != b',')
        {
            return Err(format!(
                "a cluster secret is {MIN_LEN} to {MAX_LEN} visible ASCII characters other than \
                 the comma, which separates secrets (`openssl rand -hex 32` makes one)"
            ));
        }
        Ok(Self(raw.into()))
    }
}

/// The cluster secrets a member holds: the one it sends, first, and every one it accepts (that
/// one included). Its `Debug` does not print them.
#[derive(Clone)]
pub(crate) struct ClusterSecret(Arc<Inner>);

struct Inner {
    /// The first is sent; all are accepted.
    secrets: Box<[SecretText]>,
    /// Paces the error about calls that present another cluster secret.
    refused: crate::tls::Throttle,
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSecret")
            .field("accepted", &self.0.secrets.len())
            .finish_non_exhaustive()
    }
}

impl ClusterSecret {
    /// A member's secrets, in the order given: it sends the first and accepts each. `None`
    /// when `secrets` is empty.
    pub(crate) fn new(secrets: &[SecretText]) -> Option<Self> {
        if secrets.is_empty() {
            return None;
        }
        Some(Self(Arc::new(Inner {
            secrets: secrets.into(),
            refused: crate::tls::Throttle::default(),
        })))
    }

    /// One secret, sent and accepted.
    ///
    /// # Errors
    ///
    /// As [`SecretText::parse`].
    #[cfg(test)]
    pub(crate) fn parse(raw: &str) -> Result<Self, String> {
        let text = SecretText::parse(raw)?;
        Ok(Self::new(&[text]).expect("one secret"))
    }

    /// The header value a member sends: its first secret.
    pub(crate) fn as_str(&self) -> &str {
        &self.0.secrets[0].0
    }

    /// How many secrets it accepts (more than one while the secret rotates).
    pub(crate) fn accepted(&self) -> usize {
        self.0.secrets.len()
    }

    /// Whether `presented` is one of the secrets, each compared in time that does not depend
    /// on where they differ, and every one compared whichever matches.
    pub(crate) fn is(&self, presented: &[u8]) -> bool {
        self.0
            .secrets
            .iter()
            .fold(subtle::Choice::from(0), |found, secret| {
                found | secret.0.as_bytes().ct_eq(presented)
            })
            .into()
    }

    /// Whether `headers` carry this secret in [`HEADER`].
    pub(crate) fn is_presented_in(&self, headers: &HeaderMap) -> bool {
        headers
            .get(HEADER)
            .is_some_and(|value| self.is(value.as_bytes()))
    }

    /// Refuses a secret (any of them) that is also an admin token: whoever holds the token
    /// would hold the cluster's own credential.
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
                "every --cluster-secret must differ from every --token: a cluster secret \
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
    fn a_rotating_member_sends_its_first_secret_and_admits_each() {
        let new = "fedcba9876543210fedcba9876543210";
        let texts = [SECRET, new].map(|raw| SecretText::parse(raw).expect("a secret"));
        let rotating = ClusterSecret::new(&texts).expect("secrets");
        assert_eq!(rotating.as_str(), SECRET);
        let mut headers = HeaderMap::new();
        for (presented, admitted) in [(SECRET, true), (new, true), (&new[1..], false)] {
            headers.insert(HEADER, HeaderValue::from_str(presented).unwrap());
            assert_eq!(
                admit(Some(&rotating), &headers, "/internal/raft/vote").is_ok(),
                admitted,
                "{presented}"
            );
        }
        assert!(ClusterSecret::new(&[]).is_none());
        let shown = format!("{rotating:?} {:?}", texts[1]);
        assert!(!shown.contains(SECRET) && !shown.contains(new), "{shown}");
        // A comma separates secrets, so no secret holds one.
        assert!(SecretText::parse(&format!("{SECRET},x")).is_err());
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
