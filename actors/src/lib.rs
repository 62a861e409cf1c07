//! # codex-actors: the engine of a Codex-compatible storage node
//!
//! Cuts files into 64 KiB blocks, hashes them with sha2-256, names them with CIDv1, stores
//! them with their metadata in an embedded fjall database, builds the Codex Merkle tree and
//! stores a manifest, so that a file gets the same manifest CID it gets from a Codex node.
//! No HTTP here: embedders drive it through [`Node`].
//!
//! # Layout
//! - [`format`](mod@format): pure Codex formats (CIDs, manifest protobuf, Merkle tree and
//!   proofs, block-exchange messages).
//! - [`network`]: everything that talks to peers, behind one door: the libp2p component
//!   ([`network::net`]) that speaks `/codex/blockexc/1.0.0` with Codex and runs our provider
//!   DHT, Codex's own DHT ([`network::codex_dht`]), the block-exchange actor
//!   ([`network::exchange`]) and the fetches ([`network::fetch`]).
//! - [`node`]: the [`Node`] handle that starts the actors and talks to them.
//! - One actor per concern, each file holding its messages: [`chunker`] (bytes → blocks),
//!   [`hasher`] (sha2-256 and tree layers), [`upload`] (gathers CIDs, commits the manifest),
//!   [`block_store`] (block bytes: the only owner of the segment files), [`meta_store`] (all
//!   metadata: the single writer, with its journal syncer), [`meta_reader`] (metadata queries
//!   from snapshots, on their own threads), [`maintenance`] (expiry and compaction on a timer).
//! - Private: `segments` (block bytes in append-only files, used only by the block store),
//!   `records` (keys and bincode records in fjall, written only by the metadata actor),
//!   `repo` (sequences over several actors: a removal is synced before its bytes are
//!   released), `migration` (upgrades of older repositories); [`repair`]: the start-up check.
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

pub mod block_store;
pub mod chunker;
mod clock;
pub mod config;
pub mod dataset_events;
mod download;
pub mod error;
pub mod format;
pub mod hasher;
pub mod maintenance;
pub mod meta_reader;
pub mod meta_store;
mod migration;
pub mod network;
pub mod node;
mod records;
pub mod repair;
mod repo;
mod segments;
pub mod upload;

pub use cid::Cid;
pub use config::Config;
pub use error::{Error, Result};
pub use format::{
    cid::{cid_text, parse_cid, CidError},
    manifest::Manifest,
};
pub use libp2p::{Multiaddr, PeerId};
pub use meta_store::FetchProgress;
pub use meta_store::{Expired, Removed, Space};
pub use network::codex_join::{CodexTable, CodexTableNode};
pub use network::fetch::FetchStatus;
pub use network::NetworkConfig;
pub use network::{Fetching, Network};
pub use node::{ByteStream, Node};
pub use records::{Counters, Location};
pub use upload::{UploadOptions, UploadSession};
