//! Typed identifiers: environments (`env_…`), work items (`work_…`), sessions (`sess_…`) and
//! workers.
//!
//! A prefixed id is its prefix followed by 1–64 characters of `[0-9A-Za-z]` (docs/contract.md §1). Ids are
//! validated when parsed, so a value of one of these types is always well formed. The common
//! server-minted shape, 32 lowercase hex digits (a UUIDv7), is held inline as a `u128`: no heap
//! allocation, and hashing or comparing it costs a couple of integer operations. Any other body
//! is held as shared text, so cloning an id never allocates.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use crate::excerpt::Excerpt;
use crate::time::Timestamp;

/// The longest id body docs/contract.md §1 allows.
const MAX_BODY_LEN: usize = 64;

/// A `u128` as two `u64`s: 8-byte alignment keeps an id at 24 bytes instead of 32 (a `u128`
/// is 16-aligned), and a work item packs two of them. Field order makes the derived order the
/// number's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Wide {
    high: u64,
    low: u64,
}

impl Wide {
    pub(crate) const fn of(value: u128) -> Self {
        Self {
            // Truncations intended: the two halves.
            high: (value >> 64) as u64,
            low: value as u64,
        }
    }

    pub(crate) const fn get(self) -> u128 {
        ((self.high as u128) << 64) | self.low as u128
    }
}

/// The body of a prefixed id: canonical, so two bodies are equal exactly when their texts are.
#[derive(Clone)]
enum Body {
    /// Exactly 32 lowercase hex digits, as a number (hex order equals text order).
    Hex(Wide),
    /// Any other well-formed body.
    Text(Arc<str>),
}

/// A well-formed body, borrowed: all a lookup needs, without the allocation a text body's
/// `Arc` costs. Hashes and compares exactly like the [`Body`] it names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyRef<'a> {
    Hex(Wide),
    Text(&'a str),
}

impl<'a> BodyRef<'a> {
    fn parse(body: &'a str) -> Option<Self> {
        let bytes = body.as_bytes();
        // The minted shape first: it needs no other check.
        if let Ok(digits) = <&[u8; 32]>::try_from(bytes) {
            if let Some(value) = parse_lower_hex(digits) {
                return Some(Self::Hex(Wide::of(value)));
            }
        }
        if bytes.is_empty() || bytes.len() > MAX_BODY_LEN {
            return None;
        }
        if !bytes.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        Some(Self::Text(body))
    }

    /// Writes the body's text into `buf` and returns it; `buf` is only used for `Hex`.
    fn text<'b>(self, buf: &'b mut [u8; 32]) -> &'b str
    where
        'a: 'b,
    {
        match self {
            Self::Hex(wide) => {
                *buf = hex_text(wide);
                std::str::from_utf8(buf).expect("invariant: hex digits are ASCII")
            }
            Self::Text(text) => text,
        }
    }
}

/// The 32 lowercase hex digits of a value, eight at a time (SWAR, the inverse of [`hex8`]):
/// a lookup by text compares a stored id through this, which is cheaper than parsing the text.
fn hex_text(wide: Wide) -> [u8; 32] {
    let mut out = [0; 32];
    for (chunk, group) in out.chunks_exact_mut(8).zip(hex_groups(wide)) {
        chunk.copy_from_slice(&group.to_be_bytes());
    }
    out
}

/// The four groups of eight hex digits of a value, each as the big-endian `u64` of its text.
#[inline]
fn hex_groups(wide: Wide) -> [u64; 4] {
    // Truncations intended: the halves of each half.
    [
        hex_digits(wide.high >> 32),
        hex_digits(wide.high & 0xffff_ffff),
        hex_digits(wide.low >> 32),
        hex_digits(wide.low & 0xffff_ffff),
    ]
}

/// The eight hex digits of a 32-bit `group` as text, read as a big-endian `u64`.
#[inline]
fn hex_digits(group: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Spread the eight nibbles into eight bytes, least significant in byte 0.
    let mut v = group;
    v = ((v << 16) | v) & 0x0000_ffff_0000_ffff;
    v = ((v << 8) | v) & 0x00ff_00ff_00ff_00ff;
    v = ((v << 4) | v) & (ONES * 0x0f);
    // '0' + d, plus 39 more for d ≥ 10 (bit 4 of d + 6), to reach 'a'.
    let letters = ((v + ONES * 6) >> 4) & ONES;
    // The most significant digit is in the top byte: the big-endian reading of the text.
    v + ONES * u64::from(b'0') + letters * 39
}

