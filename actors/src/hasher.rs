//! The hashing actor: sha2-256 of blocks and the Merkle root, off the event loop.
//!
//! Runs on a `SyncArbiter` with one thread per core; blocks of one upload are hashed in
//! parallel and put back in order by their index in the upload actor. Stateless.

use actix::{Actor, Handler, Message, MessageResult, SyncContext};
use bytes::Bytes;
use cid::Cid;

use crate::format::{
    cid::{block_cid, Digest},
    merkle,
};

/// Hash one padded block; replies with its `codex-block` CID.
#[derive(Message)]
#[rtype(result = "Cid")]
pub struct HashBlock {
    /// The padded block.
    pub data: Bytes,
}

impl std::fmt::Debug for HashBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashBlock")
            .field("len", &self.data.len())
            .finish()
    }
}

/// Compute the Merkle root over block digests; `None` for no leaves.
#[derive(Debug, Message)]
#[rtype(result = "Option<Digest>")]
pub struct TreeRoot {
    /// Block digests in order.
    pub leaves: Vec<Digest>,
}

/// The hashing actor; see the module docs.
#[derive(Default)]
pub struct Hasher;

impl Actor for Hasher {
    type Context = SyncContext<Self>;
}

impl Handler<HashBlock> for Hasher {
    type Result = MessageResult<HashBlock>;
    fn handle(&mut self, msg: HashBlock, _: &mut Self::Context) -> Self::Result {
        MessageResult(block_cid(&msg.data))
    }
}

impl Handler<TreeRoot> for Hasher {
    type Result = MessageResult<TreeRoot>;
    fn handle(&mut self, msg: TreeRoot, _: &mut Self::Context) -> Self::Result {
        MessageResult(merkle::root(&msg.leaves))
    }
}
