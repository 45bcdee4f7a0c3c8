//! Fuzzer text as a presented credential, through the server's environment-key and
//! item-secret parsers (their source files, included as they are): never a panic, and only
//! canonical text is accepted.
//!
//! - An environment key that parses is exactly `wlk_`, the environment text it names, `_` and
//!   64 lowercase hex digits, and its digest is the SHA-256 of the text; when that text is an
//!   environment id, it is the id's own spelling.
//! - A `sessions_token` that parses and verifies under a key is the token that key signs for
//!   the delivery it names, in the token's layout (version 2, or the older version 1): no
//!   second spelling of a token (padding, trailing bits, a longer length, a minted id spelled
//!   as text) is accepted, so a token cannot be altered and still verify.
//! - A poll's `secret` built from an accepted token decodes back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use worklease::ItemSecretKey;

#[allow(dead_code, unreachable_pub)]
#[path = "../../server/src/access/environment_key.rs"]
mod environment_key;
#[allow(dead_code, unreachable_pub)]
#[path = "../../server/src/access/item_secret.rs"]
mod item_secret;

/// The key the fuzzer's tokens are checked against (and signed with, for the round trip).
const KEY: ItemSecretKey = ItemSecretKey::from_bytes([0x5a; 32]);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(key) = environment_key::parse(text) {
        let rest = text.strip_prefix("wlk_").expect("a key has the prefix");
        let (environment, random) = rest.rsplit_once('_').expect("a key has its separator");
        assert_eq!(environment, key.environment);
        if let Ok(id) = environment.parse::<worklease::EnvironmentId>() {
            assert!(key.names_an_environment());
            assert_eq!(id.to_string(), environment);
        } else {
            assert!(!key.names_an_environment());
        }
        assert_eq!(random.len(), 64);
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        assert_eq!(key.digest.as_bytes(), &digest);
    }
    let mut buffer = [0; item_secret::MAX_TOKEN_BYTES];
    if let Some(signed) = item_secret::parse(text, &mut buffer) {
        if signed.verify(&KEY) {
            assert_eq!(
                item_secret::sign(&KEY, &signed.delivery, signed.version),
                text
            );
        }
        // Re-signed with the key, any delivery that parses makes a token that parses back to
        // it and verifies, and whose poll `secret` carries it unchanged.
        let token = item_secret::sessions_token(&KEY, &signed.delivery);
        let mut again_buffer = [0; item_secret::MAX_TOKEN_BYTES];
        let again = item_secret::parse(&token, &mut again_buffer).expect("a signed token parses");
        assert_eq!(again.delivery, signed.delivery);
        assert!(again.verify(&KEY));
        let secret = item_secret::secret(&token);
        let json = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, secret)
            .expect("a secret is URL-safe base64");
        let payload: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
        assert_eq!(payload["sessions_token"].as_str(), Some(token.as_str()));
    }
});
