//! Storing one batch of fetched blocks with the repository's one storing sequence
//! ([`Repo::store_blocks`], the same as an upload's: bytes written, bytes synced, then the
//! records), so no record ever points at bytes that a power cut could lose.

use std::collections::HashMap;

use bytes::Bytes;
use cid::Cid;

use crate::{
    error::Result,
    format::merkle::CodexProof,
    meta_store::{Fetched, FetchedBlock, StoreFetched, SyncMeta},
    repo::{Recorded, Repo},
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
    /// Stores the batch the repository's way ([`Repo::store_blocks`], synced before the
    /// records), recording with [`StoreFetched`]; the completing batch is made durable.
    pub(super) async fn run(self) -> Result<Outcome> {
        let repo = self.repo;
        let blocks: Vec<(Cid, Bytes)> = self.blocks.iter().map(|b| (b.1, b.2.clone())).collect();
        let leaves: Vec<(u64, CodexProof)> =
            self.blocks.iter().map(|b| (b.0, b.3.clone())).collect();
        let (meta, manifest, expiry) = (repo.meta.clone(), self.manifest, self.expiry);
        let mut rounds: Vec<Fetched> = Vec::new();
        repo.store_blocks(&blocks, true, &mut rounds, |batch| {
            let meta = meta.clone();
            let position: HashMap<u64, usize> =
                batch.iter().map(|b| (leaves[b.at].0, b.at)).collect();
            let entries: Vec<FetchedBlock> = batch
                .iter()
                .map(|b| FetchedBlock {
                    index: leaves[b.at].0,
                    cid: b.cid,
                    size: b.size,
                    location: b.location,
                    proof: leaves[b.at].1.clone(),
                })
                .collect();
            async move {
                let mut fetched = meta
                    .send(StoreFetched {
                        manifest,
                        blocks: entries,
                        expiry,
                    })
                    .await??;
                Ok(Recorded {
                    garbage: std::mem::take(&mut fetched.garbage),
                    again: fetched
                        .missing
                        .iter()
                        .filter_map(|i| position.get(i).copied())
                        .collect(),
                    outcome: fetched,
                })
            }
        })
        .await?;
        let completed = rounds.iter().any(|f| f.completed);
        if completed {
            // The dataset is now an ordinary one: make that survive a power cut.
            repo.journal.send(SyncMeta).await??;
        }
        let refused: Vec<u64> = rounds.iter().flat_map(|f| f.refused.clone()).collect();
        let stored = rounds.last().map_or(0, |f| f.stored);
        let blocks = self
            .blocks
            .into_iter()
            .filter(|b| !refused.contains(&b.0))
            .map(|b| (b.0, b.2))
            .collect();
        Ok(Outcome {
            stored,
            completed,
            blocks,
            refused,
        })
    }
}