/// Whether `text` is the hex text of `wide`: four word compares, no buffer.
#[inline]
fn is_hex_text_of(text: &[u8], wide: Wide) -> bool {
    let Ok(text) = <&[u8; 32]>::try_from(text) else {
        return false;
    };
    for (chunk, group) in text.chunks_exact(8).zip(hex_groups(wide)) {
        let chunk: [u8; 8] = chunk.try_into().expect("invariant: chunks of eight");
        if u64::from_be_bytes(chunk) != group {
            return false;
        }
    }
    true
}

impl Hash for BodyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The canonical text, so a key received as text hashes alike without being parsed.
        match self {
            Self::Hex(value) => hash_words(state, hex_groups(*value)),
            Self::Text(text) => hash_text(state, text.as_bytes()),
        }
    }
}

/// Hashes a body's text. The 32-byte shape of minted ids goes in as four big-endian words,
/// two 128-bit writes (two multiplies with foldhash, against ~40 instructions for its
/// general byte path), which a stored minted id produces from its value without encoding.
#[inline]
fn hash_text<H: Hasher>(state: &mut H, text: &[u8]) {
    match <&[u8; 32]>::try_from(text) {
        Ok(text) => {
            let mut words = [0; 4];
            for (word, chunk) in words.iter_mut().zip(text.chunks_exact(8)) {
                *word = u64::from_be_bytes(chunk.try_into().expect("invariant: chunks of eight"));
            }
            hash_words(state, words);
        }
        Err(_) => state.write(text),
    }
}

#[inline]
fn hash_words<H: Hasher>(state: &mut H, words: [u64; 4]) {
    state.write_u128(u128::from(words[0]) << 64 | u128::from(words[1]));
    state.write_u128(u128::from(words[2]) << 64 | u128::from(words[3]));
}

impl Body {
    fn parse(body: &str) -> Option<Self> {
        BodyRef::parse(body).map(|body| match body {
            BodyRef::Hex(value) => Self::Hex(value),
            BodyRef::Text(text) => Self::Text(Arc::from(text)),
        })
    }

    fn borrowed(&self) -> BodyRef<'_> {
        match self {
            Self::Hex(value) => BodyRef::Hex(*value),
            Self::Text(text) => BodyRef::Text(text),
        }
    }

    /// Writes the body's text into `buf` and returns it; `buf` is only used for `Hex`.
    fn text<'a>(&'a self, buf: &'a mut [u8; 32]) -> &'a str {
        self.borrowed().text(buf)
    }
}

/// 32 lowercase hex digits as a number, eight at a time (SWAR: each step works on eight bytes
/// in one `u64`), since this runs on every id of every request.
fn parse_lower_hex(digits: &[u8; 32]) -> Option<u128> {
    let mut value: u128 = 0;
    for chunk in digits.chunks_exact(8) {
        let chunk: [u8; 8] = chunk.try_into().expect("invariant: chunks of eight");
        value = (value << 32) | u128::from(hex8(chunk)?);
    }
    Some(value)
}

/// Eight lowercase hex digits as a number.
fn hex8(chunk: [u8; 8]) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let x = u64::from_be_bytes(chunk);
    if x & HIGH != 0 {
        return None;
    }
    // With every byte below 0x80, byte-wise `b >= c` is the high bit of `(b | 0x80) - c`,
    // and no byte borrows from its neighbour.
    let at_least = |c: u64| ((x | HIGH) - c * ONES) & HIGH;
    let digit = at_least(u64::from(b'0')) & !at_least(u64::from(b'9') + 1);
    let letter = at_least(u64::from(b'a')) & !at_least(u64::from(b'f') + 1);
    if digit | letter != HIGH {
        return None;
    }
    // Low nibble of '0'..'9' is the digit; of 'a'..'f' it is 1..6, so add 9.
    let mut v = (x & (ONES * 0x0f)) + (letter >> 7) * 9;
    v = (v | (v >> 4)) & 0x00ff_00ff_00ff_00ff;
    v = (v | (v >> 8)) & 0x0000_ffff_0000_ffff;
    v = (v | (v >> 16)) & 0xffff_ffff;
    // Masked to 32 bits just above.
    Some(v as u32)
}

