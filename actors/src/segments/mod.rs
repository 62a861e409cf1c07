//! Where block bytes live: append-only segment files. Only the block-storage actor
//! ([`crate::block_store`]) holds a [`BlockBytes`]; nothing else opens, writes or deletes them.
//!
//! Each block is appended once to the active segment file (`blocks/seg-NNNNNNNN.dat`, rotated at
//! `segment_bytes`). Where it went ([`Location`]) is returned to the caller, who records it in
//! the block's metadata (the metadata actor's batch), so a block's bytes and its record are
//! found together. Block bytes reach the disk once, instead of going through fjall's journal,
//! memtable flushes and blob files (measured in `benches/README.md`).
//!
//! Blocks are written in runs, each block's bytes at an aligned offset, so that they can bypass
//! the page cache (`append.rs` gives the layout and the reasons). Segments written before that
//! hold records `magic "CXB1" ‖ cid length (u8) ‖ cid ‖ data length (u32 LE) ‖ data`, one after
//! the other; they are read the same way, through the location. The headers make a segment
//! self-describing for tools; the metadata is what the node trusts.
//!
//! Durability rules (issue 10):
//! - [`BlockBytes::sync`] fdatasyncs every segment written before the call. Syncs are
//!   serialized, so a caller never returns while another caller is still syncing its bytes.
//!   Metadata that makes bytes reachable from a dataset is committed only after that sync.
//! - A new segment file's directory entry is fsynced before any byte in it is acknowledged.
//! - A segment file is deleted only through [`BlockBytes::release`], which callers invoke once
//!   the metadata that stopped pointing into it is durable.
//! - A failed fsync poisons the store (the kernel may have dropped the dirty pages, so a later
//!   successful fsync would prove nothing): writes and syncs fail until a restart.
//!
//! Space: live bytes per segment are counted at append (under the writer lock, so a sealed
//! segment can never look empty while a block just written to it is being recorded) and at
//! release; a sealed segment whose count reaches zero is deleted, and a sealed segment less than
//! half live is compacted (`compaction.rs`).

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError, RwLock,
    },
};

mod append;
mod compaction;
mod read;

pub(crate) use append::{align_start, align_up, is_aligned, ALIGN};
pub use compaction::Move;

use crate::error::{Error, Result};
pub use crate::records::Location;

/// Bytes written between two background syncs of the active segment.
const SYNC_EVERY: u64 = 64 * 1024 * 1024; /* 64 MiB */

/// A range of a segment for the background flusher to sync and drop from the page cache.
struct Flush {
    file: Arc<File>,
    from: u64,
    to: u64,
}

struct Writer {
    segment: u32,
    file: Arc<File>,
    /// The same file opened for direct writes; `None` where the file system refuses them.
    direct: Option<File>,
    /// Where the next run goes (aligned).
    len: u64,
    written_since_sync: u64,
    /// End of the range last handed to the flusher.
    flushed_to: u64,
    /// Segments written since the last [`BlockBytes::sync`], the active one included.
    dirty: HashMap<u32, Arc<File>>,
    /// The aligned buffer the last run's unaligned blocks were copied into, kept for the next.
    spare_copies: Option<append::AlignedBuf>,
}

