//! Appending blocks to the active segment: one run per call, written with one `pwritev`,
//! bypassing the page cache (`O_DIRECT`) where the file system allows it.
//!
//! Why `O_DIRECT`: profiled during a 1 GiB upload, the kernel's copy of block bytes into the
//! page cache and its writeback took more CPU than SHA-256 did (benches/README.md). Written
//! directly, the bytes go from the upload's own buffers to the disk, and the cache is left to
//! metadata and reads. A direct write must start at an aligned file offset and come from
//! aligned memory in aligned lengths, hence the run layout:
//!
//! ```text
//! run    = header ‖ data ‖ data ‖ …               (starts at a multiple of ALIGN)
//! header = "CXR1" ‖ count (u32 LE) ‖ count × (cid length (u8) ‖ cid ‖ data length (u32 LE))
//!          ‖ zeros up to a multiple of ALIGN
//! data   = the block's bytes ‖ zeros up to a multiple of ALIGN
//! ```
//!
//! Blocks whose bytes are already aligned (the chunker allocates them so) are written from
//! where they are; others are copied into an aligned buffer first. Where `O_DIRECT` is refused
//! (tmpfs, some FUSE file systems) the same runs go through the page cache. Older segments may
//! end with records in the first layout (`CXB1`, see `segments/mod.rs`); runs after them start at
//! the next aligned offset.

use std::{collections::HashMap, fs::File, io::IoSlice, sync::Arc};

use bytes::{Bytes, BytesMut};
use cid::Cid;

use super::{lock, open_direct, sync_dir, BlockBytes, Flush, Writer, SYNC_EVERY};
use crate::{
    error::{Error, Result},
    records::Location,
};

/// Alignment of runs and of every block's bytes: the page size, and a multiple of the logical
/// block size of the disks direct I/O meets.
pub(crate) const ALIGN: usize = 4096;
const RUN_MAGIC: &[u8; 4] = b"CXR1";
/// Most records per run: one `pwritev` takes at most `IOV_MAX` (1024) buffers.
const MAX_RUN: usize = 512;

/// Largest copy buffer kept for the next run. Blocks from peers arrive as slices of their
/// message, never aligned, so every run of them is copied; a fresh zeroed buffer each time cost
/// the downloader a `memset` and a page fault per page (2 % of its samples in a 1 GiB fetch).
/// 8 MiB holds the runs a fetch writes (48–64 blocks); a larger run gets a buffer of its own.
const KEPT_COPY_BYTES: usize = 8 << 20;

/// `n` rounded up to a multiple of [`ALIGN`].
pub(crate) fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN as u64) * ALIGN as u64
}

/// True when `bytes` can go to a direct write as they are.
pub(crate) fn is_aligned(bytes: &[u8]) -> bool {
    (bytes.as_ptr() as usize).is_multiple_of(ALIGN) && bytes.len().is_multiple_of(ALIGN)
}

/// `buf` from its first aligned byte on (the bytes before it are split off and dropped), for
/// buffers that blocks are written from or read into directly.
pub(crate) fn align_start(mut buf: BytesMut) -> BytesMut {
    let pad = buf.as_ptr().align_offset(ALIGN);
    buf.resize(pad, 0);
    let _ = buf.split_to(pad);
    buf
}

/// Zeroed memory whose usable part starts at an [`ALIGN`]ed address: a `Vec` one alignment
/// longer than needed, used from its first aligned byte (no `unsafe`, no custom allocator).
pub(super) struct AlignedBuf {
    vec: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn zeroed(len: usize) -> Self {
        let vec = vec![0u8; len + ALIGN];
        let start = vec.as_ptr().align_offset(ALIGN);
        Self { vec, start, len }
    }

    /// `len` usable bytes from `spare` when it has room for them (its old bytes stay until
    /// overwritten), from a new zeroed buffer otherwise.
    fn reuse(spare: Option<Self>, len: usize) -> Self {
        match spare {
            Some(mut buf) if buf.vec.len() >= buf.start + len => {
                buf.len = len;
                buf
            }
            _ => Self::zeroed(len),
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.vec[self.start..self.start + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.vec[self.start..self.start + self.len]
    }
}

/// One block of a run: its CID bytes and data.
struct Record<'a> {
    key: Vec<u8>,
    data: &'a Bytes,
}

/// Bytes of a run's header for records with these keys.
fn header_len<'a>(keys: impl Iterator<Item = &'a [u8]>) -> u64 {
    align_up(8 + keys.map(|k| 1 + k.len() as u64 + 4).sum::<u64>())
}