impl PartialEq for Body {
    fn eq(&self, other: &Self) -> bool {
        // Canonical form: a 32-lowercase-hex body is never stored as text.
        self.borrowed() == other.borrowed()
    }
}

impl Eq for Body {}

impl Hash for Body {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // One implementation for owned and borrowed bodies, so a lookup by `WorkKey` finds
        // what was stored by `WorkId`.
        self.borrowed().hash(state);
    }
}

/// A work id as a lookup key, never allocating: a typed id's body, or a body as received.
/// A received body is not validated: a lookup hashes and compares canonical text, so a
/// malformed body simply matches no stored id, and a well-formed one costs a hash of its text
/// instead of a parse. Hashes and compares exactly like the [`WorkId`] it names.
#[derive(Clone, Copy)]
pub(crate) enum WorkKey<'a> {
    /// A work id as received, prefix included (so a 404 quotes it without rebuilding it);
    /// its body (after `work_`) is 1–64 bytes.
    Received(&'a str),
    /// A typed id's body.
    Id(BodyRef<'a>),
}

impl<'a> WorkKey<'a> {
    /// The key of a work id given as text (prefix included); `None` when it cannot be one
    /// (no prefix, or a body of the wrong length).
    pub(crate) fn parse(text: &'a str) -> Option<Self> {
        text.strip_prefix(WorkId::PREFIX)
            .filter(|body| (1..=MAX_BODY_LEN).contains(&body.len()))
            .map(|_| Self::Received(text))
    }

    /// The body of a received id.
    fn received_body(text: &str) -> &str {
        // `parse` checked the prefix, which is ASCII.
        &text[WorkId::PREFIX.len()..]
    }

    /// The body's text, written into `buf` for a hex id.
    fn text<'b>(self, buf: &'b mut [u8; 32]) -> &'b str
    where
        'a: 'b,
    {
        match self {
            Self::Received(text) => Self::received_body(text),
            Self::Id(body) => body.text(buf),
        }
    }

    /// The id's text, for a 404, built without the formatting machinery.
    pub(crate) fn excerpt(self) -> Excerpt {
        match self {
            Self::Received(text) => Excerpt::new(text),
            Self::Id(body) => {
                let mut buf = [0; 32];
                prefixed_excerpt(WorkId::PREFIX, body.text(&mut buf))
            }
        }
    }
}

/// The excerpt of `prefix` followed by `body` (at most 64 bytes), assembled on the stack.
fn prefixed_excerpt(prefix: &str, body: &str) -> Excerpt {
    const LONGEST_PREFIX: usize = 5;
    let mut text = [0u8; LONGEST_PREFIX + MAX_BODY_LEN];
    let len = prefix.len() + body.len();
    text[..prefix.len()].copy_from_slice(prefix.as_bytes());
    text[prefix.len()..len].copy_from_slice(body.as_bytes());
    Excerpt::new(std::str::from_utf8(&text[..len]).expect("invariant: ids are ASCII"))
}

impl PartialEq for WorkKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (*self, *other) {
            // Canonical bodies: equal exactly when their texts are.
            (Self::Id(a), Self::Id(b)) => a == b,
            // The lookup of a minted id received as text: one encode, one 32-byte compare.
            (Self::Id(BodyRef::Hex(value)), Self::Received(text))
            | (Self::Received(text), Self::Id(BodyRef::Hex(value))) => {
                is_hex_text_of(Self::received_body(text).as_bytes(), value)
            }
            (a, b) => {
                let (mut left, mut right) = ([0; 32], [0; 32]);
                a.text(&mut left) == b.text(&mut right)
            }
        }
    }
}

impl Eq for WorkKey<'_> {}

