//! The engine's one error type, typed down to why a fetch stopped. Its messages are the
//! engine's own; the HTTP layer (`src/error.rs`) maps each variant to a status code in a single
//! exhaustive `match`, and gives Codex's wording where Codex's API has one, so a new variant here
//! fails the build there instead of becoming a silent 500.

use std::{fmt, sync::Arc};

use cid::Cid;

use crate::format::{
    blockexc::BlockAddress,
    cid::{cid_text, CidError},
};

/// Everything that can go wrong in the engine.
///
/// `Clone` so that an upload can remember its first failure and report it to every later call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The text is not a CID at all (bad multibase, bad varint, truncated).
    #[error("not a CID: {0}")]
    InvalidCid(String),
    /// A well-formed CID this node cannot hold (CIDv0, a foreign codec or hash).
    #[error("a CID this node cannot hold: {0}")]
    UnsupportedCid(String),
    /// Nothing is stored under this CID.
    #[error("{} is not stored here", cid_text(.0))]
    NotFound(Cid),
    /// The CID names a block, but the operation needs a manifest.
    #[error("{} is not a manifest", cid_text(.0))]
    NotAManifest(Cid),
    /// A block that a dataset (or an upload in progress) still uses cannot be deleted alone.
    #[error("block {} is part of a dataset", cid_text(.0))]
    BlockInUse(Cid),
    /// The upload had no bytes; Codex answers 500 "Empty leaves", we refuse it as bad input.
    #[error("The upload is empty: a dataset needs at least one byte")]
    EmptyUpload,
    /// A stored manifest could not be decoded.
    #[error("Manifest {} cannot be decoded: {reason}", cid_text(.cid))]
    BadManifest {
        /// The manifest's CID.
        cid: Cid,
        /// What the decoder said.
        reason: String,
    },
    /// Storing would take the repository past its quota; nothing of the write was kept.
    #[error("the quota would be exceeded: used {used}, reserved {reserved}, limit {max}, needed {needed}")]
    QuotaExceeded {
        /// Bytes in use before the write.
        used: u64,
        /// Bytes reserved before the write.
        reserved: u64,
        /// The configured quota.
        max: u64,
        /// Bytes the write needed.
        needed: u64,
    },
    /// A stored block no longer matches its CID (disk corruption). Never served as data.
    #[error("Block {} is corrupted on disk: its bytes are not those written (checksum or CID)", cid_text(.0))]
    Corrupted(Cid),
    /// The byte range asked for lies outside the dataset.
    #[error("Range not satisfiable: dataset has {size} bytes")]
    RangeNotSatisfiable {
        /// The dataset size, for the `Content-Range: bytes */size` reply.
        size: u64,
    },
    /// The upload stream from the client failed or stopped before its end.
    #[error("Upload stream failed: {0}")]
    Stream(String),
    /// The disk (or the file-size limit) is full; nothing of the failed write is kept.
    #[error("Insufficient storage: the disk is full ({0})")]
    DiskFull(StorageError),
    /// The embedded database or a file failed.
    #[error("Storage failure: {0}")]
    Storage(StorageError),
    /// A write to disk failed to sync earlier; the kernel may have dropped the data, so the
    /// store refuses further writes until the node is restarted (and the start-up check runs).
    #[error("Storage failure: an earlier disk sync failed; restart the node")]
    Poisoned,
    /// The configuration is unusable (caught at start-up).
    #[error("Invalid configuration: {0}")]
    Config(String),
    /// The operation needs the peer-to-peer network, which this node runs without.
    #[error("This node runs without a network")]
    NoNetwork,
    /// A peer could not be reached or did not answer.
    #[error("network failure: {0}")]
    Network(NetworkError),
    /// No peer delivered what was asked within the bounded time or retries.
    #[error("not found on the network: {0}")]
    NotOnNetwork(NotOnNetwork),
    /// As many datasets are being fetched as the configuration allows; try again later.
    #[error("busy: {running} datasets are being fetched already")]
    TooManyFetches {
        /// Fetches running (the configured maximum).
        running: usize,
    },
    /// An actor is gone (the node is shutting down) or dropped a reply.
    #[error("The storage engine is unavailable (shutting down?)")]
    Unavailable,
}

/// A failure of the network component, kept whole: `get_ref().downcast_ref::<NetError>()`
/// (`crate::network::net::NetError`) tells a failed dial from a stopped network. Opaque here
/// so that this file does not depend on the network room (which depends on it).
#[derive(Clone)]
pub struct NetworkError(Arc<dyn std::error::Error + Send + Sync>);

