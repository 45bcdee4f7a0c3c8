//! The part of the server's `raft` module its wire decoders stand on: the decoders themselves
//! (`codec.rs`, `rpc.rs`), included from the server's sources, and the types they name,
//! declared as the server declares them (`server/src/raft/mod.rs`). The server is a binary
//! crate, so the fuzz crate cannot link it; these few declarations are what it would import.
//! A change to their shape in the server breaks this build, not the fuzzing silently.

use std::sync::Arc;

use openraft::BasicNode;
use worklease::{Applied, Error, Stamped};

use crate::request::Asked;

#[path = "../../../server/src/raft/codec.rs"]
pub(crate) mod codec;
#[path = "../../../server/src/raft/rpc.rs"]
pub(crate) mod rpc;

pub(crate) type NodeId = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proposal(pub(crate) Arc<[Stamped]>, pub(crate) Arc<[Origin]>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) index: u32,
    pub(crate) id: u128,
}

pub(crate) type CommandAnswer = Result<Applied, Error>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) asked: Option<Asked>,
    pub(crate) answer: CommandAnswer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer(pub(crate) Option<Vec<Result<Applied, Error>>>);

openraft::declare_raft_types!(
    pub(crate) TypeConfig:
        D = Proposal,
        R = Answer,
        NodeId = NodeId,
        Node = BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);
