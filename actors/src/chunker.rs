//! The chunking actor: turns an upload's byte stream into 64 KiB blocks, one actor per upload.
//!
//! Takes [`Feed`] with whatever pieces the client's stream delivers and [`Close`] at the end,
//! zero-pads the last block (Codex's `LPStreamChunker` with `pad = true`), numbers the blocks and
//! sends each to the upload actor as [`AddBlock`]. A `Feed` is answered only once the upload
//! actor has admitted its blocks, which is how storage pushes back on the HTTP body.
//!
//! Blocks are cut from aligned arenas (16 blocks each), so the block store can write them to
//! disk directly from here without copying them again (`segments/append.rs`). A piece that
//! already holds a whole block at an aligned address is passed on without any copy. An arena
//! whose blocks are all gone (stored, or dropped by a failed upload) is reused: fresh memory
//! for every arena page-faulted on first touch and was handed back to the kernel by `free`,
//! 7 % of the node's CPU during an upload (benches/README.md).

use std::collections::VecDeque;

use actix::{Actor, Context, Handler, Message, Recipient, ResponseFuture};
use bytes::{Bytes, BytesMut};

use crate::{
    block_store::{align_start, is_aligned, ALIGN},
    error::Result,
};

/// Blocks per arena: one allocation per 16 blocks rather than one per block.
const ARENA_BLOCKS: usize = 16;
/// Most used-up arenas kept for reuse: more than an upload's window holds (4 batches of 64
/// blocks are 16 arenas), so that in a steady upload every arena is a reused one.
const MAX_SPENT: usize = 32;

/// One block of the upload, numbered by the chunker (blocks arrive in index order).
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct AddBlock {
    /// Position of the block in the dataset.
    pub index: u64,
    /// The padded block bytes.
    pub data: Bytes,
}

impl std::fmt::Debug for AddBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddBlock")
            .field("index", &self.index)
            .field("len", &self.data.len())
            .finish()
    }
}

/// The next piece of the upload stream.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct Feed(pub Bytes);

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Feed({} bytes)", self.0.len())
    }
}

/// The stream ended; pad and send the last block. Replies with the dataset size in bytes.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64>")]
pub struct Close;

/// The chunking actor; see the module docs.
pub struct Chunker {
    block_size: usize,
    /// The block being filled (its bytes so far), at the front of the rest of its arena: an
    /// aligned allocation that the next blocks are cut from. Never holds more than one block.
    buf: BytesMut,
    /// Where the next arena comes from.
    arenas: Arenas,
    /// Index of the next block to send.
    next_index: u64,
    /// Real bytes received so far (the dataset size, without padding).
    received: u64,
    /// Where blocks go (the upload actor; a recipient, so the chunker does not depend on it).
    upload: Recipient<AddBlock>,
}

impl Chunker {
    /// A chunker sending `block_size` blocks to `upload`.
    pub fn new(block_size: u32, upload: Recipient<AddBlock>) -> Self {
        let block_size = block_size as usize;
        Self {
            block_size,
            buf: BytesMut::new(),
            arenas: Arenas {
                block_size,
                spent: VecDeque::new(),
            },
            next_index: 0,
            received: 0,
            upload,
        }
    }

    /// Cuts `data` into complete blocks, keeping the remainder for the next call.
    fn cut(&mut self, mut data: Bytes) -> Vec<AddBlock> {
        self.received += data.len() as u64;
        let mut out = Vec::new();
        while !data.is_empty() {
            if self.buf.is_empty()
                && data.len() >= self.block_size
                && is_aligned(&data[..self.block_size])
            {
                // Whole block already in one aligned piece: pass the bytes on without copying.
                let block = data.split_to(self.block_size);
                out.push(self.numbered(block));
                continue;
            }
            if self.buf.is_empty() && self.buf.capacity() < self.block_size {
                let used_up = std::mem::replace(&mut self.buf, self.arenas.take());
                self.arenas.retire(used_up);
            }
            let take = (self.block_size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data.split_to(take));
            if self.buf.len() == self.block_size {
                let block = self.buf.split_to(self.block_size);
                out.push(self.numbered(block.freeze()));
            }
        }
        out
    }