impl Hash for WorkKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Self::Received(text) => hash_text(state, Self::received_body(text).as_bytes()),
            Self::Id(body) => body.hash(state),
        }
    }
}

impl fmt::Debug for WorkKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkKey({:?})", self.excerpt())
    }
}

impl WorkId {
    /// This id as a lookup key.
    pub(crate) fn key(&self) -> WorkKey<'_> {
        WorkKey::Id(self.0.borrowed())
    }
}

impl Ord for Body {
    fn cmp(&self, other: &Self) -> Ordering {
        self.borrowed().cmp(&other.borrowed())
    }
}

impl Ord for BodyRef<'_> {
    /// Text order (hex order equals it for the minted shape).
    fn cmp(&self, other: &Self) -> Ordering {
        match (*self, *other) {
            (Self::Hex(a), Self::Hex(b)) => a.cmp(&b),
            (a, b) => {
                let (mut left, mut right) = ([0; 32], [0; 32]);
                a.text(&mut left).cmp(b.text(&mut right))
            }
        }
    }
}

impl PartialOrd for BodyRef<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialOrd for Body {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a text is not a well-formed id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} ids are `{prefix}` followed by 1–64 characters of [0-9A-Za-z]")]
pub struct MalformedId {
    kind: &'static str,
    prefix: &'static str,
}

impl MalformedId {
    /// What kind of id was expected (`"environment"`, `"work"`, `"session"`, `"worker"`).
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Body);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Parses an id, prefix included.
            ///
            /// # Errors
            ///
            /// [`MalformedId`] when the text is not the prefix followed by 1–64 characters of
            /// `[0-9A-Za-z]`.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("use worklease::", stringify!($name), ";")]
            #[doc = concat!("let id: ", stringify!($name), " = \"", $prefix, "019f3be4fd2475d9a784bf2c739e1194\".parse().unwrap();")]
            #[doc = concat!("assert_eq!(id.to_string(), \"", $prefix, "019f3be4fd2475d9a784bf2c739e1194\");")]
            #[doc = concat!("assert!(\"", $prefix, "\".parse::<", stringify!($name), ">().is_err());")]
            /// ```
            pub fn parse(text: &str) -> Result<Self, MalformedId> {
                text.strip_prefix($prefix)
                    .and_then(Body::parse)
                    .map(Self)
                    .ok_or(MalformedId { kind: $kind, prefix: $prefix })
            }

            /// The id whose body is the 32 lowercase hex digits of `value` (a UUID, say).
            pub fn from_u128(value: u128) -> Self {
                Self(Body::Hex(Wide::of(value)))
            }

            /// The id's 128-bit value when its body is 32 lowercase hex digits.
            pub fn as_u128(&self) -> Option<u128> {
                match self.0 {
                    Body::Hex(value) => Some(value.get()),
                    Body::Text(_) => None,
                }
            }

            /// The id's text as an [`Excerpt`], without the formatting machinery (a 404
            /// builds one on every unknown id).
            #[allow(dead_code)]
            pub(crate) fn excerpt(&self) -> Excerpt {
                let mut buf = [0; 32];
                prefixed_excerpt($prefix, self.0.text(&mut buf))
            }

            /// The body, borrowed (orders and compares like the id).
            #[allow(dead_code)]
            pub(crate) fn body(&self) -> BodyRef<'_> {
                self.0.borrowed()
            }

            /// The id as a table packs it: a minted body's value, or any other body's text.
            #[allow(dead_code)]
            pub(crate) fn into_packed(self) -> Result<Wide, Arc<str>> {
                match self.0 {
                    Body::Hex(value) => Ok(value),
                    Body::Text(text) => Err(text),
                }
            }

            /// The id of a packed minted body.
            #[allow(dead_code)]
            pub(crate) fn from_packed(value: Wide) -> Self {
                Self(Body::Hex(value))
            }

            /// The id of a text body that [`Self::into_packed`] gave out (so it is canonical).
            #[allow(dead_code)]
            pub(crate) fn from_packed_text(text: Arc<str>) -> Self {
                Self(Body::Text(text))
            }

            /// Mints a creation-ordered id (UUIDv7 layout) from explicit inputs; see
            /// [`mint_uuid_v7`].
            pub fn mint(at: Timestamp, sequence: u64, entropy: u64) -> Self {
                Self::from_u128(mint_uuid_v7(at, sequence, entropy))
            }
        }

        impl FromStr for $name {
            type Err = MalformedId;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::parse(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buf = [0; 32];
                f.write_str($prefix)?;
                f.write_str(self.0.text(&mut buf))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }

        impl sealed::Sealed for $name {}

        impl AsId<$name> for $name {
            fn as_id(&self) -> Result<Cow<'_, $name>, Excerpt> {
                Ok(Cow::Borrowed(self))
            }
        }

        impl AsId<$name> for str {
            fn as_id(&self) -> Result<Cow<'_, $name>, Excerpt> {
                $name::parse(self).map(Cow::Owned).map_err(|_| Excerpt::new(self))
            }

            fn as_text(&self) -> Option<&str> {
                Some(self)
            }
        }

        impl AsId<$name> for String {
            fn as_id(&self) -> Result<Cow<'_, $name>, Excerpt> {
                self.as_str().as_id()
            }

            fn as_text(&self) -> Option<&str> {
                Some(self)
            }
        }
    };
}

