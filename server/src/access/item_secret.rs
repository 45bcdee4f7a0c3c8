//! Item secrets (docs/contract.md §10): the credential a poll hands out with an item, good for
//! that item's heartbeat and stop while the delivery it came with is current.
//!
//! A poll's `secret` is the URL-safe base64 (no padding) of `{"sessions_token": "wls_…"}`,
//! the payload the official SDK's worker decodes. The `sessions_token` is `wls_` and the
//! URL-safe base64 of:
//!
//! ```text
//! version (low 4 bits: 2) and which ids are minted (bit 4: the environment's, bit 5: the work's)
//! | environment id | work id | delivered_at (i64 µs, LE)
//! | lapses (LEB128) | lease_epoch at delivery (LEB128)
//! | worker id (u8 length, 0 for none, text) | HMAC-SHA256 of everything before, first 16 bytes
//! ```
//!
//! A minted id (the field's prefix, `env_` or `work_`, and 32 lowercase hex digits) is the 16
//! bytes of its digits, and its bit is set; any other id is its length (1–128) and its text.
//! Numbers are LEB128 in their shortest form. So each delivery has one spelling. A heartbeat
//! that presents a token decodes, hashes and receives every byte of it, so the layout is kept
//! short: minted ids and no worker id make a token of 84 characters, and with a worker id of
//! up to 11 characters the HMAC hashes two SHA-256 blocks (the key's own blocks are hashed
//! once, [`Verifier`]; a block costs about 45 ns on the bench machine); longer worker ids add
//! a block.
//! The tag is the HMAC truncated to its first 128 bits, as RFC 2104 allows (at least half the
//! hash, and at least 80 bits).
//!
//! Version 1 tokens (ids as length and text, counters as u32 LE, the whole 32-byte tag; 171
//! characters for minted ids and no worker id, three blocks) are still accepted,
//! so the items a server handed out before an upgrade keep their secrets; polls hand out
//! version 2 only.
//!
//! Tokens are signed under the table's item-secret key ([`worklease::ItemSecretKey`]), which
//! every member holds. So checking a secret costs one HMAC and the item read the request makes
//! anyway: no per-item secret is stored. A delivery is current while the item is in the lease
//! that delivery leads to ([`Delivery::is_current`]): a reclaim records a new delivery time, a
//! lapse counts in `lapses`, an ack moves `lease_epoch` by one; any of those that belongs to
//! another delivery ends the secret.
//!
//! Self-contained (`worklease`, `hmac`, `sha2`, `base64` only), so the fuzz target includes
//! this file as it is.

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use worklease::{EnvironmentId, ItemSecretKey, ItemSummary, WorkId, WorkItem, WorkState};

/// What every `sessions_token` starts with.
pub(crate) const PREFIX: &str = "wls_";

/// The layout polls hand out (a token's first byte).
pub(crate) const VERSION: u8 = 2;

/// The first layout, still accepted.
pub(crate) const VERSION_1: u8 = 1;

/// The longest id or worker id a token carries as text.
const MAX_TEXT: usize = 128;

/// A version 2 token's first byte: its environment id is minted (16 bytes follow).
const MINTED_ENVIRONMENT: u8 = 0x10;

/// A version 2 token's first byte: its work id is minted.
const MINTED_WORK: u8 = 0x20;

/// Hex digits of a minted id after its prefix.
const MINTED_HEX: usize = 32;

/// The longest token a well-formed delivery makes, with room: longer presented text is not
/// decoded at all.
const MAX_TOKEN_CHARS: usize = 512;

/// Room after the decoded bytes for two minted ids' text (`work_` and 32 digits at most each),
/// which a version 2 token carries as bytes.
const ID_TEXT_ROOM: usize = 2 * (5 + MINTED_HEX);

/// The size of the buffer [`parse`] decodes into, on the caller's stack: the most bytes the
/// base64 of the longest accepted text decodes to, and room for its ids' text.
pub(crate) const MAX_TOKEN_BYTES: usize = MAX_TOKEN_CHARS / 4 * 3 + ID_TEXT_ROOM;

