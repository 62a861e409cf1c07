//! # codex-actors: the engine of a Codex-compatible storage node
//!
//! Cuts files into 64 KiB blocks, hashes them with sha2-256, names them with CIDv1, stores
//! them with their metadata in an embedded fjall database, builds the Codex Merkle tree and
//! stores a manifest, so that a file gets the same manifest CID it gets from a Codex node.
//! No HTTP here: embedders drive it through [`Node`].
//!
//! # Layout
//! Public on purpose, three modules; everything else is private and what embedders need is
//! re-exported here.
//! - [`format`](mod@format): pure Codex formats (CIDs, manifest protobuf, Merkle tree and
//!   proofs, block-exchange messages). Public because tools and tests build and check Codex
//!   data with it, without a node.
//! - [`network`]: everything that talks to peers, behind one door ([`Network`], from
//!   [`Node::network`]). Public because its libp2p component ([`network::net`]) and Codex's
//!   DHT ([`network::codex_dht`]) run on their own too (tests, tools), and its configuration
//!   types live there.
//! - [`repair`]: the start-up check, public because it also inspects a repository offline
//!   (the power-cut tests use it on a stopped node's directory).
//!
//! Private, one actor per concern, each file holding its messages: `chunker` (bytes → blocks),
//! `hasher` (sha2-256 and tree layers), `upload` (gathers CIDs, commits the manifest),
//! `block_store` (block bytes: the only owner of the segment files), `meta_store` (all
//! metadata: the single writer, with its journal syncer), `meta_reader` (metadata queries from
//! snapshots, on their own threads), `maintenance` (expiry and compaction on a timer); `node`
//! (the [`Node`] handle); `download` (streams of stored datasets); `segments` (block bytes in
//! append-only files, used only by the block store), `records` (keys and bincode records in
//! fjall, written only by the metadata actor), `repo` (sequences over several actors: a removal
//! is synced before its bytes are released; the only sender of [`DatasetEvent`]s),
//! `migration` (upgrades of older repositories).
//!
//! # Example
//! ```
//! use codex_actors::{Config, Node, UploadOptions};
//! use futures_util::StreamExt;
//!
//! # fn main() -> Result<(), codex_actors::Error> {
//! let dir = tempfile::tempdir()?;
//! actix::System::new().block_on(async {
//!     let node = Node::start(Config::new(dir.path())).await?;
//!     let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"some file contents"))]);
//!     let cid = node.store(body, UploadOptions::default()).await?;
//!     assert_eq!(codex_actors::cid_text(&cid), "zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy");
//!     let (manifest, mut bytes) = node.retrieve(cid).await?;
//!     assert_eq!(manifest.dataset_size, 18);
//!     assert_eq!(bytes.next().await.transpose()?.as_deref(), Some(&b"some file contents"[..]));
//!     node.shutdown().await
//! })
//! # }
//! ```
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]
#![warn(clippy::expect_used)]
#![cfg_attr(test, allow(clippy::expect_used, clippy::unwrap_used))]

mod block_store;
mod chunker;
mod clock;
mod config;
mod dataset_events;
mod download;
mod error;
pub mod format;
mod hasher;
mod kept_buffers;
mod maintenance;
mod meta_reader;
mod meta_store;
mod migration;
pub mod network;
mod node;
mod records;
pub mod repair;
mod repo;
mod segments;
mod upload;

pub use cid::Cid;
pub use config::{Config, BLOCK_SIZE, DEFAULT_QUOTA_BYTES, DEFAULT_SEGMENT_BYTES};
pub use dataset_events::{DatasetEvent, RemovedBy};
pub use error::{Error, FetchFailure, NetworkError, NotOnNetwork, Result, StorageError};
pub use format::{
    cid::{cid_text, parse_cid, CidError},
    manifest::Manifest,
};
pub use libp2p::{Multiaddr, PeerId};
pub use meta_reader::Dataset;
pub use meta_store::FetchProgress;
pub use meta_store::{Expired, Removed, Space};
pub use network::codex_join::{CodexTable, CodexTableNode};
pub use network::{ExchangeConfig, ExchangeStats, FetchStatus, NetworkConfig};
pub use network::{Fetching, Network};
pub use node::{ByteStream, Node};
pub use records::{Counters, Location};
pub use upload::{UploadOptions, UploadSession};
