//! The engine's one error type. The HTTP layer maps each variant to a status code in a single
//! exhaustive `match`, so a new variant here fails the build there instead of becoming a silent 500.

use std::{fmt, sync::Arc};

use cid::Cid;

use crate::format::cid::{cid_text, CidError};

/// Everything that can go wrong in the engine.
///
/// `Clone` so that an upload can remember its first failure and report it to every later call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The text is not a CID at all (bad multibase, bad varint, truncated).
    #[error("Incorrect Cid")]
    InvalidCid(String),
    /// A well-formed CID this node cannot hold (CIDv0, a foreign codec or hash).
    #[error("Unsupported Cid")]
    UnsupportedCid(String),
    /// Nothing is stored under this CID.
    #[error("The requested CID could not be retrieved (Block not found in local store).")]
    NotFound(Cid),
    /// The CID names a block, but the operation needs a manifest.
    #[error("CID has invalid content type for manifest {}", cid_text(.0))]
    NotAManifest(Cid),
    /// A block that a dataset (or an upload in progress) still uses cannot be deleted alone.
    #[error("Directly deleting a block that is part of a dataset is not allowed.")]
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
    #[error("Quota usage would exceed the limit. Used: {used}, reserved: {reserved}, limit: {max}, needed: {needed}")]
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
    #[error("Block {} is corrupted on disk: its content does not match its CID", cid_text(.0))]
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
    #[error("Network failure: {0}")]
    Network(String),
    /// No peer delivered what was asked within the bounded time or retries.
    #[error("The requested CID could not be retrieved from the network ({0})")]
    NotOnNetwork(String),
    /// A bounded resource is in use to its limit; try again later.
    #[error("Busy: {0}")]
    Busy(String),
    /// An actor is gone (the node is shutting down) or dropped a reply.
    #[error("The storage engine is unavailable (shutting down?)")]
    Unavailable,
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
