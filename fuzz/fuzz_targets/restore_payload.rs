//! Fuzzer bytes as a snapshot's payload, framed with a valid header and checksum, so every
//! input reaches the decoder and the semantic checks. Same properties as `restore`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use worklease::{ConcurrentLeaseTable, LeaseTable};

fuzz_target!(|data: &[u8]| {
    let mut bytes = Vec::with_capacity(data.len() + 10);
    bytes.extend_from_slice(b"WLSN");
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(data);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    if let Ok(table) = LeaseTable::restore(&bytes) {
        table.validate().expect("a restored table is valid");
        let again = LeaseTable::restore(&table.snapshot()).expect("its snapshot restores");
        assert_eq!(again.snapshot(), table.snapshot());
        let sharded =
            ConcurrentLeaseTable::restore_with_shards(&bytes, 4).expect("restores sharded");
        sharded.validate().expect("a restored table is valid");
        assert_eq!(sharded.snapshot(), table.snapshot());
    }
});