prefixed_id!(
    /// An environment id: `env_` followed by 1–64 characters of `[0-9A-Za-z]`.
    EnvironmentId,
    "env_",
    "environment"
);
prefixed_id!(
    /// A work item id: `work_` followed by 1–64 characters of `[0-9A-Za-z]`.
    ///
    /// Ids order by their text; server-minted ids ([`WorkId::mint`]) sort in creation order, so
    /// ascending id means oldest first.
    WorkId,
    "work_",
    "work"
);
prefixed_id!(
    /// A session id (the `data.id` of a work item): `sess_` followed by 1–64 characters of
    /// `[0-9A-Za-z]`.
    SessionId,
    "sess_",
    "session"
);

prefixed_id!(
    /// An environment key's id (docs/contract.md §10): `ekey_` followed by 1–64 characters of
    /// `[0-9A-Za-z]`. The id names a key; it opens nothing.
    EnvironmentKeyId,
    "ekey_",
    "environment key"
);
/// Keeps [`AsId`] implemented by this crate's types only (the ids, `str`, `String` and
/// references to them), so the crate can change how tables read ids without breaking anyone.
mod sealed {
    // Public inside a private module: nameable by no one outside the crate.
    #[allow(unreachable_pub)]
    pub trait Sealed {}

    impl Sealed for str {}
    impl Sealed for String {}
    impl<A: Sealed + ?Sized> Sealed for &A {}
}

/// An id as an operation accepts it: a parsed id, or the raw text a server received.
///
/// Raw text that is not a well-formed id is answered exactly like an unknown id (404), so a
/// server can pass path segments straight through and still get docs/contract.md §3.3's check order.
///
/// The trait is sealed: it is implemented for [`EnvironmentId`], [`WorkId`], [`SessionId`],
/// `str`, `String` and references to them, and cannot be implemented outside this crate.
pub trait AsId<T: Clone>: sealed::Sealed {
    /// The parsed id, borrowed when it already is one.
    ///
    /// # Errors
    ///
    /// The start of the raw text when it is not a well-formed id.
    fn as_id(&self) -> Result<Cow<'_, T>, Excerpt>;

    /// The raw text, when the id was given as text: lets a table match it against the few
    /// ids it knows by text (environments) without parsing it first.
    fn as_text(&self) -> Option<&str> {
        None
    }
}

impl<T: Clone, A: AsId<T> + ?Sized> AsId<T> for &A {
    fn as_id(&self) -> Result<Cow<'_, T>, Excerpt> {
        (**self).as_id()
    }

    fn as_text(&self) -> Option<&str> {
        (**self).as_text()
    }
}

/// The longest worker id accepted.
const MAX_WORKER_ID_LEN: usize = 128;

/// A worker's self-chosen identity (the `Worker-ID` header): 1–128 visible ASCII characters.
///
/// Worker ids have no prefix; any visible ASCII (`!` to `~`) is allowed so hostnames, UUIDs and
/// `host:pid` forms all fit. Cloning never allocates.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(Arc<str>);

