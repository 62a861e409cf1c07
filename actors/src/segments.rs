//! Where block bytes live: append-only segment files, indexed in fjall.
//!
//! Each block is appended once to the active segment file (`blocks/seg-NNNNNNNN.dat`, rotated at
//! `segment_bytes`) and its location is recorded in the `block_index` keyspace. Block bytes
//! therefore reach the disk once, instead of going through fjall's journal, memtable flushes
//! and blob files (measured in `benches/README.md`).
//!
//! Record on disk: `magic "CXB1" ‖ cid length (u8) ‖ cid ‖ data length (u32 LE) ‖ data`. The
//! header makes a segment self-describing for tools; the index is what the node trusts.
//!
//! Durability: writes go to the page cache; [`BlockBytes::sync`] fdatasyncs every segment written
//! since the last sync. The upload actor syncs before it asks the metadata actor to commit, so
//! a committed dataset never points at bytes that were not durable. Segments are also synced
//! every `SYNC_EVERY` bytes so the final sync of a large upload is short.
//!
//! Space: a segment whose blocks are all deleted is removed once it is no longer the active
//! one; a sealed segment less than half live is compacted (`compaction.rs`).

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock},
};

use bincode::{Decode, Encode};
use bytes::{Bytes, BytesMut};
use cid::Cid;
use fjall::{Database, Keyspace, OwnedWriteBatch};

mod compaction;

pub use compaction::Move;

use crate::{
    error::{Error, Result},
    format::cid::{cid_text, verify},
    records,
};

/// Keyspace of `block CID → Location`.
const BLOCK_INDEX: &str = "block_index";
const MAGIC: &[u8; 4] = b"CXB1";
/// Bytes written between two background syncs of the active segment.
const SYNC_EVERY: u64 = 64 * 1024 * 1024; /* 64 MiB */

/// Where one block's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Location {
    /// Segment file number.
    pub segment: u32,
    /// Offset of the block's data (after the record header).
    pub offset: u64,
    /// Length of the data.
    pub len: u32,
}

/// A range of a segment for the background flusher to sync and drop from the page cache.
struct Flush {
    file: Arc<File>,
    from: u64,
    to: u64,
}

struct Writer {
    segment: u32,
    file: Arc<File>,
    len: u64,
    written_since_sync: u64,
    /// End of the range last handed to the flusher.
    flushed_to: u64,
    /// Segments written since the last [`BlockBytes::sync`], the active one included.
    dirty: HashMap<u32, Arc<File>>,
}

struct Inner {
    db: Database,
    dir: PathBuf,
    /// Background writeback: segments sent here are fdatasynced by a helper thread.
    flusher: std::sync::mpsc::Sender<Flush>,
    index: Keyspace,
    segment_bytes: u64,
    writer: Mutex<Writer>,
    /// Open handles for reads, by segment number.
    files: RwLock<HashMap<u32, Arc<File>>>,
    /// Live data bytes per segment, to delete segments that become empty.
    live: Mutex<HashMap<u32, u64>>,
    /// Held for the whole of a [`BlockBytes::sync`].
    sync_lock: Mutex<()>,
    /// Test hook run inside `sync` between taking the dirty set and syncing it.
    #[cfg(test)]
    sync_pause: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// Handle on the block bytes. Cheap to clone; safe to use from several threads.
#[derive(Clone)]
pub struct BlockBytes {
    inner: Arc<Inner>,
}

fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("seg-{segment:08}.dat"))
}

/// The number of a segment file name (`seg-NNNNNNNN.dat`).
fn segment_number(name: &std::ffi::OsStr) -> Option<u32> {
    name.to_str()?
        .strip_prefix("seg-")?
        .strip_suffix(".dat")?
        .parse()
        .ok()
}

