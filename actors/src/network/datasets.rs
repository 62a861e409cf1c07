//! [`Network`]'s dataset operations: a manifest from peers, a dataset fetched into the store
//! (`POST /data/{cid}/network`), and a stream of one still being fetched (`network/stream`).

use std::ops::Range;

use bytes::Bytes;
use cid::Cid;
use tokio::sync::watch;

use super::{
    fetch::{Fetch, FetchStatus, LastFailure, RunningFetches, StartFetch},
    Network,
};
use crate::{
    clock::expiry_after,
    download::{self, ByteStream},
    error::{Error, FetchFailure, NotOnNetwork, Result},
    format::{
        cid::MANIFEST_CODEC,
        manifest::{cid_of_encoded, Manifest},
    },
    meta_reader::{FindManifest, GetManifest},
    meta_store::SyncMeta,
};

/// A dataset fetched (or being fetched) from peers.
#[derive(Debug, Clone)]
pub struct Fetching {
    /// Its manifest.
    pub manifest: Manifest,
    /// Where the fetch stands; a complete dataset starts as [`FetchStatus::Complete`].
    pub status: watch::Receiver<FetchStatus>,
    /// The fetch actor, while one runs (readers take freshly stored blocks from it).
    fetch: Option<actix::Addr<Fetch>>,
}

/// Every dataset this node writes or fetches has 64 KiB blocks.
const BLOCK_SIZE_U64: u64 = crate::format::manifest::CODEX_BLOCK_SIZE as u64;

impl Network {
    /// The manifest stored under `cid`, here (complete or being fetched) or, failing that,
    /// from peers (not stored). Returns its bytes too.
    ///
    /// # Errors
    /// [`Error::NotAManifest`] for another kind of CID; [`Error::NotOnNetwork`] when no peer
    /// has it within the configured time; [`Error::BadManifest`].
    pub async fn manifest(&self, cid: Cid) -> Result<(Manifest, Bytes)> {
        let repo = &self.room.repo;
        if let Some(local) = repo.reader.send(FindManifest { cid }).await?? {
            return Ok((local.manifest, local.bytes));
        }
        if cid.codec() != MANIFEST_CODEC {
            // The local answer: not found, or a block that is no manifest.
            let local = repo.reader.send(GetManifest { cid }).await?;
            return Err(local.err().unwrap_or(Error::NotFound(cid)));
        }
        let bytes = self.room.block_from_peers(cid).await?;
        if cid_of_encoded(&bytes) != cid {
            return Err(Error::NotOnNetwork(NotOnNetwork::WrongBytes));
        }
        let manifest = Manifest::decode(&bytes).map_err(|e| Error::BadManifest {
            cid,
            reason: e.to_string(),
        })?;
        Ok((manifest, bytes))
    }

    /// Fetches the dataset `cid` from peers into the local store, in the background (Codex's
    /// `POST /data/{cid}/network`); resumes a fetch cut short. The dataset's quota is reserved
    /// up front. Once complete it is an ordinary local dataset.
    ///
    /// # Errors
    /// As [`Network::manifest`]; [`Error::QuotaExceeded`] when the dataset cannot fit;
    /// [`Error::TooManyFetches`] when too many fetches run.
    pub async fn fetch(&self, cid: Cid) -> Result<Fetching> {
        self.fetch_from(cid, None).await
    }

    /// [`Network::fetch`], starting with leaf `from` (where a reader starts) rather than a
    /// random one, when no fetch of the dataset runs yet.
    ///
    /// # Errors
    /// As [`Network::fetch`].
    pub async fn fetch_from(&self, cid: Cid, from: Option<u64>) -> Result<Fetching> {
        let (manifest, bytes) = self.manifest(cid).await?;
        let expiry = expiry_after(self.room.store.block_ttl);
        let repo = &self.room.repo;
        let progress = repo
            .begin_fetch(cid, manifest.tree_cid, bytes.to_vec(), expiry)
            .await?;
        if progress.complete {
            // Every leaf was here already, so the manifest record was just written: it must be
            // durable before the dataset is reported complete.
            repo.journal.send(SyncMeta).await??;
            let (_, status) = watch::channel(FetchStatus::Complete {
                total: progress.total,
            });
            return Ok(Fetching {
                manifest,
                status,
                fetch: None,
            });
        }
        let (status, fetch) = self
            .room
            .fetches
            .send(StartFetch {
                manifest_cid: cid,
                manifest: manifest.clone(),
                stored: progress.stored,
                expiry,
                from,
            })
            .await??;
        Ok(Fetching {
            manifest,
            status,
            fetch: Some(fetch),
        })
    }

    /// Streams bytes `range` of dataset `cid` (all of it when `None`), fetching from peers what
    /// is not stored here (Codex's `network/stream`); what arrives is kept.
    ///
    /// # Errors
    /// As [`Network::fetch`]; [`Error::RangeNotSatisfiable`]. Failures while streaming arrive
    /// as the stream's last item.
    pub async fn stream(
        &self,
        cid: Cid,
        range: Option<Range<u64>>,
    ) -> Result<(Manifest, ByteStream)> {
        let from = range.as_ref().map_or(0, |r| r.start / BLOCK_SIZE_U64);
        let fetching = self.fetch_from(cid, Some(from)).await?;
        let stream = self.read_fetching(cid, &fetching, range)?;
        Ok((fetching.manifest, stream))
    }

    /// Streams bytes `range` of a dataset [`Network::fetch`] started: from the store, waiting
    /// for the fetch (and asking it for these blocks first) where a block is not there yet.
    ///
    /// # Errors
    /// [`Error::RangeNotSatisfiable`].
    pub fn read_fetching(
        &self,
        cid: Cid,
        fetching: &Fetching,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream> {
        let manifest = &fetching.manifest;
        let range = download::range_within(manifest.dataset_size, range)?;
        let read_ahead = self.room.store.read_ahead_blocks;
        let repo = self.room.repo.clone();
        if matches!(*fetching.status.borrow(), FetchStatus::Complete { .. }) {
            return Ok(download::stream(repo, manifest.clone(), range, read_ahead));
        }
        let source = super::fetch::stream::Source {
            repo,
            fetches: self.room.fetches.clone(),
            manifest_cid: cid,
            manifest: manifest.clone(),
            status: fetching.status.clone(),
            fetch: fetching.fetch.clone(),
        };
        Ok(super::fetch::stream::stream(source, range, read_ahead))
    }

    /// The status of the fetch of dataset `cid`, while one runs.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub async fn running_fetch(&self, cid: Cid) -> Result<Option<FetchStatus>> {
        let running = self.room.fetches.send(RunningFetches).await?;
        Ok(running.into_iter().find(|(c, _)| *c == cid).map(|(_, s)| s))
    }

    /// Why the last fetch of a dataset failed, when no fetch of it runs now (the newest 64
    /// failures are kept, until the node stops). A fetch started in the background
    /// (`POST /data/{cid}/network`) has no one waiting on it: this is where its error goes.
    ///
    /// # Errors
    /// Only if the network room stopped.
    pub async fn last_failure(&self, cid: Cid) -> Result<Option<FetchFailure>> {
        Ok(self
            .room
            .fetches
            .send(LastFailure { manifest_cid: cid })
            .await?)
    }
}
