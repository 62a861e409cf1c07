//! Storing one batch of fetched blocks: the same order as an upload (bytes written, bytes
//! synced, then the records), so no record ever points at bytes that a power cut could lose.

use bytes::Bytes;
use cid::Cid;

use crate::{
    block_store::{ReleaseBytes, SyncBlocks, WriteBlocks},
    error::{Error, Result},
    format::merkle::CodexProof,
    meta_reader::FindBlocks,
    meta_store::{FetchedBlock, StoreFetched, SyncMeta},
    records::Location,
    repo::Repo,
};

/// One batch of verified blocks of a dataset being fetched.
pub(super) struct Job {
    pub(super) repo: Repo,
    pub(super) manifest: Cid,
    pub(super) expiry: u64,
    pub(super) blocks: Vec<(u64, Cid, Bytes, CodexProof)>,
}

/// What a batch achieved.
pub(super) struct Outcome {
    /// Blocks of the dataset stored now.
    pub(super) stored: u64,
    /// The dataset is complete (and that is durable).
    pub(super) completed: bool,
    /// The leaf indexes this batch stored, with their (verified) bytes.
    pub(super) blocks: Vec<(u64, Bytes)>,
    /// Leaf indexes the store refused: to be fetched again.
    pub(super) refused: Vec<u64>,
}

impl Job {
    pub(super) async fn run(self) -> Result<Outcome> {
        let repo = self.repo;
        let stored_blocks: Vec<(u64, Bytes)> =
            self.blocks.iter().map(|b| (b.0, b.2.clone())).collect();
        let mut todo = self.blocks;
        let mut write_all = false;
        for _ in 0..3 {
            let cids: Vec<Cid> = todo.iter().map(|b| b.1).collect();
            let stored = if write_all {
                vec![None; todo.len()]
            } else {
                repo.reader.send(FindBlocks { cids }).await??
            };
            let missing: Vec<(Cid, Bytes)> = todo
                .iter()
                .zip(&stored)
                .filter(|(_, s)| s.is_none())
                .map(|(b, _)| (b.1, b.2.clone()))
                .collect();
            let mut written = Vec::new().into_iter();
            if !missing.is_empty() {
                written = repo
                    .blocks
                    .send(WriteBlocks { blocks: missing })
                    .await??
                    .into_iter();
                // Durable before any record points at them.
                repo.blocks.send(SyncBlocks).await??;
            }
            let blocks: Vec<FetchedBlock> = todo
                .iter()
                .zip(&stored)
                .map(|((index, cid, data, proof), s)| FetchedBlock {
                    index: *index,
                    cid: *cid,
                    size: data.len() as u64,
                    location: if s.is_none() { written.next() } else { None },
                    proof: proof.clone(),
                })
                .collect();
            // Each copy once: a block repeated in the batch shares one copy.
            let fresh: Vec<Location> = blocks
                .iter()
                .filter_map(|b| b.location)
                .collect::<std::collections::HashSet<_>>()
                .into_iter()
                .collect();
            let msg = StoreFetched {
                manifest: self.manifest,
                blocks,
                expiry: self.expiry,
            };
            let fetched = match repo.meta.send(msg).await? {
                Ok(f) => f,
                Err(e) => {
                    release(&repo, fresh).await;
                    return Err(e);
                }
            };
            release(&repo, fetched.garbage).await;
            if fetched.completed {
                // The dataset is now an ordinary one: make that survive a power cut.
                repo.journal.send(SyncMeta).await??;
            }
            if fetched.missing.is_empty() {
                let refused = fetched.refused;
                let blocks = stored_blocks
                    .into_iter()
                    .filter(|(i, _)| !refused.contains(i))
                    .collect();
                return Ok(Outcome {
                    stored: fetched.stored,
                    completed: fetched.completed,
                    blocks,
                    refused,
                });
            }
            // Blocks removed between the lookup and the record: write them this time.
            todo.retain(|b| fetched.missing.contains(&b.0));
            write_all = true;
        }
        Err(Error::Unavailable)
    }
}

/// Hands back copies no record points at (and never did).
async fn release(repo: &Repo, dead: Vec<Location>) {
    if !dead.is_empty() {
        let _ = repo.blocks.send(ReleaseBytes { locations: dead }).await;
    }
}
