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

/// A well-formed environment key: the environment it names and its digest. Whether any
/// environment holds that digest is for the table to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PresentedKey {
    pub(crate) environment: EnvironmentId,
    pub(crate) digest: KeyDigest,
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
/// (prefix, a well-formed environment id, `_`, 64 lowercase hex digits).
pub(crate) fn parse(presented: &str) -> Option<PresentedKey> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (environment, random) = rest.rsplit_once('_')?;
    if random.len() != RANDOM_HEX
        || !random
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    {
        return None;
    }
    let environment = EnvironmentId::parse(environment).ok()?;
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
        assert_eq!(parsed.environment, environment);
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
            key.replacen("env_a", "env_", 1),
            key.replacen("env_a", "env_a b", 1),
            format!("{}g", &key[..key.len() - 1]),
        ] {
            assert_eq!(parse(&bad), None, "{bad}");
        }
    }
}
