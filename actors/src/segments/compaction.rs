//! Reclaiming the space of deleted blocks: a sealed segment that is less than half live has its
//! live blocks copied to the active segment and synced; the metadata actor then points the
//! records at the copies (only where they still point at the originals, so a block deleted or
//! rewritten meanwhile is never resurrected), syncs that, and only then are the originals
//! released, which deletes the old file (issue 10, item 2: never delete a file the durable
//! metadata may still point into).

use bytes::Bytes;
use cid::Cid;

use super::{lock, BlockBytes, Location};
use crate::{error::Result, format::cid::verify};

/// Live fraction under which a sealed segment is compacted.
const COMPACT_BELOW: f64 = 0.5;
/// Blocks read and written together by compaction.
const COPY_RUN: usize = 16;

/// One block copied by compaction, to be committed by the metadata actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// The block.
    pub cid: Cid,
    /// Where it was.
    pub from: Location,
    /// Where the copy is.
    pub to: Location,
}

impl BlockBytes {
    /// The sealed segment with the smallest live fraction, if it is under half live.
    pub(crate) fn sparse_segment(&self) -> Result<Option<u32>> {
        let active = lock(&self.inner.writer).segment;
        let live = lock(&self.inner.live).clone();
        let mut best: Option<(f64, u32)> = None;
        for (segment, size) in super::segment_lengths(&self.inner.dir)? {
            if segment == active {
                continue;
            }
            let fraction = live.get(&segment).copied().unwrap_or(0) as f64 / size.max(1) as f64;
            if fraction < COMPACT_BELOW && best.is_none_or(|(f, _)| fraction < f) {
                best = Some((fraction, segment));
            }
        }
        Ok(best.map(|(_, segment)| segment))
    }

    /// Copies `blocks` (the live blocks of one segment, as the metadata lists them) to the
    /// active segment and syncs the copies. A block whose bytes do not match its CID is left
    /// in place (and logged): copying it would only spread the damage.
    pub(crate) fn copy(&self, blocks: &[(Cid, Location)]) -> Result<Vec<Move>> {
        let mut moves = Vec::with_capacity(blocks.len());
        // A few blocks per run: memory stays bounded however large the segment.
        for chunk in blocks.chunks(COPY_RUN) {
            let mut read = Vec::with_capacity(chunk.len());
            for (cid, from) in chunk {
                match self.read(cid, *from) {
                    Ok(data) => read.push((*cid, *from, data)),
                    Err(e) => {
                        tracing::error!(segment = from.segment, offset = from.offset, error = %e, "block left in place by compaction");
                    }
                }
            }
            let copies: Vec<(Cid, Bytes)> = read.iter().map(|(c, _, d)| (*c, d.clone())).collect();
            let to = self.write(&copies)?;
            for ((cid, from, data), to) in read.into_iter().zip(to) {
                debug_assert!(verify(&cid, &data));
                moves.push(Move { cid, from, to });
            }
        }
        self.sync()?; // copies are durable before any record points at them
        Ok(moves)
    }

    /// Deletes `segment` if nothing in it is live (a segment whose last block went while it was
    /// still active, or whose removal failed earlier).
    pub(crate) fn remove_if_dead(&self, segment: u32) {
        let active = lock(&self.inner.writer).segment;
        let mut live = lock(&self.inner.live);
        if segment != active && live.get(&segment).copied().unwrap_or(0) == 0 {
            live.remove(&segment);
            self.remove_segment(segment);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::format::cid::block_cid;

    #[test]
    fn a_half_dead_segment_is_copied_and_goes_once_released() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let bytes = BlockBytes::open(dir.path(), 150_000, HashMap::new())?;
        let blocks: Vec<(Cid, Bytes)> = (1u8..=3)
            .map(|i| Bytes::from(vec![i; 65536]))
            .map(|b| (block_cid(&b), b))
            .collect();
        let locs = bytes.write(&blocks)?; // segment 0: blocks 1 and 2; segment 1: block 3
        bytes.release(&locs[1..2]); // block 2 deleted: segment 0 is half live
        assert_eq!(bytes.sparse_segment()?, Some(0));
        let moves = bytes.copy(&[(blocks[0].0, locs[0])])?;
        assert_eq!(moves.len(), 1);
        assert_eq!(bytes.read(&blocks[0].0, moves[0].to)?, blocks[0].1);
        assert!(super::super::segment_path(dir.path(), 0).exists());
        bytes.release(&[moves[0].from]);
        assert!(!super::super::segment_path(dir.path(), 0).exists());
        Ok(())
    }
}
