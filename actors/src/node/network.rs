//! The network operations of [`Node`]: identity and peers, manifests and datasets from peers.
//! Each answers [`Error::NoNetwork`] on a node started without a network.

use std::ops::Range;

use bytes::Bytes;
use cid::Cid;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::watch;

use super::{ByteStream, Node};
use crate::clock::expiry_after;
use crate::{
    download,
    error::{Error, Result},
    format::{
        cid::MANIFEST_CODEC,
        manifest::{cid_of_encoded, Manifest},
    },
    meta_reader::{FindManifest, ListFetches},
    meta_store::{BeginFetch, FetchProgress, SyncMeta},
    network::exchange::{Connect, DatasetStored, ExchangeStats, GetStats},
    network::fetch::{Fetch, FetchStatus, RunningFetches, StartFetch},
    network::net::{DhtStats, RoutingTable},
    network::Network,
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
const BLOCK_SIZE_U64: u64 = crate::config::BLOCK_SIZE as u64;

impl Node {
    fn network(&self) -> Result<&Network> {
        self.network.as_deref().ok_or(Error::NoNetwork)
    }

    /// This node's peer id, when it runs a network.
    pub fn peer_id(&self) -> Option<PeerId> {
        self.network.as_ref().map(|n| n.net.peer_id())
    }

    /// The addresses the network listens on.
    ///
    /// # Errors
    /// [`Error::NoNetwork`]; [`Error::Unavailable`] when the network stopped.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        let network = self.network()?;
        network
            .net
            .listen_addrs()
            .await
            .map_err(|_| Error::Unavailable)
    }

    /// The addresses peers should dial: the configured announce addresses, else the listen
    /// addresses.
    ///
    /// # Errors
    /// As [`Node::listen_addrs`].
    pub async fn announce_addrs(&self) -> Result<Vec<Multiaddr>> {
        let network = self.network()?;
        if !network.config.net.announce_addrs.is_empty() {
            return Ok(network.config.net.announce_addrs.clone());
        }
        self.listen_addrs().await
    }

    /// This node's signed peer record (`spr:` text): when Codex's DHT runs, its record (the
    /// UDP address, what a Codex node takes as `--bootstrap-node`), else one over the TCP
    /// announce addresses.
    ///
    /// # Errors
    /// As [`Node::listen_addrs`]; [`Error::Network`] when the record cannot be signed.
    pub async fn spr(&self) -> Result<String> {
        if let Some(dht) = &self.network()?.codex_dht {
            return Ok(dht.local_record().to_text());
        }
        let addrs = self.announce_addrs().await?;
        let network = self.network()?;
        network
            .net
            .spr(addrs)
            .map_err(|e| Error::Network(e.to_string()))
    }

    /// Connects to `peer` at `addrs` (Codex's `/connect`).
    ///
    /// # Errors
    /// [`Error::Network`] when the peer cannot be reached there.
    pub async fn connect(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<()> {
        let network = self.network()?;
        network
            .exchange
            .send(Connect { peer, addrs })
            .await?
            .map_err(|e| Error::Network(e.to_string()))
    }

    /// The manifest stored under `cid`, here (complete or being fetched) or, failing that,
    /// from peers (not stored). Returns its bytes too.
    ///
    /// # Errors
    /// [`Error::NotAManifest`] for another kind of CID; [`Error::NotOnNetwork`] when no peer
    /// has it within the configured time; [`Error::BadManifest`].
    pub async fn network_manifest(&self, cid: Cid) -> Result<(Manifest, Bytes)> {
        if let Some(local) = self.repo.reader.send(FindManifest { cid }).await?? {
            return Ok((local.manifest, local.bytes));
        }
        let Some(network) = self
            .network
            .as_deref()
            .filter(|_| cid.codec() == MANIFEST_CODEC)
        else {
            // Not a manifest CID, or no network to ask: the local answer (not found, or a
            // block that is no manifest).
            return Err(self
                .manifest(cid)
                .await
                .err()
                .unwrap_or(Error::NotFound(cid)));
        };
        let bytes = network.block_from_peers(cid).await?;
        if cid_of_encoded(&bytes) != cid {
            return Err(Error::NotOnNetwork("a peer sent other bytes".into()));
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
    /// As [`Node::network_manifest`]; [`Error::QuotaExceeded`] when the dataset cannot fit;
    /// [`Error::Busy`] when too many fetches run.
    pub async fn fetch(&self, cid: Cid) -> Result<Fetching> {
        self.fetch_from(cid, None).await
    }

    /// [`Node::fetch`], starting with leaf `from` (where a reader starts) rather than a random
    /// one, when no fetch of the dataset runs yet.
    ///
    /// # Errors
    /// As [`Node::fetch`].
    pub async fn fetch_from(&self, cid: Cid, from: Option<u64>) -> Result<Fetching> {
        let (manifest, bytes) = self.network_manifest(cid).await?;
        let expiry = expiry_after(self.config.block_ttl);
        let progress = self
            .repo
            .meta
            .send(BeginFetch {
                manifest: bytes.to_vec(),
                expiry,
            })
            .await??;
        // Holding the manifest, this node can serve what it fetches: announce it at once.
        if let Some(network) = &self.network {
            network.exchange.do_send(DatasetStored {
                manifest: cid,
                tree: manifest.tree_cid,
            });
        }
        if progress.complete {
            // Every leaf was here already, so the manifest record was just written: it must be
            // durable before the dataset is reported complete.
            self.repo.journal.send(SyncMeta).await??;
            let (_, status) = watch::channel(FetchStatus::Complete {
                total: progress.total,
            });
            return Ok(Fetching {
                manifest,
                status,
                fetch: None,
            });
        }
        let network = self.network()?;
        let (status, fetch) = network
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
    /// As [`Node::fetch`]; [`Error::RangeNotSatisfiable`]. Failures while streaming arrive as
    /// the stream's last item.
    pub async fn stream_network(
        &self,
        cid: Cid,
        range: Option<Range<u64>>,
    ) -> Result<(Manifest, ByteStream)> {
        let from = range.as_ref().map_or(0, |r| r.start / BLOCK_SIZE_U64);
        let fetching = self.fetch_from(cid, Some(from)).await?;
        let stream = self.read_fetching(cid, &fetching, range)?;
        Ok((fetching.manifest, stream))
    }

    /// Streams bytes `range` of a dataset [`Node::fetch`] started: from the store, waiting for
    /// the fetch (and asking it for these blocks first) where a block is not there yet.
    ///
    /// # Errors
    /// [`Error::RangeNotSatisfiable`]; [`Error::NoNetwork`].
    pub fn read_fetching(
        &self,
        cid: Cid,
        fetching: &Fetching,
        range: Option<Range<u64>>,
    ) -> Result<ByteStream> {
        let manifest = &fetching.manifest;
        if matches!(*fetching.status.borrow(), FetchStatus::Complete { .. }) {
            return self.read(manifest, range);
        }
        let size = manifest.dataset_size;
        let range = range.unwrap_or(0..size);
        if range.start >= range.end || range.end > size {
            return Err(Error::RangeNotSatisfiable { size });
        }
        let source = download::fetching::Source {
            repo: self.repo.clone(),
            fetches: self.network()?.fetches.clone(),
            manifest_cid: cid,
            manifest: manifest.clone(),
            status: fetching.status.clone(),
            fetch: fetching.fetch.clone(),
        };
        Ok(download::fetching::stream(
            source,
            range,
            self.config.read_ahead_blocks,
        ))
    }

    /// Progress of dataset `cid` here: blocks stored of blocks total, and whether a fetch runs.
    /// `None` when nothing of it is stored.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn fetch_progress(&self, cid: Cid) -> Result<Option<(FetchProgress, bool)>> {
        let Some(local) = self.repo.reader.send(FindManifest { cid }).await?? else {
            return Ok(None);
        };
        let running = self
            .running_fetches()
            .await?
            .into_iter()
            .find(|(c, _)| *c == cid);
        let progress = match running {
            Some((_, FetchStatus::Running { stored, total })) => FetchProgress {
                stored: stored.max(local.progress.stored),
                total,
                complete: false,
            },
            _ => local.progress,
        };
        Ok(Some((progress, running.is_some())))
    }

    /// Every dataset stored partially (being fetched, or cut short), with its progress.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn partial_datasets(&self) -> Result<Vec<(Cid, FetchProgress)>> {
        self.repo.reader.send(ListFetches).await?
    }

    async fn running_fetches(&self) -> Result<Vec<(Cid, FetchStatus)>> {
        match &self.network {
            Some(network) => Ok(network.fetches.send(RunningFetches).await?),
            None => Ok(Vec::new()),
        }
    }

    /// Counters of the block exchange.
    ///
    /// # Errors
    /// [`Error::NoNetwork`], [`Error::Unavailable`].
    pub async fn exchange_stats(&self) -> Result<ExchangeStats> {
        Ok(self.network()?.exchange.send(GetStats).await?)
    }

    /// The DHT routing table, in Codex's `/debug/info` `table` shape.
    ///
    /// # Errors
    /// [`Error::NoNetwork`], [`Error::Unavailable`].
    pub async fn routing_table(&self) -> Result<RoutingTable> {
        let network = self.network()?;
        network
            .net
            .routing_table()
            .await
            .map_err(|_| Error::Unavailable)
    }

    /// Codex's DHT routing table in Codex's `/debug/info` shape; `None` when Codex's DHT does
    /// not run.
    ///
    /// # Errors
    /// [`Error::NoNetwork`], [`Error::Unavailable`].
    pub async fn codex_routing_table(&self) -> Result<Option<crate::CodexTable>> {
        match &self.network()?.codex_dht {
            Some(dht) => crate::network::codex_join::table(dht)
                .await
                .map(Some)
                .map_err(|_| Error::Unavailable),
            None => Ok(None),
        }
    }

    /// Counters of the DHT: lookups, providers found, dials.
    ///
    /// # Errors
    /// [`Error::NoNetwork`], [`Error::Unavailable`].
    pub async fn dht_stats(&self) -> Result<DhtStats> {
        let network = self.network()?;
        network
            .net
            .dht_stats()
            .await
            .map_err(|_| Error::Unavailable)
    }
}