impl BlockBytes {
    /// Appends each block and returns where it went, in order. A block given twice in one call
    /// is written once (both get the same location). Appends are serialized by the writer lock
    /// (one sequential stream per disk).
    pub(crate) fn write(&self, blocks: &[(Cid, Bytes)]) -> Result<Vec<Location>> {
        self.check_poisoned()?;
        let mut first: HashMap<&Cid, usize> = HashMap::new();
        let mut records = Vec::with_capacity(blocks.len());
        let slots: Vec<usize> = blocks
            .iter()
            .map(|(cid, data)| {
                *first.entry(cid).or_insert_with(|| {
                    records.push(Record {
                        key: cid.to_bytes(),
                        data,
                    });
                    records.len() - 1
                })
            })
            .collect();
        for r in &records {
            u32::try_from(r.data.len())
                .map_err(|_| Error::Config("block larger than 4 GiB".into()))?;
            u8::try_from(r.key.len())
                .map_err(|_| Error::Config("CID longer than 255 bytes".into()))?;
        }
        let mut locations = Vec::with_capacity(records.len());
        let mut w = lock(&self.inner.writer);
        let mut rest = &records[..];
        while !rest.is_empty() {
            let n = self.fitting(&w, rest);
            if n == 0 {
                self.rotate(&mut w)?;
                continue;
            }
            locations.extend(self.write_run(&mut w, &rest[..n])?);
            rest = &rest[n..];
        }
        Ok(slots.into_iter().map(|i| locations[i]).collect())
    }