/// Bytes of a layout's tag: the HMAC-SHA256's first 16 (version 2), all 32 (version 1).
const fn tag_bytes(version: u8) -> usize {
    if version == VERSION {
        16
    } else {
        32
    }
}

/// One delivery of one item: what a secret is bound to. Owned when a poll makes one, borrowed
/// from the decoded token when a request presents one (a check allocates nothing).
///
/// The ids and the worker are kept as the token's bytes, not checked as UTF-8: a check
/// compares them with the request's path and the item's worker, both text, and only a token
/// this server signed (whose bytes are its ids' text) verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery<'a> {
    /// The environment's id, canonical text.
    pub(crate) environment: Cow<'a, [u8]>,
    /// The item's id, canonical text.
    pub(crate) work: Cow<'a, [u8]>,
    /// When the poll handed it out (µs since the Unix epoch).
    delivered_at: i64,
    /// The item's lapse count then.
    lapses: u32,
    /// Its `lease_epoch` then (the ack that follows makes it one more).
    epoch: u32,
    /// The worker it was delivered to, if the poll named one.
    worker: Option<Cow<'a, [u8]>>,
}

impl Delivery<'static> {
    /// The delivery a poll just made: `None` for an item no poll handed out.
    pub(crate) fn of(item: &WorkItem) -> Option<Self> {
        Some(Self {
            environment: Cow::Owned(item.environment_id.to_string().into_bytes()),
            work: Cow::Owned(item.id.to_string().into_bytes()),
            delivered_at: item.delivered_at?.unix_micros(),
            lapses: item.lapses,
            epoch: item.lease_epoch,
            worker: item
                .worker
                .as_ref()
                .map(|worker| Cow::Owned(worker.as_str().as_bytes().to_vec())),
        })
    }
}

impl Delivery<'_> {
    /// Whether `item`, as the table holds it now, is still this delivery's: the same queued
    /// delivery, the lease its ack opened (no lapse since, no other ack, the same named
    /// worker), or stopped from either.
    pub(crate) fn is_current(&self, item: &ItemSummary) -> bool {
        let same_worker = || {
            self.worker.as_deref().is_none_or(|worker| {
                item.worker.as_ref().map(|held| held.as_str().as_bytes()) == Some(worker)
            })
        };
        if item.lapses != self.lapses {
            return false;
        }
        match item.state {
            WorkState::Queued => {
                item.delivered_at.map(|at| at.unix_micros()) == Some(self.delivered_at)
                    && item.lease_epoch == self.epoch
                    && same_worker()
            }
            WorkState::Starting | WorkState::Active | WorkState::Stopping => {
                item.lease_epoch == self.epoch.wrapping_add(1) && same_worker()
            }
            WorkState::Stopped => {
                item.lease_epoch == self.epoch || item.lease_epoch == self.epoch.wrapping_add(1)
            }
        }
    }

    /// The signed bytes of this delivery's token in `version`'s layout.
    fn body(&self, version: u8) -> Vec<u8> {
        let mut body =
            Vec::with_capacity(96 + self.worker.as_ref().map_or(0, |worker| worker.len()));
        body.push(version);
        for (text, prefix, flag) in [
            (&self.environment, EnvironmentId::PREFIX, MINTED_ENVIRONMENT),
            (&self.work, WorkId::PREFIX, MINTED_WORK),
        ] {
            match minted(text, prefix).filter(|_| version == VERSION) {
                Some(bytes) => {
                    body[0] |= flag;
                    body.extend_from_slice(&bytes);
                }
                None => push_text(&mut body, text),
            }
        }
        body.extend_from_slice(&self.delivered_at.to_le_bytes());
        for counter in [self.lapses, self.epoch] {
            if version == VERSION {
                push_leb128(&mut body, counter);
            } else {
                body.extend_from_slice(&counter.to_le_bytes());
            }
        }
        push_text(&mut body, self.worker.as_deref().unwrap_or_default());
        body
    }
}

/// `value` in LEB128: seven bits a byte, low first, the high bit set on all but the last.
fn push_leb128(body: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        body.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    body.push(value as u8);
}