impl NetworkError {
    /// Wraps the network component's error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(e))
    }

    /// The error itself, to downcast.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why nothing usable came from the network.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotOnNetwork {
    /// This node knows no peer at all (none connected, none in either DHT's table).
    #[error("this node knows no peer")]
    NoPeers,
    /// The peers asked could not deliver it.
    #[error("no connected peer delivered it")]
    NoDelivery,
    /// Nobody delivered it within the manifest timeout (seconds).
    #[error("no peer delivered it within {0} s")]
    Timeout(u64),
    /// Nobody delivered it within the manifest timeout, and at its end this node was connected
    /// to no peer at all: every peer it knows refused it or could not be reached.
    #[error("no peer delivered it within {secs} s: this node is connected to none of the {known} peers it knows (its log names a bootstrap peer it could not reach)")]
    Unreachable {
        /// Peers in the DHTs' tables when the lookup started.
        known: u64,
        /// The manifest timeout.
        secs: u64,
    },
    /// A peer's bytes do not hash to the CID asked for.
    #[error("a peer sent other bytes")]
    WrongBytes,
    /// The fetch of the dataset stopped before the block was stored.
    #[error("the fetch stopped: {0}")]
    FetchStopped(FetchFailure),
}

/// Why a fetch stopped before the end. The blocks it stored stay (a later fetch resumes)
/// unless its dataset went.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchFailure {
    /// The dataset was deleted.
    #[error("the dataset was deleted")]
    Deleted,
    /// The dataset expired.
    #[error("the dataset expired")]
    Expired,
    /// The dataset's record went while a batch was being stored (deleted or expired).
    #[error("the dataset was removed (deleted or expired)")]
    Removed,
    /// No peer could deliver this block (every holder failed or none is left).
    #[error("no peer delivered {0}")]
    NoPeer(BlockAddress),
    /// The peer that held this block was reached through a relay, the relay ended the circuit
    /// at one of its limits (bytes or time per circuit), and no other peer delivered it.
    #[error("{reason}; no other peer delivered {address}")]
    RelayLimit {
        /// The block that was not delivered (boxed: it keeps `Error` small).
        address: Box<BlockAddress>,
        /// The relay's limit and what it was.
        reason: String,
    },
    /// The node is stopping (the exchange or the store went away).
    #[error("the node is stopping")]
    Stopped,
    /// Storing what arrived failed: the quota, the disk, the store.
    #[error("storing what arrived failed: {0}")]
    Store(Box<Error>),
}

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An opaque storage failure. It hides the backend's error type from the public API, so the
/// store can change without breaking embedders, while keeping the message and the source chain.
#[derive(Clone)]
pub struct StorageError(Arc<dyn std::error::Error + Send + Sync>);

impl fmt::Debug for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

fn disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge
    )
}

impl Error {
    /// Wraps a backend failure; a full disk gets its own variant because callers answer it
    /// differently (507, not 500).
    fn storage(e: impl std::error::Error + Send + Sync + 'static, full: bool) -> Self {
        let inner = StorageError(Arc::new(e));
        if full {
            Error::DiskFull(inner)
        } else {
            Error::Storage(inner)
        }
    }
}

impl From<fjall::Error> for Error {
    fn from(e: fjall::Error) -> Self {
        let full = match &e {
            fjall::Error::Io(io) | fjall::Error::Storage(fjall::LsmError::Io(io)) => disk_full(io),
            _ => false,
        };
        Error::storage(e, full)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let full = disk_full(&e);
        Error::storage(e, full)
    }
}

impl From<bincode::error::DecodeError> for Error {
    fn from(e: bincode::error::DecodeError) -> Self {
        Error::storage(e, false)
    }
}

impl From<bincode::error::EncodeError> for Error {
    fn from(e: bincode::error::EncodeError) -> Self {
        Error::storage(e, false)
    }
}

impl From<actix::MailboxError> for Error {
    fn from(_: actix::MailboxError) -> Self {
        Error::Unavailable
    }
}

impl From<CidError> for Error {
    fn from(e: CidError) -> Self {
        match e {
            CidError::Invalid(text) => Error::InvalidCid(text),
            CidError::Unsupported(text) => Error::UnsupportedCid(text),
        }
    }
}