struct Inner {
    dir: PathBuf,
    /// Background writeback: segments sent here are fdatasynced by a helper thread.
    flusher: std::sync::mpsc::Sender<Flush>,
    segment_bytes: u64,
    writer: Mutex<Writer>,
    /// Held for the whole of a [`BlockBytes::sync`].
    sync_lock: Mutex<()>,
    /// Set when an fsync failed; see the module docs.
    poisoned: AtomicBool,
    /// Set once a direct write was refused: later segments are not opened for direct writes.
    /// (FUSE file systems get direct I/O like any other: LazyFS, the power-cut tests' one,
    /// handles it since its O_DIRECT fixes, so those tests run the path ext4 runs.)
    no_direct: AtomicBool,
    /// Open handles for reads, by segment number.
    files: RwLock<HashMap<u32, Arc<File>>>,
    /// Handles for reads around the page cache, by segment number (`None`: refused).
    direct_reads: RwLock<HashMap<u32, Option<Arc<File>>>>,
    /// Large read buffers handed out before, reused once nothing else holds them (see
    /// `read.rs`).
    read_buffers: crate::kept_buffers::KeptBuffers,
    /// Live data bytes per segment, to delete segments that become empty.
    live: Mutex<HashMap<u32, u64>>,
    /// Test hook run inside `sync` between taking the dirty set and syncing it.
    #[cfg(test)]
    sync_pause: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// Handle on the block bytes. Cheap to clone; safe to use from the block store's threads.
#[derive(Clone)]
pub(crate) struct BlockBytes {
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

/// The length of every segment file in `dir` (none when the directory does not exist yet), for
/// the start-up check: a location past the end of its file is a torn tail.
pub(crate) fn segment_lengths(dir: &Path) -> Result<HashMap<u32, u64>> {
    let mut lengths = HashMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(lengths),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        if let Some(n) = segment_number(&entry.file_name()) {
            // Another block-store thread may delete an emptied segment between the listing and
            // this look: it is simply gone (that race failed whole maintenance passes).
            match entry.metadata() {
                Ok(meta) => lengths.insert(n, meta.len()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
        }
    }
    Ok(lengths)
}

/// fsync of a directory, so a file created or removed in it stays so after a power loss.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the state half-updated in a way that matters
    // more than stopping would: keep serving.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BlockBytes {
    /// Opens the segment directory `dir`. `live` holds the live bytes per segment as the
    /// metadata records them; the caller has made that metadata durable, so sealed segments
    /// without live bytes are deleted here.
    pub(crate) fn open(dir: &Path, segment_bytes: u64, live: HashMap<u32, u64>) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let lengths = segment_lengths(dir)?;
        let segment = lengths.keys().copied().max().unwrap_or(0);
        let mut removed = false;
        for &n in lengths.keys() {
            if n != segment && live.get(&n).copied().unwrap_or(0) == 0 {
                std::fs::remove_file(segment_path(dir, n))?;
                tracing::info!(segment = n, "removed a segment without live blocks");
                removed = true;
            }
        }
        let file = Arc::new(open_segment(dir, segment)?);
        if removed || !lengths.contains_key(&segment) {
            sync_dir(dir)?;
        }
        // A segment written before runs existed may end anywhere; the next run starts aligned.
        let len = align_up(file.metadata()?.len());
        let files = HashMap::from([(segment, file.clone())]);
        let direct = open_direct(dir, segment);
        let no_direct = direct.is_none();
        let writer = Writer {
            segment,
            file,
            direct,
            len,
            written_since_sync: 0,
            flushed_to: len,
            dirty: HashMap::new(),
            spare_copies: None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                flusher: spawn_flusher()?,
                dir: dir.to_path_buf(),
                segment_bytes,
                writer: Mutex::new(writer),
                sync_lock: Mutex::new(()),
                poisoned: AtomicBool::new(false),
                no_direct: AtomicBool::new(no_direct),
                files: RwLock::new(files),
                direct_reads: RwLock::new(HashMap::new()),
                read_buffers: crate::kept_buffers::KeptBuffers::new(read::KEPT_BUFFERS),
                live: Mutex::new(live),
                #[cfg(test)]
                sync_pause: Mutex::new(None),
            }),
        })
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.inner.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// fdatasyncs every segment written before this call. Syncs are serialized: a caller whose
    /// bytes another caller is syncing right now waits for that sync to end instead of finding
    /// the dirty set empty and returning early. A failed fsync poisons the store.
    pub(crate) fn sync(&self) -> Result<()> {
        let _one_at_a_time = lock(&self.inner.sync_lock);
        self.check_poisoned()?;
        let dirty: Vec<(u32, Arc<File>)> = lock(&self.inner.writer).dirty.drain().collect();
        #[cfg(test)]
        {
            let pause = lock(&self.inner.sync_pause).take();
            if let Some(rx) = pause {
                let _ = rx.recv();
            }
        }
        for (segment, file) in dirty {
            if let Err(e) = file.sync_data() {
                self.inner.poisoned.store(true, Ordering::Release);
                tracing::error!(segment, error = %e, "segment sync failed: refusing writes until restart");
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Accounts for blocks no record points at any more (the caller made that durable first)
    /// and deletes sealed segments left without live bytes.
    pub(crate) fn release(&self, locations: &[Location]) {
        if locations.is_empty() {
            return;
        }
        let active = lock(&self.inner.writer).segment;
        let mut live = lock(&self.inner.live);
        for loc in locations {
            let Some(bytes) = live.get_mut(&loc.segment) else {
                continue;
            };
            *bytes = bytes.saturating_sub(u64::from(loc.len));
            if *bytes == 0 && loc.segment != active {
                live.remove(&loc.segment);
                self.remove_segment(loc.segment);
            }
        }
    }

    fn remove_segment(&self, segment: u32) {
        self.inner
            .files
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&segment);
        self.inner
            .direct_reads
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&segment);
        match std::fs::remove_file(segment_path(&self.inner.dir, segment)) {
            Ok(()) => tracing::info!(segment, "removed empty segment"),
            Err(e) => tracing::warn!(segment, error = %e, "could not remove empty segment"),
        }
    }

    /// Overwrites the stored bytes at `loc` (tests of corruption detection only).
    #[cfg(test)]
    pub(crate) fn corrupt_for_test(&self, loc: Location) -> Result<()> {
        std::os::unix::fs::FileExt::write_all_at(
            &*self.file(loc.segment)?,
            b"\xde\xad\xbe\xef",
            loc.offset,
        )?;
        Ok(())
    }
}

