//! The block-storage actor: the only code that knows where block bytes live.
//!
//! Today the bytes live in a fjall keyspace with key-value separation (large values go to blob
//! files, keys and pointers stay in the LSM tree). Other actors never touch that keyspace: they
//! send [`WriteBlock`] and [`ReadBlock`] to this actor, and the metadata actor removes bytes only
//! through [`BlockBytes::remove_in`], inside its own atomic batch.
//!
//! Ordering rule that keeps metadata honest: bytes are written *before* the metadata that refers
//! to them is committed, and only the metadata actor deletes bytes, in its mailbox order.
//!
//! Runs on a `SyncArbiter` (fjall calls block), several threads, one instance per thread.

use actix::{Actor, Handler, Message, SyncContext};
use bytes::Bytes;
use cid::Cid;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, OwnedWriteBatch};

use crate::{error::Result, format::cid::verify, Error};

/// Keyspace holding block bytes.
const BLOCK_DATA: &str = "block_data";

/// Write one padded block under its CID. A block already present is not written again.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct WriteBlock {
    /// The block's CID (already computed by the hasher).
    pub cid: Cid,
    /// The padded block bytes.
    pub data: Bytes,
}

/// Read a block's bytes, verified against its CID.
#[derive(Message)]
#[rtype(result = "Result<Bytes>")]
pub struct ReadBlock {
    /// The block to read.
    pub cid: Cid,
}

impl std::fmt::Debug for WriteBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBlock")
            .field("cid", &self.cid)
            .field("len", &self.data.len())
            .finish()
    }
}

/// Where block bytes live. Cheap to clone (a keyspace handle).
#[derive(Clone)]
pub struct BlockBytes {
    data: Keyspace,
}

impl BlockBytes {
    /// Opens (or creates) the block keyspace in `db`.
    pub(crate) fn open(db: &Database) -> Result<Self> {
        let blobs = KvSeparationOptions::default()
            .compression(fjall::CompressionType::None) // hashed data does not compress
            .separation_threshold(1024)
            .file_target_size(256 * 1024 * 1024 /* 256 MiB */);
        let data = db.keyspace(BLOCK_DATA, || {
            KeyspaceCreateOptions::default()
                .with_kv_separation(Some(blobs.clone()))
                .max_memtable_size(64 * 1024 * 1024 /* 64 MiB */)
        })?;
        Ok(Self { data })
    }

    /// True when the bytes of `cid` are stored.
    pub fn contains(&self, cid: &Cid) -> Result<bool> {
        Ok(self.data.contains_key(cid.to_bytes())?)
    }

    /// Stores `data` under `cid` unless it is there already.
    pub fn write(&self, cid: &Cid, data: Bytes) -> Result<()> {
        let key = cid.to_bytes();
        if !self.data.contains_key(&key)? {
            self.data.insert(key, data)?;
        }
        Ok(())
    }

    /// The bytes of `cid`, checked against the CID. `NotFound` when absent, `Corrupted` when
    /// the bytes on disk no longer hash to the CID.
    pub fn read(&self, cid: &Cid) -> Result<Bytes> {
        let value = self
            .data
            .get(cid.to_bytes())?
            .ok_or(Error::NotFound(*cid))?;
        let bytes = Bytes::from(value);
        if !verify(cid, &bytes) {
            tracing::error!(cid = %crate::format::cid::cid_text(cid), "stored block does not match its CID");
            return Err(Error::Corrupted(*cid));
        }
        Ok(bytes)
    }

    /// Adds the removal of `cid`'s bytes to the metadata actor's batch, so bytes and metadata go
    /// together or not at all.
    pub(crate) fn remove_in(&self, batch: &mut OwnedWriteBatch, cid: &Cid) {
        batch.remove(&self.data, cid.to_bytes());
    }

    /// CIDs of all stored blocks, for the start-up consistency check.
    pub(crate) fn cids(&self) -> impl Iterator<Item = Result<Cid>> + '_ {
        self.data.iter().map(|guard| {
            let key = guard.key()?;
            Cid::try_from(key.as_ref())
                .map_err(|_| Error::Config("bad key in block keyspace".into()))
        })
    }
}

/// The block-storage actor; see the module docs.
pub struct BlockStore {
    /// Handle on the bytes; every thread of the pool has its own clone.
    bytes: BlockBytes,
}

impl BlockStore {
    /// An actor over `bytes` (one per pool thread).
    pub fn new(bytes: BlockBytes) -> Self {
        Self { bytes }
    }
}

impl Actor for BlockStore {
    type Context = SyncContext<Self>;
}

impl Handler<WriteBlock> for BlockStore {
    type Result = Result<()>;

    fn handle(&mut self, msg: WriteBlock, _: &mut Self::Context) -> Self::Result {
        self.bytes.write(&msg.cid, msg.data)
    }
}

impl Handler<ReadBlock> for BlockStore {
    type Result = Result<Bytes>;

    fn handle(&mut self, msg: ReadBlock, _: &mut Self::Context) -> Self::Result {
        self.bytes.read(&msg.cid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::cid::block_cid;

    #[test]
    fn write_read_and_detect_corruption() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let db = Database::builder(dir.path()).open()?;
        let bytes = BlockBytes::open(&db)?;
        let data = Bytes::from(vec![7u8; 65536]);
        let cid = block_cid(&data);
        assert!(!bytes.contains(&cid)?);
        bytes.write(&cid, data.clone())?;
        assert!(bytes.contains(&cid)?);
        assert_eq!(bytes.read(&cid)?, data);
        // Bytes that no longer match their CID are refused, never served.
        bytes.data.insert(cid.to_bytes(), vec![8u8; 65536])?;
        assert!(matches!(bytes.read(&cid), Err(Error::Corrupted(_))));
        let missing = block_cid(b"missing");
        assert!(matches!(bytes.read(&missing), Err(Error::NotFound(_))));
        Ok(())
    }
}
