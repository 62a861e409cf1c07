//! The block-storage actor: the one owner of block bytes. Nothing else opens, writes, syncs or
//! deletes segment files (`segments/`); everyone else sends it messages.
//!
//! It does not know which blocks exist: the metadata actor records where each block is
//! ([`Location`], in the block's record), and tells its callers which locations no record
//! points at any more; they pass those back here with [`ReleaseBytes`] once that is durable.
//!
//! Ordering rules that keep metadata honest:
//! - bytes are written ([`WriteBlocks`]) and synced ([`SyncBlocks`]) before the metadata that
//!   makes them reachable from a dataset is committed;
//! - a segment file is deleted only on [`ReleaseBytes`], sent after the metadata that stopped
//!   pointing into it is durable.
//!
//! Runs on two `SyncArbiter` pools (file I/O blocks), one instance per thread, all sharing one
//! `BlockBytes`: one pool for writes, syncs and compaction, one for the reads of downloads
//! ([`ReadBlock`], [`ReadBlocks`]), so that a read never waits behind a write or a sync.

use actix::{Actor, Handler, Message, MessageResult, SyncContext};
use bytes::Bytes;
use cid::Cid;

pub use crate::segments::Move;
/// What other rooms need of the segment files, through their one owner: the start-up check
/// and the node read the files' lengths and open them; the chunker cuts buffers at the
/// alignment direct I/O needs.
pub(crate) use crate::segments::{align_start, is_aligned, segment_lengths, BlockBytes, ALIGN};
use crate::{error::Result, segments::Location};

/// Append padded blocks (CIDs already computed by the hasher); replies with their locations in
/// order. A block given twice in one message is written once.
#[derive(Message)]
#[rtype(result = "Result<Vec<Location>>")]
pub struct WriteBlocks {
    /// `(cid, padded bytes)` per block.
    pub blocks: Vec<(Cid, Bytes)>,
}

impl std::fmt::Debug for WriteBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WriteBlocks({} blocks)", self.blocks.len())
    }
}

/// Make every block written before this message durable (fdatasync).
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct SyncBlocks;

/// Read a block's bytes at the location its record gives, verified against its CID.
#[derive(Debug, Message)]
#[rtype(result = "Result<Bytes>")]
pub struct ReadBlock {
    /// The block to read.
    pub cid: Cid,
    /// Where its record says it is.
    pub location: Location,
}

/// Read several blocks, each verified against its CID; one result per block, in order.
/// Neighbours in a segment are read with one aligned read.
#[derive(Debug, Message)]
#[rtype(result = "Vec<Result<Bytes>>")]
pub struct ReadBlocks {
    /// The blocks and where their records say they are.
    pub blocks: Vec<(Cid, Location)>,
}

/// These bytes are no longer pointed at by durable metadata: count them dead, and delete
/// sealed segment files left without live bytes.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ReleaseBytes {
    /// The dead copies.
    pub locations: Vec<Location>,
}

/// Compaction, step 1: the sealed segment most worth compacting (under half live), if any.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<u32>>")]
pub struct PickSparse;

/// Compaction, step 2: copy these live blocks of `segment` to the active segment and sync the
/// copies; replies with the moves for the metadata actor. With no blocks, a dead segment is
/// simply deleted.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Move>>")]
pub struct CopyBlocks {
    /// The segment being emptied.
    pub segment: u32,
    /// Its live blocks, as the metadata records them.
    pub blocks: Vec<(Cid, Location)>,
}

/// The block-storage actor; see the module docs.
pub struct BlockStore {
    /// Handle on the bytes; every thread of the pool has its own clone.
    bytes: BlockBytes,
}

impl BlockStore {
    /// An actor over `bytes` (one per pool thread).
    pub(crate) fn new(bytes: BlockBytes) -> Self {
        Self { bytes }
    }
}

impl Actor for BlockStore {
    type Context = SyncContext<Self>;
}

impl Handler<WriteBlocks> for BlockStore {
    type Result = Result<Vec<Location>>;
    fn handle(&mut self, msg: WriteBlocks, _: &mut Self::Context) -> Self::Result {
        self.bytes.write(&msg.blocks)
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
        self.bytes.read(&msg.cid, msg.location)
    }
}

impl Handler<ReadBlocks> for BlockStore {
    type Result = MessageResult<ReadBlocks>;
    fn handle(&mut self, msg: ReadBlocks, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.bytes.read_many(&msg.blocks))
    }
}

impl Handler<ReleaseBytes> for BlockStore {
    type Result = MessageResult<ReleaseBytes>;
    fn handle(&mut self, msg: ReleaseBytes, _: &mut Self::Context) -> Self::Result {
        self.bytes.release(&msg.locations);
        MessageResult(())
    }
}

impl Handler<PickSparse> for BlockStore {
    type Result = Result<Option<u32>>;
    fn handle(&mut self, _: PickSparse, _: &mut Self::Context) -> Self::Result {
        self.bytes.sparse_segment()
    }
}

impl Handler<CopyBlocks> for BlockStore {
    type Result = Result<Vec<Move>>;
    fn handle(&mut self, msg: CopyBlocks, _: &mut Self::Context) -> Self::Result {
        if msg.blocks.is_empty() {
            self.bytes.remove_if_dead(msg.segment);
            return Ok(Vec::new());
        }
        self.bytes.copy(&msg.blocks)
    }
}
