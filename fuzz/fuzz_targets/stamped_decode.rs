//! Any bytes into `Stamped::decode` (raw, and framed with a valid header and checksum so the
//! payload decoder is reached): never a panic; a decoded command encodes back to bytes that
//! decode to it, and applying it to a small table keeps the table valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use worklease::{Config, EnvironmentKind, LeaseTable, Stamped};

fn check(bytes: &[u8]) {
    if let Ok(stamped) = Stamped::decode(bytes) {
        let encoded = stamped.encode();
        assert_eq!(Stamped::decode(&encoded).as_ref(), Ok(&stamped));
        let mut table = LeaseTable::new(Config::default());
        table
            .register_environment("env_01".parse().unwrap(), EnvironmentKind::SelfHosted)
            .unwrap();
        let _ = table.apply(&stamped);
        table.validate().expect("a table stays valid");
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut framed = Vec::with_capacity(data.len() + 10);
    framed.extend_from_slice(b"WLCM");
    framed.extend_from_slice(&1u16.to_le_bytes());
    framed.extend_from_slice(data);
    let crc = crc32fast::hash(&framed);
    framed.extend_from_slice(&crc.to_le_bytes());
    check(&framed);
});
