//! The admin tokens (`--token`, several for rotation): any of them opens everything on the API.

use subtle::ConstantTimeEq;

/// The admin tokens, compared in constant time in their content.
#[derive(Debug, Clone)]
pub(crate) struct AdminTokens(Vec<Box<[u8]>>);

impl AdminTokens {
    pub(crate) fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(tokens: I) -> Self {
        Self(
            tokens
                .into_iter()
                .map(|token| token.as_ref().as_bytes().into())
                .collect(),
        )
    }

    /// Whether `presented` is one of the tokens. Every token is compared (no early return), so
    /// the time taken does not say which token, or how much of one, matched.
    pub(crate) fn admit(&self, presented: &str) -> bool {
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |matched, token| {
                matched | token.as_ref().ct_eq(presented.as_bytes())
            })
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_token_admits_and_nothing_else_does() {
        let tokens = AdminTokens::new(["old-token", "new-token"]);
        assert!(tokens.admit("old-token"));
        assert!(tokens.admit("new-token"));
        for other in ["", "old-toke", "old-tokenx", "new-token ", "NEW-TOKEN"] {
            assert!(!tokens.admit(other), "{other}");
        }
        assert!(!AdminTokens::new(Vec::<String>::new()).admit(""));
    }
}