/// How a token spells one of its id fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdField {
    /// Version 1: its length and text, whatever the id.
    Text,
    /// Version 2, its bit set: the 16 bytes of a minted id's digits.
    Minted,
    /// Version 2, its bit clear: its length and text, which must not have the minted shape
    /// (that id's one spelling is [`IdField::Minted`]).
    NotMinted,
}

/// A length byte and the text (ids and worker ids are at most 128 bytes).
fn push_text(body: &mut Vec<u8>, text: &[u8]) {
    let len = u8::try_from(text.len()).expect("invariant: ids and worker ids fit a length byte");
    body.push(len);
    body.extend_from_slice(text);
}

/// The 16 bytes an id's text stands for when it is `prefix` and 32 lowercase hex digits.
fn minted(text: &[u8], prefix: &str) -> Option<[u8; MINTED_HEX / 2]> {
    let digits = text.strip_prefix(prefix.as_bytes())?;
    if digits.len() != MINTED_HEX {
        return None;
    }
    let mut bytes = [0; MINTED_HEX / 2];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
    }
    Some(bytes)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// Each byte's two lowercase hex digits, so a minted id's text is written a byte at a time.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0x0f]];
        byte += 1;
    }
    pairs
};

/// Writes `prefix` and the hex digits of `bytes` at the start of `room`, and returns them.
fn minted_text<'a>(prefix: &str, bytes: &[u8], room: &'a mut [u8]) -> Option<&'a [u8]> {
    let text = room.get_mut(..prefix.len() + 2 * bytes.len())?;
    let (head, digits) = text.split_at_mut(prefix.len());
    head.copy_from_slice(prefix.as_bytes());
    for (pair, byte) in digits.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
    Some(text)
}

fn mac(key: &ItemSecretKey) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .expect("invariant: HMAC takes a key of any length")
}

/// The `sessions_token` for `delivery`, signed with `key`: what polls hand out.
pub(crate) fn sessions_token(key: &ItemSecretKey, delivery: &Delivery<'_>) -> String {
    sign(key, delivery, VERSION)
}

/// The `sessions_token` for `delivery` in `version`'s layout, signed with `key`.
pub(crate) fn sign(key: &ItemSecretKey, delivery: &Delivery<'_>, version: u8) -> String {
    let mut bytes = delivery.body(version);
    let mut mac = mac(key);
    mac.update(&bytes);
    let tag = mac.finalize().into_bytes();
    bytes.extend_from_slice(&tag[..tag_bytes(version)]);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A poll's `secret`: the URL-safe base64 (no padding) of `{"sessions_token": "…"}`.
pub(crate) fn secret(sessions_token: &str) -> String {
    let payload = serde_json::json!({ "sessions_token": sessions_token });
    URL_SAFE_NO_PAD.encode(payload.to_string())
}

/// A presented token of the right shape, not yet verified, borrowed from the buffer it was
/// decoded into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signed<'a> {
    pub(crate) delivery: Delivery<'a>,
    /// Its layout.
    pub(crate) version: u8,
    signed: &'a [u8],
    tag: &'a [u8],
}

impl Signed<'_> {
    /// Whether the tag is `key`'s for these bytes (compared in constant time by `hmac`).
    pub(crate) fn verify(&self, key: &ItemSecretKey) -> bool {
        self.verify_with(mac(key))
    }

    fn verify_with(&self, mut mac: Hmac<Sha256>) -> bool {
        mac.update(self.signed);
        // The tag's length is the layout's (checked by `parse`): a version 2 tag is the
        // HMAC's first 16 bytes, a version 1 tag all of it.
        mac.verify_truncated_left(self.tag).is_ok()
    }
}

/// An item-secret key with its HMAC state prepared (the key's inner and outer blocks hashed
/// once), so a check hashes only the token's own bytes.
#[derive(Clone)]
pub(crate) struct Verifier {
    key: ItemSecretKey,
    mac: Hmac<Sha256>,
}

impl Verifier {
    pub(crate) fn new(key: ItemSecretKey) -> Self {
        Self {
            mac: mac(&key),
            key,
        }
    }