fn open_segment(dir: &Path, segment: u32) -> Result<File> {
    Ok(OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(segment_path(dir, segment))?)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the state half-updated in a way that matters
    // more than stopping would: keep serving.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BlockBytes {
    /// Opens the segment directory `dir` and the index keyspace in `db`. Index entries that
    /// point past the end of their segment (a torn tail after a power loss) are dropped; the
    /// start-up repair then sees those blocks as missing.
    pub(crate) fn open(db: &Database, dir: &Path, segment_bytes: u64) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let index = db.keyspace(BLOCK_INDEX, records::keyspace_options)?;
        let mut lengths = HashMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(n) = segment_number(&name) else {
                continue;
            };
            lengths.insert(n, entry.metadata()?.len());
        }
        let mut live: HashMap<u32, u64> = HashMap::new();
        let mut torn = Vec::new();
        for guard in index.iter() {
            let (key, value) = guard.into_inner()?;
            let loc: Location = records::decode(&value)?;
            match lengths.get(&loc.segment) {
                Some(&file_len) if loc.offset + u64::from(loc.len) <= file_len => {
                    *live.entry(loc.segment).or_default() += u64::from(loc.len);
                }
                _ => torn.push(key),
            }
        }
        for key in &torn {
            index.remove(key.clone())?;
        }
        if !torn.is_empty() {
            tracing::warn!(
                count = torn.len(),
                "dropped index entries past the end of their segment"
            );
        }
        let segment = lengths.keys().copied().max().unwrap_or(0);
        let file = Arc::new(open_segment(dir, segment)?);
        let len = file.metadata()?.len();
        let files = HashMap::from([(segment, file.clone())]);
        let writer = Writer {
            segment,
            file,
            len,
            written_since_sync: 0,
            flushed_to: len,
            dirty: HashMap::new(),
        };
        let (flusher, flush_rx) = std::sync::mpsc::channel::<Flush>();
        std::thread::Builder::new()
            .name("segment-flusher".into())
            .spawn(move || {
                // Ends when the last BlockBytes handle (and so the sender) is dropped.
                for Flush { file, from, to } in flush_rx {
                    if let Err(e) = file.sync_data() {
                        tracing::warn!(error = %e, "background segment sync failed");
                        continue;
                    }
                    // Synced pages are clean: let the kernel drop them rather than let bulk
                    // block data crowd the page cache (a full cache made every later write
                    // pay for reclaim: +49 % CPU with 10 GiB stored, see benches/README.md).
                    // Only the range just written: advising the whole file each time would walk
                    // its cached pages again and again.
                    let len = std::num::NonZeroU64::new(to.saturating_sub(from));
                    if len.is_some() {
                        let _ =
                            rustix::fs::fadvise(&*file, from, len, rustix::fs::Advice::DontNeed);
                    }
                }
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                db: db.clone(),
                flusher,
                dir: dir.to_path_buf(),
                index,
                segment_bytes,
                writer: Mutex::new(writer),
                files: RwLock::new(files),
                live: Mutex::new(live),
                sync_lock: Mutex::new(()),
                #[cfg(test)]
                sync_pause: Mutex::new(None),
            }),
        })
    }

    /// True when the bytes of `cid` are stored.
    pub fn contains(&self, cid: &Cid) -> Result<bool> {
        Ok(self.inner.index.contains_key(cid.to_bytes())?)
    }

    fn location(&self, key: &[u8]) -> Result<Option<Location>> {
        match self.inner.index.get(key)? {
            Some(v) => Ok(Some(records::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Appends each `(cid, data)` not stored already, then records the locations in one index
    /// batch. Appends are serialized by the writer lock (one sequential stream per disk).
    pub fn write(&self, blocks: &[(Cid, Bytes)]) -> Result<()> {
        let mut batch = self.inner.db.batch();
        let mut added: Vec<Location> = Vec::with_capacity(blocks.len());
        {
            let mut w = lock(&self.inner.writer);
            for (cid, data) in blocks {
                let key = cid.to_bytes();
                if self.inner.index.contains_key(&key)? {
                    continue;
                }
                let loc = self.append(&mut w, &key, data)?;
                batch.insert(&self.inner.index, key, records::encode(&loc)?);
                added.push(loc);
            }
        }
        if added.is_empty() {
            return Ok(());
        }
        batch.commit()?;
        let mut live = lock(&self.inner.live);
        for loc in added {
            *live.entry(loc.segment).or_default() += u64::from(loc.len);
        }
        Ok(())
    }

    /// Appends one record to the active segment (rotating when full); the caller holds the
    /// writer lock and records the returned location.
    fn append(&self, w: &mut Writer, key: &[u8], data: &[u8]) -> Result<Location> {
        let len = u32::try_from(data.len())
            .map_err(|_| Error::Config("block larger than 4 GiB".into()))?;
        let mut header = Vec::with_capacity(4 + 1 + key.len() + 4);
        header.extend_from_slice(MAGIC);
        header.push(key.len() as u8); // a CID is far shorter than 256 bytes
        header.extend_from_slice(key);
        header.extend_from_slice(&len.to_le_bytes());
        let record = header.len() as u64 + u64::from(len);
        if w.len > 0 && w.len + record > self.inner.segment_bytes {
            self.rotate(w)?;
        }
        let start = w.len;
        w.file.write_all_at(&header, start)?;
        w.file.write_all_at(data, start + header.len() as u64)?;
        w.len += record;
        w.written_since_sync += record;
        if w.written_since_sync >= SYNC_EVERY {
            // Start writeback now, off this thread, so that the commit's sync is short.
            w.written_since_sync = 0;
            let flush = Flush {
                file: w.file.clone(),
                from: w.flushed_to,
                to: w.len,
            };
            w.flushed_to = w.len;
            let _ = self.inner.flusher.send(flush);
        }
        let (segment, file) = (w.segment, w.file.clone());
        w.dirty.insert(segment, file);
        Ok(Location {
            segment,
            offset: start + header.len() as u64,
            len,
        })
    }

    fn rotate(&self, w: &mut Writer) -> Result<()> {
        let next = w.segment + 1;
        let file = Arc::new(open_segment(&self.inner.dir, next)?);
        self.inner
            .files
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(next, file.clone());
        *w = Writer {
            segment: next,
            file,
            len: 0,
            written_since_sync: 0,
            flushed_to: 0,
            dirty: std::mem::take(&mut w.dirty),
        };
        Ok(())
    }

    /// fdatasyncs every segment written before this call. Syncs are serialized: a caller whose
    /// bytes another caller is syncing right now waits for that sync to end instead of finding
    /// the dirty set empty and returning early. Files whose sync failed go back into the set.
    pub fn sync(&self) -> Result<()> {
        let _one_at_a_time = lock(&self.inner.sync_lock);
        let dirty: Vec<(u32, Arc<File>)> = lock(&self.inner.writer).dirty.drain().collect();
        #[cfg(test)]
        {
            let pause = lock(&self.inner.sync_pause).take();
            if let Some(rx) = pause {
                let _ = rx.recv();
            }
        }
        for (i, (_, file)) in dirty.iter().enumerate() {
            if let Err(e) = file.sync_data() {
                let mut w = lock(&self.inner.writer);
                w.dirty.extend(dirty.into_iter().skip(i));
                return Err(e.into());
            }
        }
        Ok(())
    }

    fn file(&self, segment: u32) -> Result<Arc<File>> {
        if let Some(f) = self
            .inner
            .files
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&segment)
        {
            return Ok(f.clone());
        }
        let file = Arc::new(File::open(segment_path(&self.inner.dir, segment))?);
        self.inner
            .files
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(segment, file.clone());
        Ok(file)
    }

    /// The bytes of `cid`, checked against the CID: `NotFound` when absent, `Corrupted` when the
    /// bytes on disk no longer hash to the CID.
    pub fn read(&self, cid: &Cid) -> Result<Bytes> {
        let key = cid.to_bytes();
        let loc = self.location(&key)?.ok_or(Error::NotFound(*cid))?;
        let mut buf = BytesMut::zeroed(loc.len as usize);
        let read = self
            .file(loc.segment)
            .and_then(|f| Ok(f.read_exact_at(&mut buf, loc.offset)?));
        if let Err(e) = read {
            // Compaction may have moved the block and removed its old segment since the lookup.
            match self.location(&key)? {
                Some(moved) if moved != loc => return self.read(cid),
                _ => {
                    tracing::error!(cid = %cid_text(cid), error = %e, "block unreadable");
                    return Err(Error::Corrupted(*cid));
                }
            }
        }
        let bytes = buf.freeze();
        if !verify(cid, &bytes) {
            tracing::error!(cid = %cid_text(cid), segment = loc.segment, offset = loc.offset, "stored block does not match its CID");
            return Err(Error::Corrupted(*cid));
        }
        Ok(bytes)
    }

    /// Adds the removal of `cid`'s index entry to the metadata actor's batch, so bytes and
    /// metadata go together. Returns the location, to pass to [`BlockBytes::released`] once
    /// the batch is committed.
    pub(crate) fn remove_in(
        &self,
        batch: &mut OwnedWriteBatch,
        cid: &Cid,
    ) -> Result<Option<Location>> {
        let key = cid.to_bytes();
        let loc = self.location(&key)?;
        batch.remove(&self.inner.index, key);
        Ok(loc)
    }

    /// Accounts for blocks whose removal was committed; deletes sealed segments left empty.
    pub(crate) fn released(&self, locations: &[Location]) {
        let active = lock(&self.inner.writer).segment;
        let mut live = lock(&self.inner.live);
        for loc in locations {
            let Some(bytes) = live.get_mut(&loc.segment) else {
                continue;
            };
            *bytes = bytes.saturating_sub(u64::from(loc.len));
            if *bytes == 0 && loc.segment != active {
                live.remove(&loc.segment);
                self.inner
                    .files
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&loc.segment);
                match std::fs::remove_file(segment_path(&self.inner.dir, loc.segment)) {
                    Ok(()) => tracing::info!(segment = loc.segment, "removed empty segment"),
                    Err(e) => {
                        tracing::warn!(segment = loc.segment, error = %e, "could not remove empty segment")
                    }
                }
            }
        }
    }

    /// CIDs of all stored blocks, for the start-up check.
    pub(crate) fn cids(&self) -> impl Iterator<Item = Result<Cid>> + '_ {
        self.inner.index.iter().map(|guard| {
            let key = guard.key()?;
            Cid::try_from(key.as_ref())
                .map_err(|_| Error::Config("bad key in the block index".into()))
        })
    }

    /// Overwrites the stored bytes of `cid` in place (tests of corruption detection only).
    #[cfg(test)]
    fn corrupt_for_test(&self, cid: &Cid) -> Result<()> {
        let loc = self
            .location(&cid.to_bytes())?
            .ok_or(Error::NotFound(*cid))?;
        self.file(loc.segment)?
            .write_all_at(b"\xde\xad\xbe\xef", loc.offset)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::cid::block_cid;

    fn open(dir: &Path, segment_bytes: u64) -> Result<(Database, BlockBytes)> {
        let db = Database::builder(dir.join("db")).open()?;
        let bytes = BlockBytes::open(&db, &dir.join("blocks"), segment_bytes)?;
        Ok((db, bytes))
    }

    #[test]
    fn write_read_rotate_and_detect_corruption() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (_db, bytes) = open(dir.path(), 150_000)?;
        let blocks: Vec<Bytes> = (0u8..5).map(|i| Bytes::from(vec![i; 65536])).collect();
        for b in &blocks {
            bytes.write(&[(block_cid(b), b.clone())])?;
            bytes.write(&[(block_cid(b), b.clone())])?; // a second write of the same block is a no-op
        }
        bytes.sync()?;
        for b in &blocks {
            assert_eq!(&bytes.read(&block_cid(b))?, b);
        }
        let segments = std::fs::read_dir(dir.path().join("blocks"))?.count();
        assert_eq!(segments, 3, "two blocks per 150 kB segment");
        let cid = block_cid(&blocks[1]);
        bytes.corrupt_for_test(&cid)?;
        assert!(matches!(bytes.read(&cid), Err(Error::Corrupted(_))));
        assert!(matches!(
            bytes.read(&block_cid(b"absent")),
            Err(Error::NotFound(_))
        ));
        Ok(())
    }

    /// Issue 10, item 1: a sync must not return while bytes written before it are still being
    /// synced by another caller.
    #[test]
    fn sync_waits_for_a_concurrent_sync_of_its_bytes() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (_db, bytes) = open(dir.path(), 1 << 30)?;
        let a = Bytes::from(vec![1u8; 65536]);
        let b = Bytes::from(vec![2u8; 65536]);
        // Two uploads' bytes, both written before either syncs.
        bytes.write(&[(block_cid(&a), a)])?;
        bytes.write(&[(block_cid(&b), b)])?;
        let (release, pause) = std::sync::mpsc::channel();
        *lock(&bytes.inner.sync_pause) = Some(pause);
        let first = {
            let bytes = bytes.clone();
            std::thread::spawn(move || bytes.sync())
        };
        // The first sync has taken the dirty set and is "in fdatasync" (paused).
        while lock(&bytes.inner.sync_pause).is_some() {
            std::thread::yield_now();
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let second = {
            let bytes = bytes.clone();
            std::thread::spawn(move || {
                let r = bytes.sync();
                let _ = done_tx.send(());
                r
            })
        };
        let returned_early = done_rx
            .recv_timeout(std::time::Duration::from_millis(300))
            .is_ok();
        let _ = release.send(());
        first.join().expect("first sync")?;
        second.join().expect("second sync")?;
        assert!(
            !returned_early,
            "the second sync returned while the first was still syncing its bytes"
        );
        Ok(())
    }

    #[test]
    fn torn_tail_is_cut_at_open() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let data = Bytes::from(vec![9u8; 65536]);
        let cid = block_cid(&data);
        {
            let (db, bytes) = open(dir.path(), 1 << 30)?;
            bytes.write(&[(cid, data.clone())])?;
            db.persist(fjall::PersistMode::SyncAll)?;
        }
        // The index survived but the segment lost its tail (power loss before the data sync).
        let seg = segment_path(&dir.path().join("blocks"), 0);
        OpenOptions::new().write(true).open(&seg)?.set_len(1000)?;
        let (_db, bytes) = open(dir.path(), 1 << 30)?;
        assert!(!bytes.contains(&cid)?);
        Ok(())
    }

    #[test]
    fn empty_sealed_segments_are_deleted() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (db, bytes) = open(dir.path(), 100_000)?;
        let a = Bytes::from(vec![1u8; 65536]);
        let b = Bytes::from(vec![2u8; 65536]);
        bytes.write(&[(block_cid(&a), a.clone()), (block_cid(&b), b.clone())])?; // rotates
        let mut batch = db.batch();
        let loc = bytes
            .remove_in(&mut batch, &block_cid(&a))?
            .into_iter()
            .collect::<Vec<_>>();
        batch.commit()?;
        bytes.released(&loc);
        assert!(!segment_path(&dir.path().join("blocks"), 0).exists());
        assert_eq!(bytes.read(&block_cid(&b))?, b);
        Ok(())
    }
}
