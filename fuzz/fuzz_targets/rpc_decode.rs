//! Any bytes into the Raft RPC decoders a member runs on what arrives at its internal routes
//! (`server/src/raft/rpc.rs`, and the log codec they stand on, `codec.rs`): never a panic.
//!
//! The bytes go in twice: raw, and rebuilt into the shape of each message with every inner
//! value sealed with a valid checksum, so the fuzzer reaches the entry, vote, log id,
//! membership and snapshot-metadata decoders behind the envelope. What decodes must encode
//! back to bytes that decode to the same message, and a membership that decodes must be one
//! openraft can use (one or two configurations, none empty).
#![no_main]

use libfuzzer_sys::fuzz_target;
use openraft::{EntryPayload, Membership};

#[allow(dead_code, unreachable_pub)]
#[path = "../../server/src/request.rs"]
mod request;
#[allow(dead_code, unreachable_pub)]
mod server;

use server::rpc;
use server::NodeId;

/// `bytes` with the CRC-32 trailer the log codec seals every value with.
fn sealed(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    out
}

fn usable(membership: &Membership<NodeId, openraft::BasicNode>) {
    let configs = membership.get_joint_config();
    assert!(!configs.is_empty() && configs.len() <= 2, "{membership:?}");
    for config in configs {
        assert!(!config.is_empty(), "{membership:?}");
        for voter in config {
            assert!(membership.get_node(voter).is_some(), "{membership:?}");
        }
    }
}

fn check_append(bytes: &[u8]) {
    if let Ok(append) = rpc::decode_append(bytes) {
        for entry in &append.entries {
            if let EntryPayload::Membership(membership) = &entry.payload {
                usable(membership);
            }
        }
        let again = rpc::decode_append(&rpc::encode_append(&append)).expect("re-decodes");
        assert_eq!(format!("{again:?}"), format!("{append:?}"));
    }
}

fn check_install(bytes: &[u8]) {
    if let Ok(install) = rpc::decode_install(bytes) {
        usable(install.meta.last_membership.membership());
        let again = rpc::decode_install(&rpc::encode_install(&install)).expect("re-decodes");
        assert_eq!(again, install);
    }
}

fn check_all(bytes: &[u8]) {
    check_append(bytes);
    check_install(bytes);
    if let Ok(vote) = rpc::decode_vote_request(bytes) {
        let again = rpc::decode_vote_request(&rpc::encode_vote_request(&vote));
        assert_eq!(again.expect("re-decodes"), vote);
    }
    if let Ok(answer) = rpc::decode_vote_response(bytes) {
        let again = rpc::decode_vote_response(&rpc::encode_vote_response(&answer));
        assert_eq!(again.expect("re-decodes"), answer);
    }
    if let Ok(answer) = rpc::decode_append_response(bytes) {
        let again = rpc::decode_append_response(&rpc::encode_append_response(&answer));
        assert_eq!(again.expect("re-decodes"), answer);
    }
    let _ = rpc::decode_install_response(bytes);
}

fuzz_target!(|data: &[u8]| {
    check_all(data);
    // The same bytes as the sealed parts of each message: pieces split at 0xFE, each sealed,
    // put where the envelopes carry sealed values (postcard writes a struct as its fields in
    // order, so a tuple of the same field types is the same bytes).
    let pieces: Vec<Vec<u8>> = data.split(|b| *b == 0xFE).map(sealed).collect();
    let piece = |n: usize| pieces.get(n).cloned().unwrap_or_default();
    let optional = |n: usize| pieces.get(n).cloned();
    let append = (
        piece(0),
        optional(1),
        pieces.iter().skip(3).cloned().collect::<Vec<_>>(),
        optional(2),
    );
    check_append(&postcard::to_allocvec(&append).expect("writes"));
    let install = (piece(0), piece(1), 0u64, piece(2), true);
    check_install(&postcard::to_allocvec(&install).expect("writes"));
    let vote = (piece(0), optional(1));
    check_all(&postcard::to_allocvec(&vote).expect("writes"));
    let answer = (piece(0), data.first().is_some_and(|b| b & 1 == 1), optional(1));
    check_all(&postcard::to_allocvec(&answer).expect("writes"));
});
