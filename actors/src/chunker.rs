//! The chunking actor: turns an upload's byte stream into 64 KiB blocks, one actor per upload.
//!
//! Takes [`Feed`] with whatever pieces the client's stream delivers and [`Close`] at the end,
//! zero-pads the last block (Codex's `LPStreamChunker` with `pad = true`), numbers the blocks and
//! sends each to the upload actor as [`AddBlock`]. A `Feed` is answered only once the upload
//! actor has admitted its blocks, which is how storage pushes back on the HTTP body.
//!
//! Blocks are cut from aligned arenas (16 blocks each), so the block store can write them to
//! disk directly from here without copying them again (`segments/append.rs`). A piece that
//! already holds a whole block at an aligned address is passed on without any copy.

use actix::{Actor, Addr, Context, Handler, Message, ResponseFuture};
use bytes::{Bytes, BytesMut};

use crate::{
    error::Result,
    segments::{is_aligned, ALIGN},
    upload::{AddBlock, Upload},
};

/// Blocks per arena: one allocation per batch of blocks rather than one per block.
const ARENA_BLOCKS: usize = 16;

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
    /// Index of the next block to send.
    next_index: u64,
    /// Real bytes received so far (the dataset size, without padding).
    received: u64,
    /// Where blocks go.
    upload: Addr<Upload>,
}

impl Chunker {
    /// A chunker sending `block_size` blocks to `upload`.
    pub fn new(block_size: u32, upload: Addr<Upload>) -> Self {
        let block_size = block_size as usize;
        Self {
            block_size,
            buf: BytesMut::new(),
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
                self.buf = arena(self.block_size);
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

/// An empty buffer with room for [`ARENA_BLOCKS`] blocks, starting at an aligned address.
fn arena(block_size: usize) -> BytesMut {
    let mut arena = BytesMut::with_capacity(ARENA_BLOCKS * block_size + ALIGN);
    let pad = arena.as_ptr().align_offset(ALIGN);
    arena.resize(pad, 0);
    let _ = arena.split_to(pad);
    arena
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
