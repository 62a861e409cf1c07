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

/// Hash a batch of padded blocks; replies with their `codex-block` CIDs, in order.
#[derive(Message)]
#[rtype(result = "Vec<Cid>")]
pub struct HashBlocks {
    /// The padded blocks.
    pub blocks: Vec<Bytes>,
}

impl std::fmt::Debug for HashBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HashBlocks({} blocks)", self.blocks.len())
    }
}

/// Compute every layer of the Merkle tree over block digests (leaves first, the one-node root
/// layer last); `None` for no leaves. The leaves are moved into the first layer, not copied.
#[derive(Debug, Message)]
#[rtype(result = "Option<Vec<Vec<Digest>>>")]
pub struct TreeLayers {
    /// Block digests in order.
    pub leaves: Vec<Digest>,
}

/// The hashing actor; see the module docs.
#[derive(Default)]
pub struct Hasher;

impl Actor for Hasher {
    type Context = SyncContext<Self>;
}

impl Handler<HashBlocks> for Hasher {
    type Result = MessageResult<HashBlocks>;
    fn handle(&mut self, msg: HashBlocks, _: &mut Self::Context) -> Self::Result {
        MessageResult(msg.blocks.iter().map(|b| block_cid(b)).collect())
    }
}

impl Handler<TreeLayers> for Hasher {
    type Result = MessageResult<TreeLayers>;
    fn handle(&mut self, msg: TreeLayers, _: &mut Self::Context) -> Self::Result {
        MessageResult(merkle::layers_of(msg.leaves))
    }
}