    /// How many of `records` go into one run in the active segment: as many as fit, at least
    /// one in an empty segment (a block larger than a segment gets a segment of its own).
    fn fitting(&self, w: &Writer, records: &[Record<'_>]) -> usize {
        let room = self.inner.segment_bytes.saturating_sub(w.len);
        let (mut keys, mut data) = (0, 0);
        let mut n = 0;
        for r in records.iter().take(MAX_RUN) {
            keys += 1 + r.key.len() as u64 + 4;
            data += align_up(r.data.len() as u64);
            if align_up(8 + keys) + data > room && !(n == 0 && w.len == 0) {
                break;
            }
            n += 1;
        }
        n
    }

    /// Writes one run at the end of the active segment and counts its blocks live.
    fn write_run(&self, w: &mut Writer, records: &[Record<'_>]) -> Result<Vec<Location>> {
        let header_bytes = header_len(records.iter().map(|r| r.key.as_slice()));
        let mut header = AlignedBuf::zeroed(header_bytes as usize);
        let mut at = 8;
        let head = header.as_mut_slice();
        head[..4].copy_from_slice(RUN_MAGIC);
        head[4..8].copy_from_slice(&(records.len() as u32).to_le_bytes());
        for r in records {
            head[at] = r.key.len() as u8;
            head[at + 1..at + 1 + r.key.len()].copy_from_slice(&r.key);
            at += 1 + r.key.len();
            head[at..at + 4].copy_from_slice(&(r.data.len() as u32).to_le_bytes());
            at += 4;
        }
        // Blocks not aligned in memory or length are copied, all into one buffer.
        let unaligned: u64 = records
            .iter()
            .filter(|r| !is_aligned(r.data))
            .map(|r| align_up(r.data.len() as u64))
            .sum();
        let mut copies = AlignedBuf::reuse(w.spare_copies.take(), unaligned as usize);
        let mut copied = 0;
        let mut locations = Vec::with_capacity(records.len());
        let mut offset = w.len + header_bytes;
        for r in records {
            let len = r.data.len() as u32;
            locations.push(Location {
                segment: w.segment,
                offset,
                len,
                // What a local read checks instead of SHA-256 (format 3).
                checksum: Some(crc32fast::hash(r.data)),
            });
            offset += align_up(u64::from(len));
            if !is_aligned(r.data) {
                let padded = align_up(r.data.len() as u64) as usize;
                let slot = &mut copies.as_mut_slice()[copied..copied + padded];
                let (data, padding) = slot.split_at_mut(r.data.len());
                data.copy_from_slice(r.data);
                // A reused buffer holds an earlier run's bytes: the padding is written as zeros.
                padding.fill(0);
                copied += padded;
            }
        }
        let mut slices = Vec::with_capacity(records.len() + 1);
        slices.push(IoSlice::new(header.as_slice()));
        let mut copied = 0;
        for r in records {
            if is_aligned(r.data) {
                slices.push(IoSlice::new(r.data));
            } else {
                let padded = align_up(r.data.len() as u64) as usize;
                slices.push(IoSlice::new(&copies.as_slice()[copied..copied + padded]));
                copied += padded;
            }
        }
        let start = w.len;
        self.write_at(w, &slices, start)?;
        drop(slices);
        if copies.vec.len() <= KEPT_COPY_BYTES + ALIGN {
            w.spare_copies = Some(copies);
        }
        let run = offset - start;
        w.len = offset;
        w.written_since_sync += run;
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
        let mut live = lock(&self.inner.live);
        *live.entry(segment).or_default() +=
            records.iter().map(|r| r.data.len() as u64).sum::<u64>();
        Ok(locations)
    }

    /// Writes all of `slices` at `offset`: directly when the segment allows it, through the
    /// page cache otherwise (for good, once a direct write is refused).
    fn write_at(&self, w: &mut Writer, slices: &[IoSlice<'_>], offset: u64) -> Result<()> {
        if let Some(direct) = &w.direct {
            match write_all_vectored(direct, slices, offset) {
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    tracing::warn!(error = %e, "direct write refused: block writes go through the page cache");
                    w.direct = None;
                    self.inner
                        .no_direct
                        .store(true, std::sync::atomic::Ordering::Release);
                }
                other => return Ok(other?),
            }
        }
        Ok(write_all_vectored(&w.file, slices, offset)?)
    }

    /// Starts the next segment file.
    pub(super) fn rotate(&self, w: &mut Writer) -> Result<()> {
        let next = w.segment + 1;
        let file = Arc::new(super::open_segment(&self.inner.dir, next)?);
        // The new file's name must survive a power loss before any byte in it is acknowledged;
        // fdatasync of the file alone does not cover its directory entry.
        sync_dir(&self.inner.dir)?;
        self.inner
            .files
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(next, file.clone());
        let direct = if self
            .inner
            .no_direct
            .load(std::sync::atomic::Ordering::Acquire)
        {
            None
        } else {
            open_direct(&self.inner.dir, next)
        };
        *w = Writer {
            segment: next,
            file,
            direct,
            len: 0,
            written_since_sync: 0,
            flushed_to: 0,
            dirty: std::mem::take(&mut w.dirty),
            spare_copies: w.spare_copies.take(),
        };
        Ok(())
    }
}

/// `pwritev` until every slice is written (a write may stop short, as any write may).
fn write_all_vectored(file: &File, slices: &[IoSlice<'_>], mut offset: u64) -> std::io::Result<()> {
    let mut left = slices.to_vec();
    let mut slices = &mut left[..];
    while !slices.is_empty() {
        let n = rustix::io::pwritev(file, slices, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        offset += n as u64;
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::format::cid::block_cid;

    /// `n` bytes of `fill` at an aligned address, as the chunker hands them over.
    fn aligned_block(fill: u8, n: usize) -> Bytes {
        let mut buf = AlignedBuf::zeroed(n);
        buf.as_mut_slice().fill(fill);
        let start = buf.start;
        Bytes::from(buf.vec).slice(start..start + n)
    }

    fn with_cid(b: Bytes) -> (Cid, Bytes) {
        (block_cid(&b), b)
    }

    /// The run layout the module docs describe, read back from the file.
    #[test]
    fn a_run_is_a_header_then_aligned_blocks() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let bytes = BlockBytes::open(dir.path(), 1 << 30, HashMap::new())?;
        // Aligned, unaligned in memory, and a length that is not a multiple of ALIGN.
        let odd = Bytes::from(vec![2u8; 65537]).slice(1..);
        let blocks = vec![
            with_cid(aligned_block(1, 65536)),
            with_cid(odd),
            with_cid(Bytes::from(vec![3u8; 1000])),
        ];
        let locs = bytes.write(&blocks)?;
        bytes.sync()?;
        let file = std::fs::read(super::super::segment_path(dir.path(), 0))?;
        assert_eq!(&file[..4], RUN_MAGIC);
        assert_eq!(file[4..8], 3u32.to_le_bytes());
        let mut at = 8;
        for ((cid, data), loc) in blocks.iter().zip(&locs) {
            let key = cid.to_bytes();
            assert_eq!(usize::from(file[at]), key.len());
            assert_eq!(file[at + 1..at + 1 + key.len()], key[..]);
            at += 1 + key.len();
            assert_eq!(file[at..at + 4], (data.len() as u32).to_le_bytes());
            at += 4;
            assert_eq!(loc.offset % ALIGN as u64, 0, "data starts aligned");
            assert_eq!(&file[loc.offset as usize..loc.end() as usize], &data[..]);
            assert_eq!(bytes.read(cid, *loc)?, data);
        }
        assert_eq!(locs[0].offset, ALIGN as u64, "one header page");
        assert_eq!(
            file.len() as u64,
            align_up(locs[2].end()),
            "the run ends aligned"
        );

        // The next run reuses the copy buffer the unaligned blocks above filled with 2s and 3s:
        // a short block's padding must be written as zeros, not as their leftovers.
        let short = Bytes::from(vec![9u8; 4001]).slice(1..);
        let again = vec![with_cid(short)];
        let loc = bytes.write(&again)?[0];
        bytes.sync()?;
        let file = std::fs::read(super::super::segment_path(dir.path(), 0))?;
        assert_eq!(bytes.read(&again[0].0, loc)?, again[0].1);
        let padding = &file[loc.end() as usize..align_up(loc.end()) as usize];
        assert_eq!(padding.len(), ALIGN - 4000);
        assert!(padding.iter().all(|&b| b == 0), "padding is zeroed");
        Ok(())
    }

    /// Where direct writes are refused, the same runs go through the page cache.
    #[test]
    fn without_direct_writes_runs_go_through_the_page_cache() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let bytes = BlockBytes::open(dir.path(), 150_000, HashMap::new())?;
        {
            let mut w = lock(&bytes.inner.writer);
            w.direct = None;
            bytes
                .inner
                .no_direct
                .store(true, std::sync::atomic::Ordering::Release);
        }
        let blocks: Vec<(Cid, Bytes)> = (1u8..=3)
            .map(|i| with_cid(aligned_block(i, 65536)))
            .collect();
        let locs = bytes.write(&blocks)?; // rotates after two blocks
        bytes.sync()?;
        assert!(
            lock(&bytes.inner.writer).direct.is_none(),
            "not reopened direct"
        );
        assert_eq!(locs[2].segment, 1);
        for ((cid, data), loc) in blocks.iter().zip(&locs) {
            assert_eq!(&bytes.read(cid, *loc)?, data);
        }
        Ok(())
    }

    /// A segment from before runs existed ends anywhere: the first run after it starts at the
    /// next aligned offset, and the old records stay readable.
    #[test]
    fn runs_continue_an_old_segment_at_an_aligned_offset() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let old = with_cid(Bytes::from(vec![7u8; 65536]));
        let key = old.0.to_bytes();
        let mut record = b"CXB1".to_vec();
        record.push(key.len() as u8);
        record.extend_from_slice(&key);
        record.extend_from_slice(&65536u32.to_le_bytes());
        let old_loc = Location {
            segment: 0,
            offset: record.len() as u64,
            len: 65536,
            checksum: None,
        };
        record.extend_from_slice(&old.1);
        std::fs::write(super::super::segment_path(dir.path(), 0), &record)?;
        let live = HashMap::from([(0, 65536)]);
        let bytes = BlockBytes::open(dir.path(), 1 << 30, live)?;
        let new = with_cid(aligned_block(8, 65536));
        let loc = bytes.write(std::slice::from_ref(&new))?[0];
        bytes.sync()?;
        assert_eq!(loc.offset, align_up(record.len() as u64) + ALIGN as u64);
        assert_eq!(bytes.read(&new.0, loc)?, new.1);
        assert_eq!(bytes.read(&old.0, old_loc)?, old.1);
        Ok(())
    }
}