    /// Whether this verifier is for `key`.
    pub(crate) fn is_for(&self, key: &ItemSecretKey) -> bool {
        self.key == *key
    }

    /// [`Signed::verify`] with the prepared state.
    pub(crate) fn verify(&self, signed: &Signed<'_>) -> bool {
        signed.verify_with(self.mac.clone())
    }
}

/// Reads a presented credential as a `sessions_token`, decoding it into `buffer`: `None`
/// unless it has the shape of one (whatever its tag), in its layout's one spelling.
pub(crate) fn parse<'a>(
    presented: &str,
    buffer: &'a mut [u8; MAX_TOKEN_BYTES],
) -> Option<Signed<'a>> {
    let encoded = presented.strip_prefix(PREFIX)?;
    if encoded.len() > MAX_TOKEN_CHARS {
        return None;
    }
    let (decoded, room) = buffer.split_at_mut(MAX_TOKEN_CHARS / 4 * 3);
    let len = URL_SAFE_NO_PAD.decode_slice(encoded, decoded).ok()?;
    let bytes: &'a [u8] = &decoded[..len];
    let first = *bytes.first()?;
    let version = first & 0x0f;
    let flags = first & !0x0f;
    let known_flags = if version == VERSION {
        MINTED_ENVIRONMENT | MINTED_WORK
    } else if version == VERSION_1 {
        0
    } else {
        return None;
    };
    if flags & !known_flags != 0 {
        return None;
    }
    let (signed, tag) = bytes.split_at_checked(bytes.len().checked_sub(tag_bytes(version))?)?;
    let mut reader = Reader(signed.get(1..)?);
    let (environment_room, work_room) = room.split_at_mut(ID_TEXT_ROOM / 2);
    let spelling = |minted_flag: u8| match (version == VERSION, flags & minted_flag != 0) {
        (false, _) => IdField::Text,
        (true, true) => IdField::Minted,
        (true, false) => IdField::NotMinted,
    };
    let environment = reader.id(
        EnvironmentId::PREFIX,
        spelling(MINTED_ENVIRONMENT),
        environment_room,
    )?;
    let work = reader.id(WorkId::PREFIX, spelling(MINTED_WORK), work_room)?;
    let delivered_at = i64::from_le_bytes(reader.take(8)?.try_into().ok()?);
    let (lapses, epoch) = if version == VERSION {
        (reader.leb128()?, reader.leb128()?)
    } else {
        (reader.u32_le()?, reader.u32_le()?)
    };
    let worker = reader.text()?;
    if !reader.0.is_empty() {
        return None;
    }
    Some(Signed {
        delivery: Delivery {
            environment: Cow::Borrowed(environment),
            work: Cow::Borrowed(work),
            delivered_at,
            lapses,
            epoch,
            worker: (!worker.is_empty()).then_some(Cow::Borrowed(worker)),
        },
        version,
        signed,
        tag,
    })
}

