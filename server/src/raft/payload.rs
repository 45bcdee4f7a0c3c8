//! A snapshot's payload: the table's canonical bytes and the replay record beside them, framed
//! with a magic and a version. The state machine writes and reads it in snapshot files; the
//! replica encodes it on its own thread.

use super::codec;
use super::Record;

/// A snapshot payload's first bytes (a version 1 payload starts with the table's own magic).
pub(super) const PAYLOAD_MAGIC: &[u8; 4] = b"WLSP";
/// The payload format this build writes (and the newest it reads): 2 records what each
/// command asked beside its answer, 1 the answers alone.
const PAYLOAD_VERSION: u16 = 2;

/// A snapshot payload, read and checked: the table's bytes (not yet restored) and the replay
/// record, oldest first.
pub(super) struct Payload<'a> {
    pub(super) table: &'a [u8],
    pub(super) record: Vec<(u128, Record)>,
}

/// A snapshot's payload: the table's canonical bytes and the replay record beside them. Built
/// in the table's own buffer (which has room to spare) rather than a copy of it: a second
/// buffer of the table's size would be one more large allocation and release while applies
/// go on.
pub(super) fn encode_payload(table: Vec<u8>, record: &[(u128, Record)]) -> Vec<u8> {
    let mut header = Vec::with_capacity(PAYLOAD_MAGIC.len() + 2 + 8);
    header.extend_from_slice(PAYLOAD_MAGIC);
    header.extend_from_slice(&PAYLOAD_VERSION.to_le_bytes());
    header.extend_from_slice(&(table.len() as u64).to_le_bytes());
    let mut payload = table;
    payload.splice(0..0, header);
    payload.extend_from_slice(&codec::encode_record(record));
    payload
}

/// Reads a payload; one that does not start with [`PAYLOAD_MAGIC`] is a version 1 payload, the
/// table alone (`LeaseTable::restore` then checks it).
pub(super) fn parse_payload(payload: &[u8]) -> Result<Payload<'_>, String> {
    let Some(rest) = payload.strip_prefix(PAYLOAD_MAGIC) else {
        return Ok(Payload {
            table: payload,
            record: Vec::new(),
        });
    };
    let truncated = || format!("snapshot payload truncated: {} bytes", payload.len());
    let (version, rest) = rest.split_at_checked(2).ok_or_else(truncated)?;
    let version = u16::from_le_bytes([version[0], version[1]]);
    if !(1..=PAYLOAD_VERSION).contains(&version) {
        return Err(format!(
            "unsupported snapshot payload version {version} (this build reads 1 to {PAYLOAD_VERSION})"
        ));
    }
    let (length, rest) = rest.split_at_checked(8).ok_or_else(truncated)?;
    let length = u64::from_le_bytes(length.try_into().expect("invariant: 8 bytes"));
    let (table, record) = usize::try_from(length)
        .ok()
        .and_then(|length| rest.split_at_checked(length))
        .ok_or_else(truncated)?;
    let record =
        codec::decode_record(record, version).map_err(|e| format!("replay record: {e}"))?;
    Ok(Payload { table, record })
}

/// The table's canonical bytes in a snapshot payload (a backup's table).
pub(super) fn table_of_payload(payload: &[u8]) -> Result<Vec<u8>, String> {
    parse_payload(payload).map(|parsed| parsed.table.to_vec())
}
