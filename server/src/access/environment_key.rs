//! Environment keys' text (docs/contract.md §10): `wlk_`, the environment's id, `_`, and 64
//! lowercase hex digits of 256 bits from the OS random source. The environment's id is in the
//! text so a presented key is checked against that one environment's digests (one SHA-256
//! and at most [`worklease::MAX_KEYS_PER_ENVIRONMENT`] comparisons), never a search of the table.
//!
//! Self-contained (the crate `worklease`, `sha2` and `getrandom` only), so the fuzz target
//! includes this file as it is.

use sha2::{Digest, Sha256};
use worklease::{EnvironmentId, KeyDigest};

/// What every environment key starts with.
pub(crate) const PREFIX: &str = "wlk_";

/// Hex digits of a key's random part: 32 bytes, 256 bits.
const RANDOM_HEX: usize = 64;

/// A presented key of the right shape: the environment id's text it names and its digest.
/// Whether any environment holds that digest is for the table to say.
///
/// The environment's text is not parsed into an id: the table finds an environment by its
/// text, and ids have one spelling each, so text equality is id equality. A key whose text
/// names no environment matches no digest; [`PresentedKey::names_an_environment`] tells that
/// case apart, when a key was refused, for the refusal's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PresentedKey<'a> {
    pub(crate) environment: &'a str,
    pub(crate) digest: KeyDigest,
}

impl PresentedKey<'_> {
    /// Whether the key's environment text is a well-formed environment id.
    pub(crate) fn names_an_environment(&self) -> bool {
        EnvironmentId::parse(self.environment).is_ok()
    }
}

/// A new key for `environment`, as text (shown once) and as the digest the table keeps.
///
/// # Errors
///
/// The OS random source's failure, as text.
pub(crate) fn mint(environment: &EnvironmentId) -> Result<(String, KeyDigest), String> {
    let mut random = [0u8; RANDOM_HEX / 2];
    getrandom::getrandom(&mut random)
        .map_err(|error| format!("the OS random source failed: {error}"))?;
    let mut key = format!("{PREFIX}{environment}_");
    for byte in random {
        key.push_str(&format!("{byte:02x}"));
    }
    let digest = digest(&key);
    Ok((key, digest))
}

/// The digest a table keeps for `key`.
pub(crate) fn digest(key: &str) -> KeyDigest {
    KeyDigest::from_bytes(Sha256::digest(key.as_bytes()).into())
}

/// Reads a presented credential as an environment key: `None` unless it has the shape of one
/// (prefix, some environment text, `_`, 64 lowercase hex digits).
pub(crate) fn parse(presented: &str) -> Option<PresentedKey<'_>> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (environment, random) = rest.split_at_checked(rest.len().checked_sub(RANDOM_HEX)?)?;
    let environment = environment.strip_suffix('_')?;
    // Every digit looked at, without a branch per digit: the loop vectorises (a byte-by-byte
    // check that stops at the first bad digit costs ~500 instructions, callgrind).
    let stray = random.bytes().fold(false, |stray, byte| {
        stray | !(byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    });
    if stray || environment.is_empty() {
        return None;
    }
    Some(PresentedKey {
        environment,
        digest: digest(presented),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_key_parses_back_to_its_environment_and_digest() {
        let environment: EnvironmentId = "env_019f3be4fd2475d9a784bf2c739e1194".parse().unwrap();
        let (key, stored) = mint(&environment).unwrap();
        assert!(key.starts_with("wlk_env_019f3be4fd2475d9a784bf2c739e1194_"));
        assert_eq!(key.len(), 4 + 36 + 1 + 64);
        let parsed = parse(&key).unwrap();
        assert_eq!(parsed.environment, environment.to_string());
        assert!(parsed.names_an_environment());
        assert_eq!(parsed.digest, stored);
        let (other, _) = mint(&environment).unwrap();
        assert_ne!(key, other, "random");
    }

    #[test]
    fn anything_else_is_not_a_key() {
        let (key, _) = mint(&"env_a".parse().unwrap()).unwrap();
        for bad in [
            String::new(),
            "wlk_".to_owned(),
            key[..key.len() - 1].to_owned(),
            format!("{key}0"),
            key.to_uppercase(),
            key.replacen("wlk_", "wls_", 1),
            key.replacen("env_a", "", 1),
            format!("{}g", &key[..key.len() - 1]),
        ] {
            assert_eq!(parse(&bad), None, "{bad}");
        }
        // Text that is no environment id has a key's shape, and names no environment.
        for odd in [
            key.replacen("env_a", "env_", 1),
            key.replacen("env_a", "env_a b", 1),
        ] {
            assert!(!parse(&odd).unwrap().names_an_environment(), "{odd}");
        }
    }
}