impl WorkerId {
    /// Parses a worker id.
    ///
    /// # Errors
    ///
    /// [`MalformedId`] when the text is empty, longer than 128 bytes, or has a character
    /// outside visible ASCII.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::WorkerId;
    /// assert!(WorkerId::parse("worker-7:4412").is_ok());
    /// assert!(WorkerId::parse("has space").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, MalformedId> {
        let ok = !text.is_empty()
            && text.len() <= MAX_WORKER_ID_LEN
            && text.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(Arc::from(text)))
        } else {
            Err(MalformedId {
                kind: "worker",
                prefix: "",
            })
        }
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for WorkerId {
    type Err = MalformedId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerId({})", self.0)
    }
}

/// A UUIDv7 (RFC 9562) built from explicit inputs, so minting stays deterministic.
///
/// Layout: 48 bits of Unix milliseconds from `at` (clamped at zero), the version `7`, the low
/// 12 bits of `sequence >> 30` then the variant `10` and the low 30 bits of `sequence`, then 32
/// bits of `entropy`. Ids minted with a strictly increasing `sequence` within one millisecond,
/// or with increasing milliseconds, sort in minting order.
///
/// # Examples
///
/// ```
/// use worklease::{mint_uuid_v7, Timestamp, WorkId};
/// let at = Timestamp::from_unix_micros(1_782_893_706_120_394);
/// let first = WorkId::mint(at, 0, 0xdead_beef);
/// let second = WorkId::mint(at, 1, 0x0000_0001);
/// assert!(first < second);
/// assert_eq!(first.as_u128(), Some(mint_uuid_v7(at, 0, 0xdead_beef)));
/// ```
pub fn mint_uuid_v7(at: Timestamp, sequence: u64, entropy: u64) -> u128 {
    let millis = u128::from(at.unix_micros().max(0).unsigned_abs() / 1000) & ((1 << 48) - 1);
    let seq_high = u128::from((sequence >> 30) & 0xfff);
    let seq_low = u128::from(sequence & ((1 << 30) - 1));
    let entropy = u128::from(entropy & 0xffff_ffff);
    (millis << 80) | (0x7 << 76) | (seq_high << 64) | (0b10 << 62) | (seq_low << 32) | entropy
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash_of<T: Hash>(value: &T) -> u64 {
        let mut hasher = DefaultHasher::new();
        value.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn documented_ids_parse_and_print_back() {
        for text in [
            "work_019f3be4fd2475d9a784bf2c739e1194",
            "work_a",
            "work_ABC123",
            "work_019F3BE4FD2475D9A784BF2C739E1194",
        ] {
            let id = WorkId::parse(text).expect("well-formed");
            assert_eq!(id.to_string(), text);
        }
        let env = EnvironmentId::parse("env_019e64e01a137caf953ac2ac7b42ec5c").expect("ok");
        assert_eq!(env.as_u128(), Some(0x019e64e01a137caf953ac2ac7b42ec5c));
    }

    #[test]
    fn malformed_ids_are_refused() {
        let too_long = format!("work_{}", "a".repeat(65));
        for text in [
            "",
            "work_",
            "work",
            "env_abc",
            "work_ab-c",
            "work_é",
            "Work_a",
            &too_long,
        ] {
            assert!(WorkId::parse(text).is_err(), "{text:?} parsed");
        }
        assert!(WorkId::parse(&format!("work_{}", "a".repeat(64))).is_ok());
    }

    #[test]
    fn every_ascii_byte_in_every_position_of_a_hex_body() {
        for position in 0..32 {
            for byte in 0..128u8 {
                let mut body = *b"0123456789abcdef0123456789abcdef";
                body[position] = byte;
                let expected = u128::from_str_radix(std::str::from_utf8(&body).expect("ascii"), 16)
                    .ok()
                    .filter(|_| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
                assert_eq!(parse_lower_hex(&body), expected, "{byte} at {position}");
            }
        }
    }

    #[test]
    fn uppercase_hex_is_text_and_differs_from_lowercase() {
        let lower = WorkId::parse("work_019f3be4fd2475d9a784bf2c739e1194").expect("ok");
        let upper = WorkId::parse("work_019F3BE4FD2475D9A784BF2C739E1194").expect("ok");
        assert_ne!(lower, upper);
        assert_eq!(upper.as_u128(), None);
        // Text order: '0'-'9' < 'A'-'Z' < 'a'-'z'.
        assert!(upper < lower);
    }

    #[test]
    fn worker_ids_accept_visible_ascii_only() {
        assert!(WorkerId::parse("w").is_ok());
        assert!(WorkerId::parse(&"w".repeat(128)).is_ok());
        for bad in ["", " w", "w\n", "wé", &"w".repeat(129)] {
            assert!(WorkerId::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn minted_ids_follow_uuid_v7_layout() {
        let at = Timestamp::from_unix_micros(1_782_893_706_120_394);
        let value = mint_uuid_v7(at, 0, 0);
        assert_eq!(value >> 80, 1_782_893_706_120);
        assert_eq!((value >> 76) & 0xf, 7);
        assert_eq!((value >> 62) & 0b11, 0b10);
    }

    fn body() -> impl Strategy<Value = String> {
        prop_oneof!["[0-9a-f]{32}", "[0-9A-Za-z]{1,64}", "[0-9a-fA-F]{31,33}",]
    }

    proptest! {
        #[test]
        fn order_equality_and_hash_follow_the_text(a in body(), b in body()) {
            let (ia, ib) = (WorkId::parse(&format!("work_{a}")).unwrap(), WorkId::parse(&format!("work_{b}")).unwrap());
            prop_assert_eq!(ia.cmp(&ib), a.cmp(&b));
            prop_assert_eq!(ia == ib, a == b);
            if a == b {
                prop_assert_eq!(hash_of(&ia), hash_of(&ib));
            }
            prop_assert_eq!(ia.to_string(), format!("work_{a}"));
            prop_assert_eq!(ia.excerpt(), Excerpt::of(&ia));
            // The borrowed lookup key is the id: equal, same hash, same text.
            let (ta, tb) = (format!("work_{a}"), format!("work_{b}"));
            let (ka, kb) = (WorkKey::parse(&ta).unwrap(), WorkKey::parse(&tb).unwrap());
            prop_assert_eq!(ka, ia.key());
            prop_assert_eq!(hash_of(&ka), hash_of(&ia));
            prop_assert_eq!(ka == ib.key(), a == b);
            prop_assert_eq!(kb.excerpt(), ib.excerpt());
        }

        #[test]
        fn a_received_key_matches_only_the_id_its_text_parses_to(
            a in body(),
            b in prop_oneof![body(), ".{0,70}", "[0-9a-fA-Fg-z]{32}"],
            flip in any::<bool>(),
        ) {
            // Unvalidated text is compared, never parsed: a malformed or differently cased
            // body must still match nothing but its own id.
            let b = if flip { a.to_uppercase() } else { b };
            let id = WorkId::parse(&format!("work_{a}")).unwrap();
            let text = format!("work_{b}");
            if let Some(key) = WorkKey::parse(&text) {
                let same = WorkId::parse(&text).ok().as_ref() == Some(&id);
                prop_assert_eq!(key == id.key(), same);
                prop_assert_eq!(id.key() == key, same);
                if same {
                    prop_assert_eq!(hash_of(&key), hash_of(&id));
                }
            }
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in ".*") {
            let _ = WorkId::parse(&text);
            let _ = EnvironmentId::parse(&text);
            let _ = WorkerId::parse(&text);
        }

        #[test]
        fn mint_orders_by_time_then_sequence(ms_a in 0i64..1 << 47, ms_b in 0i64..1 << 47, sa in 0u64..1 << 42, sb in 0u64..1 << 42, e in any::<u64>()) {
            let a = WorkId::mint(Timestamp::from_unix_micros(ms_a * 1000), sa, e);
            let b = WorkId::mint(Timestamp::from_unix_micros(ms_b * 1000), sb, e);
            prop_assert_eq!(a.cmp(&b), (ms_a, sa).cmp(&(ms_b, sb)));
        }
    }
}
