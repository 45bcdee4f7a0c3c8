//! The credential a request presents: `Authorization: Bearer T`, else `x-api-key: T` (the
//! official SDKs' `auth_token` and `api_key`). Never logged, never echoed.

use axum::http::header::{HeaderMap, HeaderName, AUTHORIZATION};

const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// What a request presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presented<'a> {
    /// No credential header.
    Nothing,
    /// A header that is not visible text, or an `Authorization` of another scheme.
    Unreadable,
    /// The credential's text.
    Text(&'a str),
}

pub(crate) fn of(headers: &HeaderMap) -> Presented<'_> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let bearer = value
            .to_str()
            .ok()
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        return match bearer {
            Some(token) if !token.is_empty() => Presented::Text(token),
            _ => Presented::Unreadable,
        };
    }
    // Looked up only without `Authorization`: a header outside the standard set is hashed.
    match headers.get(API_KEY).map(|value| value.to_str()) {
        None => Presented::Nothing,
        Some(Ok(token)) if !token.trim().is_empty() => Presented::Text(token.trim()),
        Some(_) => Presented::Unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_bytes(value).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn bearer_first_then_api_key() {
        assert_eq!(of(&headers(&[])), Presented::Nothing);
        let both = headers(&[("authorization", b"Bearer a"), ("x-api-key", b"b")]);
        assert_eq!(of(&both), Presented::Text("a"));
        assert_eq!(of(&headers(&[("x-api-key", b" b ")])), Presented::Text("b"));
        for unreadable in [&b"Basic a"[..], b"Bearer", b"Bearer  ", b"bearer \xff"] {
            let headers = headers(&[("authorization", unreadable)]);
            assert_eq!(of(&headers), Presented::Unreadable, "{unreadable:?}");
        }
        assert_eq!(
            of(&headers(&[("x-api-key", b"\xff")])),
            Presented::Unreadable
        );
    }
}