/// Reads a poll's `secret` back to its `sessions_token` (what the SDK does).
#[cfg(test)]
pub(crate) fn token_of_secret(secret: &str) -> Option<String> {
    let json = URL_SAFE_NO_PAD.decode(secret).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&json).ok()?;
    value["sessions_token"].as_str().map(str::to_owned)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    /// A length byte and that many bytes: at most [`MAX_TEXT`], as ids and worker ids are.
    fn text(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(*self.take(1)?.first()?);
        if len > MAX_TEXT {
            return None;
        }
        self.take(len)
    }

    /// An id field spelled as `field` says, as text (a minted one written out into `room`).
    fn id(&mut self, prefix: &str, field: IdField, room: &'a mut [u8]) -> Option<&'a [u8]> {
        if field == IdField::Minted {
            return minted_text(prefix, self.take(MINTED_HEX / 2)?, room);
        }
        let text = self.text()?;
        if text.is_empty() || (field == IdField::NotMinted && minted(text, prefix).is_some()) {
            return None;
        }
        Some(text)
    }

    fn u32_le(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    /// A LEB128 number in its shortest form that fits 32 bits.
    fn leb128(&mut self) -> Option<u32> {
        let mut value: u32 = 0;
        for at in 0..5 {
            let byte = *self.take(1)?.first()?;
            let bits = u32::from(byte & 0x7f);
            // The fifth byte holds the top 4 bits only.
            if at == 4 && bits > 0x0f {
                return None;
            }
            value |= bits << (7 * at);
            if byte & 0x80 == 0 {
                // A last byte of 0 after others would be a longer spelling of the same number.
                return (at == 0 || byte != 0).then_some(value);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use worklease::{LeaseTable, Metadata, PollRequest, Polled, Timestamp};

    fn delivered(table: &mut LeaseTable, at: i64, worker: Option<&str>) -> WorkItem {
        let request = PollRequest {
            worker: worker.map(|w| worklease::WorkerId::parse(w).unwrap()),
            reclaim_older_than_ms: 0,
            block_ms: None,
        };
        match table
            .poll("env_a", &request, Timestamp::from_unix_micros(at))
            .unwrap()
        {
            Polled::Delivered(item) => *item,
            Polled::Empty { .. } => panic!("nothing delivered"),
        }
    }

    fn table() -> LeaseTable {
        let mut table = LeaseTable::default();
        table
            .register_environment(
                "env_a".parse().unwrap(),
                worklease::EnvironmentKind::SelfHosted,
            )
            .unwrap();
        table
            .create_work(
                "env_a",
                "work_1".parse().unwrap(),
                "sess_1".parse().unwrap(),
                Metadata::new(),
                Timestamp::from_unix_micros(1),
            )
            .unwrap();
        table
    }

    #[test]
    fn a_token_round_trips_and_only_its_key_verifies_it() {
        let mut table = table();
        let item = delivered(&mut table, 10, Some("w1"));
        let delivery = Delivery::of(&item).unwrap();
        let key = ItemSecretKey::from_bytes([1; 32]);
        let token = sessions_token(&key, &delivery);
        let mut buffer = [0; MAX_TOKEN_BYTES];
        let signed = parse(&token, &mut buffer).unwrap();
        assert_eq!(signed.delivery, delivery);
        assert!(signed.verify(&key));
        assert!(!signed.verify(&ItemSecretKey::from_bytes([2; 32])));
        assert_eq!(
            token_of_secret(&secret(&token)).as_deref(),
            Some(token.as_str())
        );
        // Every truncation and every changed character is refused, by shape or by tag.
        for len in 0..token.len() {
            assert!(
                parse(&token[..len], &mut [0; MAX_TOKEN_BYTES]).is_none_or(|s| !s.verify(&key)),
                "{len}"
            );
        }
        let mut chars: Vec<char> = token.chars().collect();
        for at in PREFIX.len()..chars.len() {
            let was = chars[at];
            chars[at] = if was == 'A' { 'B' } else { 'A' };
            let changed: String = chars.iter().collect();
            assert!(
                parse(&changed, &mut [0; MAX_TOKEN_BYTES]).is_none_or(|s| !s.verify(&key)),
                "{changed}"
            );
            chars[at] = was;
        }
    }

    #[test]
    fn minted_ids_make_a_short_token_and_version_1_tokens_still_verify() {
        let environment = format!("env_{}", "0123456789abcdef".repeat(2));
        let work = format!("work_{}", "fedcba9876543210".repeat(2));
        let delivery = Delivery {
            environment: Cow::Owned(environment.into_bytes()),
            work: Cow::Owned(work.into_bytes()),
            delivered_at: 1_700_000_000_000_000,
            lapses: 0,
            epoch: 0,
            worker: None,
        };
        let key = ItemSecretKey::from_bytes([3; 32]);
        let token = sessions_token(&key, &delivery);
        assert_eq!(token.len(), 84, "{token}");
        for (version, token) in [
            (VERSION, token),
            (VERSION_1, sign(&key, &delivery, VERSION_1)),
        ] {
            let mut buffer = [0; MAX_TOKEN_BYTES];
            let signed = parse(&token, &mut buffer).unwrap();
            assert_eq!(signed.version, version);
            assert_eq!(signed.delivery, delivery);
            assert!(signed.verify(&key), "version {version}");
            assert!(Verifier::new(key).verify(&signed), "version {version}");
            assert!(!signed.verify(&ItemSecretKey::from_bytes([4; 32])));
            assert_eq!(sign(&key, &signed.delivery, version), token);
        }
        // A version 2 token that spells a minted id as text is not one.
        let mut text_spelled = vec![VERSION];
        for text in [&delivery.environment, &delivery.work] {
            push_text(&mut text_spelled, text);
        }
        text_spelled.extend_from_slice(&delivery.delivered_at.to_le_bytes());
        // Lapses 0 and epoch 0 (one LEB128 byte each), no worker id (length 0).
        text_spelled.extend_from_slice(&[0, 0, 0]);
        let mut mac = mac(&key);
        mac.update(&text_spelled);
        text_spelled.extend_from_slice(&mac.finalize().into_bytes()[..16]);
        let odd = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(text_spelled));
        assert!(parse(&odd, &mut [0; MAX_TOKEN_BYTES]).is_none());
    }

    #[test]
    fn counters_are_leb128_in_their_shortest_form() {
        for value in [0, 1, 127, 128, 300, 16_383, 16_384, u32::MAX - 1, u32::MAX] {
            let mut bytes = Vec::new();
            push_leb128(&mut bytes, value);
            let mut reader = Reader(&bytes);
            assert_eq!(reader.leb128(), Some(value), "{bytes:?}");
            assert!(reader.0.is_empty());
        }
        // Longer spellings, more than 32 bits, and a number cut short are not numbers.
        for bad in [
            &[0x80, 0x00][..],
            &[0xff, 0x80, 0x00],
            &[0xff, 0xff, 0xff, 0xff, 0x1f],
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            &[0x80],
            &[],
        ] {
            assert_eq!(Reader(bad).leb128(), None, "{bad:?}");
        }
        let key = ItemSecretKey::from_bytes([5; 32]);
        let delivery = Delivery {
            environment: Cow::Borrowed(b"env_a"),
            work: Cow::Borrowed(b"work_1"),
            delivered_at: -1,
            lapses: 300,
            epoch: u32::MAX,
            worker: Some(Cow::Borrowed(b"w")),
        };
        let token = sessions_token(&key, &delivery);
        let mut buffer = [0; MAX_TOKEN_BYTES];
        let signed = parse(&token, &mut buffer).unwrap();
        assert_eq!(signed.delivery, delivery);
        assert!(signed.verify(&key));
    }

    #[test]
    fn a_redelivery_or_a_lapse_ends_the_delivery() {
        let mut table = table();
        let first = Delivery::of(&delivered(&mut table, 10, None)).unwrap();
        let now = Timestamp::from_unix_micros(20);
        assert!(first.is_current(&table.summary("env_a", "work_1", now).unwrap()));
        // Reclaimed (the window is 0 ms here): a new delivery.
        let second = Delivery::of(&delivered(&mut table, 20, None)).unwrap();
        let item = table.summary("env_a", "work_1", now).unwrap();
        assert!(!first.is_current(&item));
        assert!(second.is_current(&item));
        table.ack("env_a", "work_1", None, now).unwrap();
        let leased = table.summary("env_a", "work_1", now).unwrap();
        assert!(second.is_current(&leased));
        // The lease lapses (60 s by default) and the item is queued again.
        let later = Timestamp::from_unix_micros(20 + 61_000_000);
        let lapsed = table.summary("env_a", "work_1", later).unwrap();
        assert_eq!(lapsed.state, WorkState::Queued);
        assert!(!second.is_current(&lapsed));
    }

    #[test]
    fn a_named_worker_binds_the_delivery_to_the_lease() {
        let mut table = table();
        let first = Delivery::of(&delivered(&mut table, 10, Some("w1"))).unwrap();
        let _second = delivered(&mut table, 20, Some("w2"));
        let now = Timestamp::from_unix_micros(30);
        let w2 = worklease::WorkerId::parse("w2").unwrap();
        table.ack("env_a", "work_1", Some(&w2), now).unwrap();
        assert!(!first.is_current(&table.summary("env_a", "work_1", now).unwrap()));
    }
}
