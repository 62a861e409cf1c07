//! Reclaiming the space of deleted blocks: a sealed segment that is less than half live has its
//! live blocks copied to the active segment; once the metadata actor has pointed the index at
//! the copies, the old segment has no live bytes left and its file is deleted.
//!
//! The index switch happens in the metadata actor's mailbox ([`BlockBytes::relocate_in`]) and
//! only where the index still points at the old copy, so a block deleted (or deleted and stored
//! again) while it was being copied is never resurrected: its copy is simply dead space.

use std::os::unix::fs::FileExt;

use cid::Cid;
use fjall::OwnedWriteBatch;

use super::{lock, BlockBytes, Location};
use crate::{
    error::{Error, Result},
    format::cid::verify,
    records,
};

/// Live fraction under which a sealed segment is compacted.
const COMPACT_BELOW: f64 = 0.5;

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
    fn sparse_segment(&self) -> Result<Option<u32>> {
        let active = lock(&self.inner.writer).segment;
        let live = lock(&self.inner.live).clone();
        let mut best: Option<(f64, u32)> = None;
        for entry in std::fs::read_dir(&self.inner.dir)? {
            let name = entry?.file_name();
            let Some(segment) = super::segment_number(&name) else {
                continue;
            };
            if segment == active {
                continue;
            }
            let size = std::fs::metadata(super::segment_path(&self.inner.dir, segment))?
                .len()
                .max(1);
            let fraction = live.get(&segment).copied().unwrap_or(0) as f64 / size as f64;
            if fraction < COMPACT_BELOW && best.is_none_or(|(f, _)| fraction < f) {
                best = Some((fraction, segment));
            }
        }
        Ok(best.map(|(_, segment)| segment))
    }

    /// Copies the live blocks of the sparsest sealed segment to the active one and syncs the
    /// copies. Returns the moves for the metadata actor, or `None` when no segment needs it.
    /// A segment with nothing live is deleted at once.
    pub(crate) fn compact_step(&self) -> Result<Option<Vec<Move>>> {
        let Some(segment) = self.sparse_segment()? else {
            return Ok(None);
        };
        let mut moves = Vec::new();
        let file = self.file(segment)?;
        // The index is keyed by CID, so finding a segment's blocks means one pass over it;
        // compaction is rare and the index is small next to the data.
        for guard in self.inner.index.iter() {
            let (key, value) = guard.into_inner()?;
            let from: Location = records::decode(&value)?;
            if from.segment != segment {
                continue;
            }
            let cid = Cid::try_from(key.as_ref())
                .map_err(|_| Error::Config("bad key in the block index".into()))?;
            let mut data = vec![0u8; from.len as usize];
            file.read_exact_at(&mut data, from.offset)?;
            if !verify(&cid, &data) {
                tracing::error!(
                    segment,
                    offset = from.offset,
                    "corrupted block left in place by compaction"
                );
                continue;
            }
            let to = {
                let mut w = lock(&self.inner.writer);
                self.append(&mut w, &key, &data)?
            };
            *lock(&self.inner.live).entry(to.segment).or_default() += u64::from(to.len);
            moves.push(Move { cid, from, to });
        }
        if moves.is_empty() {
            // Nothing live: the file can go now.
            lock(&self.inner.live).insert(segment, 0);
            self.released(&[Location {
                segment,
                offset: 0,
                len: 0,
            }]);
            return Ok(Some(moves));
        }
        self.sync()?; // copies are durable before the index points at them
        Ok(Some(moves))
    }

    /// Points the index at the copy, in the metadata actor's batch, if it still points at the
    /// original. Returns false when the block was deleted or rewritten meanwhile.
    pub(crate) fn relocate_in(&self, batch: &mut OwnedWriteBatch, mv: &Move) -> Result<bool> {
        let key = mv.cid.to_bytes();
        if self.location(&key)? != Some(mv.from) {
            return Ok(false);
        }
        batch.insert(&self.inner.index, key, records::encode(&mv.to)?);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use fjall::Database;

    use super::*;
    use crate::format::cid::block_cid;

    #[test]
    fn a_block_deleted_during_compaction_is_not_resurrected() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let db = Database::builder(dir.path().join("db")).open()?;
        let bytes = BlockBytes::open(&db, &dir.path().join("blocks"), 150_000)?;
        let blocks: Vec<(Cid, Bytes)> = (1u8..=3)
            .map(|i| Bytes::from(vec![i; 65536]))
            .map(|b| (block_cid(&b), b))
            .collect();
        bytes.write(&blocks)?; // segment 0: blocks 1 and 2; segment 1 (active): block 3
        let (kept, deleted) = (blocks[0].0, blocks[1].0);
        // Block 2 goes: segment 0 is half live, so it is compacted.
        let mut batch = db.batch();
        let gone = bytes
            .remove_in(&mut batch, &deleted)?
            .into_iter()
            .collect::<Vec<_>>();
        batch.commit()?;
        bytes.released(&gone);
        let moves = bytes
            .compact_step()?
            .expect("segment 0 is half dead and sealed");
        assert_eq!(moves.len(), 1);
        assert_eq!(moves[0].cid, kept);
        // Meanwhile the kept block is deleted too: the relocation must not bring it back.
        let mut batch = db.batch();
        bytes.remove_in(&mut batch, &kept)?;
        batch.commit()?;
        let mut batch = db.batch();
        assert!(!bytes.relocate_in(&mut batch, &moves[0])?);
        batch.commit()?;
        assert!(!bytes.contains(&kept)?);
        Ok(())
    }
}
