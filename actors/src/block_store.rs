//! The block-storage actor: the only code that knows where block bytes live.
//!
//! The bytes live in append-only segment files indexed in fjall ([`crate::segments`]). Other
//! actors send [`WriteBlocks`], [`SyncBlocks`] and [`ReadBlock`] here; the metadata actor removes
//! bytes only through `BlockBytes::remove_in`, inside its own atomic batch.
//!
//! Ordering rule that keeps metadata honest: bytes are written *before* the metadata that refers
//! to them is committed, and only the metadata actor deletes bytes, in its mailbox order.
//!
//! Runs on a `SyncArbiter` (fjall calls block), several threads, one instance per thread.

use actix::{Actor, Handler, Message, SyncContext};
use bytes::Bytes;
use cid::Cid;

use crate::{
    error::Result,
    segments::{BlockBytes, Move},
};

/// Write padded blocks under their CIDs (already computed by the hasher). Blocks already
/// present are not written again.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct WriteBlocks {
    /// `(cid, padded bytes)` per block.
    pub blocks: Vec<(Cid, Bytes)>,
}

/// Make every block written so far durable (fdatasync). Sent before a dataset is committed.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct SyncBlocks;

/// One compaction step: copy the live blocks of the sparsest sealed segment (if any is under
/// half live) and reply with the moves, for the metadata actor to commit with `Relocate`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<Vec<Move>>>")]
pub struct CompactStep;

/// Read a block's bytes, verified against its CID.
#[derive(Message)]
#[rtype(result = "Result<Bytes>")]
pub struct ReadBlock {
    /// The block to read.
    pub cid: Cid,
}

impl std::fmt::Debug for WriteBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WriteBlocks({} blocks)", self.blocks.len())
    }
}

/// The block-storage actor; see the module docs.
pub struct BlockStore {
    /// Handle on the bytes; every thread of the pool has its own clone.
    bytes: BlockBytes,
}

impl BlockStore {
    /// An actor over `bytes` (one per pool thread).
    pub fn new(bytes: BlockBytes) -> Self {
        Self { bytes }
    }
}

impl Actor for BlockStore {
    type Context = SyncContext<Self>;
}

impl Handler<WriteBlocks> for BlockStore {
    type Result = Result<()>;

    fn handle(&mut self, msg: WriteBlocks, _: &mut Self::Context) -> Self::Result {
        self.bytes.write(&msg.blocks)
    }
}

impl Handler<CompactStep> for BlockStore {
    type Result = Result<Option<Vec<Move>>>;

    fn handle(&mut self, _: CompactStep, _: &mut Self::Context) -> Self::Result {
        self.bytes.compact_step()
    }
}

impl Handler<SyncBlocks> for BlockStore {
    type Result = Result<()>;

    fn handle(&mut self, _: SyncBlocks, _: &mut Self::Context) -> Self::Result {
        self.bytes.sync()
    }
}

impl Handler<ReadBlock> for BlockStore {
    type Result = Result<Bytes>;

    fn handle(&mut self, msg: ReadBlock, _: &mut Self::Context) -> Self::Result {
        self.bytes.read(&msg.cid)
    }
}