    fn numbered(&mut self, data: Bytes) -> AddBlock {
        let index = self.next_index;
        self.next_index += 1;
        AddBlock { index, data }
    }

    fn send_all(&self, blocks: Vec<AddBlock>) -> ResponseFuture<Result<()>> {
        let upload = self.upload.clone();
        Box::pin(async move {
            for block in blocks {
                upload.send(block).await??;
            }
            Ok(())
        })
    }
}

/// The aligned buffers blocks are cut from; see the module docs.
struct Arenas {
    block_size: usize,
    /// Used-up arenas, oldest first; some of their blocks may still be in the pipeline.
    spent: VecDeque<BytesMut>,
}

impl Arenas {
    fn capacity(&self) -> usize {
        ARENA_BLOCKS * self.block_size + ALIGN
    }

    /// An empty arena starting at an aligned address, with room for [`ARENA_BLOCKS`] blocks:
    /// the oldest used-up one if all its blocks are gone, a new one otherwise.
    fn take(&mut self) -> BytesMut {
        let capacity = self.capacity();
        if let Some(oldest) = self.spent.front_mut() {
            oldest.clear();
            // Succeeds only when this handle is the last one on the allocation.
            if oldest.try_reclaim(capacity) {
                if let Some(arena) = self.spent.pop_front() {
                    return align_start(arena);
                }
            }
        }
        align_start(BytesMut::with_capacity(capacity))
    }

    /// Keeps a used-up arena for reuse (a buffer that never was an arena is just dropped).
    fn retire(&mut self, arena: BytesMut) {
        if arena.capacity() == 0 && arena.is_empty() {
            return;
        }
        if self.spent.len() == MAX_SPENT {
            self.spent.pop_front();
        }
        self.spent.push_back(arena);
    }
}

impl Actor for Chunker {
    type Context = Context<Self>;
}

impl Handler<Feed> for Chunker {
    type Result = ResponseFuture<Result<()>>;
    fn handle(&mut self, msg: Feed, _: &mut Self::Context) -> Self::Result {
        let blocks = self.cut(msg.0);
        self.send_all(blocks)
    }
}

impl Handler<Close> for Chunker {
    type Result = ResponseFuture<Result<u64>>;
    fn handle(&mut self, _: Close, _: &mut Self::Context) -> Self::Result {
        let mut blocks = Vec::new();
        if !self.buf.is_empty() {
            let mut last = std::mem::take(&mut self.buf);
            last.resize(self.block_size, 0);
            blocks.push(self.numbered(last.freeze()));
        }
        let size = self.received;
        let sent = self.send_all(blocks);
        Box::pin(async move {
            sent.await?;
            Ok(size)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BS: usize = 65536;

    fn arenas() -> Arenas {
        Arenas {
            block_size: BS,
            spent: VecDeque::new(),
        }
    }

    /// Cuts every block out of `arena`, as the chunker does.
    fn cut_all(arena: &mut BytesMut) -> Vec<Bytes> {
        (0..ARENA_BLOCKS)
            .map(|i| {
                arena.extend_from_slice(&[i as u8; BS]);
                arena.split_to(BS).freeze()
            })
            .collect()
    }

    #[test]
    fn blocks_are_aligned_and_an_arena_is_reused_once_its_blocks_are_gone() {
        let mut pool = arenas();
        let mut first = pool.take();
        let start = first.as_ptr() as usize;
        let blocks = cut_all(&mut first);
        assert!(blocks.iter().all(|b| is_aligned(b)));
        assert_eq!(blocks[3][0], 3, "each block keeps its own bytes");
        pool.retire(first);
        // Its blocks are still in the pipeline: a new arena.
        let second = pool.take();
        assert_ne!(second.as_ptr() as usize, start);
        drop(blocks);
        let third = pool.take();
        assert_eq!(third.as_ptr() as usize, start, "the first arena, reused");
        assert!(third.capacity() >= ARENA_BLOCKS * BS);
        assert!(pool.spent.is_empty());
    }

    #[test]
    fn a_buffer_that_never_was_an_arena_is_not_kept() {
        let mut pool = arenas();
        pool.retire(BytesMut::new());
        assert!(pool.spent.is_empty());
    }
}
