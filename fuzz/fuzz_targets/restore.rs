//! Any bytes into `LeaseTable::restore` and `ConcurrentLeaseTable::restore_with_shards`: never
//! a panic; a table restored is valid and snapshots back to a snapshot that restores.
#![no_main]

use libfuzzer_sys::fuzz_target;
use worklease::{ConcurrentLeaseTable, LeaseTable};

fuzz_target!(|data: &[u8]| {
    if let Ok(table) = LeaseTable::restore(data) {
        table.validate().expect("a restored table is valid");
        let again = LeaseTable::restore(&table.snapshot()).expect("its snapshot restores");
        assert_eq!(again.snapshot(), table.snapshot());
        let sharded = ConcurrentLeaseTable::restore_with_shards(data, 4).expect("restores sharded");
        sharded.validate().expect("a restored table is valid");
        assert_eq!(sharded.snapshot(), table.snapshot());
    }
});