/// The segment opened for direct writes (bypassing the page cache), or `None` where the file
/// system does not support them.
fn open_direct(dir: &Path, segment: u32) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(segment_path(dir, segment))
    {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::info!(error = %e, "no direct writes: block writes go through the page cache");
            None
        }
    }
}

fn open_segment(dir: &Path, segment: u32) -> Result<File> {
    Ok(OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(segment_path(dir, segment))?)
}

/// The background writeback thread; it ends when the last [`BlockBytes`] (and so the sender)
/// is dropped.
fn spawn_flusher() -> Result<std::sync::mpsc::Sender<Flush>> {
    let (flusher, flush_rx) = std::sync::mpsc::channel::<Flush>();
    std::thread::Builder::new()
        .name("segment-flusher".into())
        .spawn(move || {
            for Flush { file, from, to } in flush_rx {
                if let Err(e) = file.sync_data() {
                    // Not an acknowledgement: the next `sync` tries again and reports it.
                    tracing::warn!(error = %e, "background segment sync failed");
                    continue;
                }
                // Synced pages are clean: let the kernel drop them rather than let bulk block
                // data crowd the page cache (a full cache made every later write pay for
                // reclaim: +49 % CPU with 10 GiB stored, see benches/README.md). Only the range
                // just written: advising the whole file each time would walk its cached pages
                // again and again.
                let len = std::num::NonZeroU64::new(to.saturating_sub(from));
                if len.is_some() {
                    let _ = rustix::fs::fadvise(&*file, from, len, rustix::fs::Advice::DontNeed);
                }
            }
        })?;
    Ok(flusher)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use cid::Cid;

    use super::*;
    use crate::format::cid::block_cid;

    fn block(i: u8) -> (Cid, Bytes) {
        let b = Bytes::from(vec![i; 65536]);
        (block_cid(&b), b)
    }

    #[test]
    fn write_read_rotate_and_detect_corruption() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let bytes = BlockBytes::open(dir.path(), 150_000, HashMap::new())?;
        let blocks: Vec<(Cid, Bytes)> = (0u8..5).map(block).collect();
        let locs = bytes.write(&blocks)?;
        bytes.sync()?;
        for ((cid, b), loc) in blocks.iter().zip(&locs) {
            assert_eq!(&bytes.read(cid, *loc)?, b);
        }
        assert_eq!(
            segment_lengths(dir.path())?.len(),
            3,
            "two blocks per segment"
        );
        bytes.corrupt_for_test(locs[1])?;
        assert!(matches!(
            bytes.read(&blocks[1].0, locs[1]),
            Err(Error::Corrupted(_))
        ));
        let beyond = Location {
            segment: 9,
            offset: 0,
            len: 10,
            checksum: None,
        };
        assert!(matches!(
            bytes.read(&blocks[0].0, beyond),
            Err(Error::NotFound(_))
        ));
        Ok(())
    }

    /// Issue 10, item 4: a block repeated inside one batch (a file of zeros) is written once.
    #[test]
    fn a_block_repeated_in_one_write_is_stored_once() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let bytes = BlockBytes::open(dir.path(), 1 << 30, HashMap::new())?;
        let zero = block(0);
        let locs = bytes.write(&[zero.clone(), zero.clone(), zero])?;
        assert!(locs.iter().all(|l| *l == locs[0]));
        assert_eq!(lock(&bytes.inner.live).get(&0).copied(), Some(65536));
        Ok(())
    }

    /// Issue 10, item 1: a sync must not return while bytes written before it are still being
    /// synced by another caller.
    #[test]
    fn sync_waits_for_a_concurrent_sync_of_its_bytes() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let bytes = BlockBytes::open(dir.path(), 1 << 30, HashMap::new())?;
        // Two uploads' bytes, both written before either syncs.
        bytes.write(&[block(1)])?;
        bytes.write(&[block(2)])?;
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
    fn released_sealed_segments_are_deleted_and_dead_ones_at_open() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let bytes = BlockBytes::open(dir.path(), 100_000, HashMap::new())?;
        let (a, b) = (block(1), block(2));
        let locs = bytes.write(&[a, b.clone()])?; // rotates: a in segment 0, b in 1
        bytes.release(&locs[..1]);
        assert!(!segment_path(dir.path(), 0).exists());
        assert_eq!(bytes.read(&b.0, locs[1])?, b.1);
        let c = block(3);
        let more = bytes.write(&[c])?; // segment 2
        drop(bytes);
        // At open, the records say segment 1 has nothing live any more: it goes.
        let live = HashMap::from([(2, u64::from(more[0].len))]);
        let _bytes = BlockBytes::open(dir.path(), 100_000, live)?;
        assert!(!segment_path(dir.path(), 1).exists());
        assert!(segment_path(dir.path(), 2).exists(), "the active one stays");
        Ok(())
    }
}
