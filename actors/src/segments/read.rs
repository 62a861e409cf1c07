//! Reading blocks back, checked against their CIDs.
//!
//! Blocks that lie next to each other in a segment (a run, or consecutive runs with only a
//! header page between them) are read together: one aligned `pread` per span of up to 4 MiB,
//! bypassing the page cache for spans of 1 MiB or more where the file system allows it, into
//! one buffer that the blocks are then sliced from without a copy. Profiled during a 1 GiB download, reading block by
//! block through the page cache spent a third of the node's CPU copying out of the cache and
//! another tenth switching threads (one message per block); see benches/README.md.

use std::{fs::File, sync::Arc};

use bytes::{Bytes, BytesMut};
use cid::Cid;

use super::{align_start, align_up, segment_path, BlockBytes, ALIGN};
use crate::{
    error::{Error, Result},
    format::cid::{cid_text, verify},
    records::Location,
};

/// Longest span read at once.
const MAX_SPAN: u64 = 4 * 1024 * 1024; /* 4 MiB */
/// Smallest span read around the page cache. Smaller reads (a small dataset, a range, a block
/// for a peer) go through the cache: they are the ones read again soon, and the cache then
/// answers from memory (a 256 KiB download took 0.5 ms instead of 0.8).
const MIN_DIRECT: u64 = 1024 * 1024; /* 1 MiB */
/// Largest hole read through rather than split at: a run's header page, or a block that
/// compaction moved away from between two others.
const MAX_GAP: u64 = 64 * 1024; /* 64 KiB */
/// Read buffers of at least [`MIN_DIRECT`] kept for reuse, at most. A fresh 4 MiB buffer is
/// zeroed before the read fills it, and its pages fault in on first touch: during a 1 GiB
/// download that was 12 % of the node's CPU. A buffer whose blocks have all been sent (or
/// stored, or dropped) is taken again as it is, since the read overwrites what it holds.
/// Bounds the memory kept idle to 8 spans (32 MiB).
pub(super) const KEPT_BUFFERS: usize = 8;

fn align_down(n: u64) -> u64 {
    n - n % ALIGN as u64
}

/// The span starting with `blocks[i]`: its aligned start and end, and the index after its last
/// block. Blocks join a span while they are in the same segment, in increasing order, close
/// enough and the span stays under [`MAX_SPAN`].
fn span(blocks: &[(Cid, Location)], i: usize) -> (u64, u64, usize) {
    let first = blocks[i].1;
    let start = align_down(first.offset);
    let mut end = align_up(first.end());
    let mut data_end = first.end();
    let mut j = i + 1;
    while let Some((_, loc)) = blocks.get(j) {
        let next_end = align_up(loc.end());
        if loc.segment != first.segment
            || loc.offset < data_end
            || loc.offset > end + MAX_GAP
            || next_end - start > MAX_SPAN
        {
            break;
        }
        end = end.max(next_end);
        data_end = loc.end();
        j += 1;
    }
    (start, end, j)
}

/// Reads from `offset` until `buf` is full or the file ends; returns the bytes read. A direct
/// read returns a count that is not a multiple of [`ALIGN`] only at the end of the file.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = rustix::io::pread(file, &mut buf[done..], offset + done as u64)?;
        done += n;
        if n == 0 || !n.is_multiple_of(ALIGN) {
            break;
        }
    }
    Ok(done)
}

impl BlockBytes {
    /// The bytes of `cid` at `loc`, checked against the CID. `NotFound` when the segment or the
    /// range is gone (compaction may have moved the block since the caller looked it up: look
    /// it up again), `Corrupted` when the bytes no longer hash to the CID.
    pub(crate) fn read(&self, cid: &Cid, loc: Location) -> Result<Bytes> {
        self.read_many(&[(*cid, loc)])
            .pop()
            .unwrap_or(Err(Error::NotFound(*cid)))
    }

    /// [`read`](Self::read) for each block, one result per block in the order asked; neighbours
    /// in a segment are read together (see the module docs) whatever order they were asked in:
    /// a peer's want list names leaves in its own order, and read one by one they would each
    /// be a small read through the page cache.
    pub(crate) fn read_many(&self, blocks: &[(Cid, Location)]) -> Vec<Result<Bytes>> {
        let mut order: Vec<usize> = (0..blocks.len()).collect();
        order.sort_by_key(|&k| (blocks[k].1.segment, blocks[k].1.offset));
        let sorted: Vec<(Cid, Location)> = order.iter().map(|&k| blocks[k]).collect();
        let mut out: Vec<Option<Result<Bytes>>> = (0..blocks.len()).map(|_| None).collect();
        let mut i = 0;
        while i < sorted.len() {
            let (start, end, next) = span(&sorted, i);
            let segment = sorted[i].1.segment;
            let read = self.read_span(segment, start, end);
            for (k, (cid, loc)) in order[i..next].iter().zip(&sorted[i..next]) {
                out[*k] = Some(match &read {
                    Ok(buf) => checked(cid, *loc, buf, start),
                    Err(e) => {
                        tracing::debug!(cid = %cid_text(cid), segment, error = %e, "block not readable at its location");
                        Err(Error::NotFound(*cid))
                    }
                });
            }
            i = next;
        }
        out.into_iter()
            .zip(blocks)
            .map(|(r, (cid, _))| r.unwrap_or(Err(Error::NotFound(*cid))))
            .collect()
    }

    /// Bytes `start..end` of `segment` (fewer where the file ends first), from an aligned
    /// buffer.
    fn read_span(&self, segment: u32, start: u64, end: u64) -> Result<Bytes> {
        let len = (end - start) as usize;
        let mut buf = self.reused_buffer(len).unwrap_or_else(|| {
            let mut fresh = align_start(BytesMut::with_capacity(len + ALIGN));
            fresh.resize(len, 0);
            fresh
        });
        let direct = if end - start >= MIN_DIRECT {
            self.direct_reader(segment)
        } else {
            None
        };
        let n = match direct {
            Some(direct) => match read_full(&direct, &mut buf, start) {
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    tracing::debug!(segment, error = %e, "direct read refused: reading through the page cache");
                    self.inner
                        .direct_reads
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(segment, None);
                    let file = self.file(segment)?;
                    read_full(&file, &mut buf, start)?
                }
                other => other?,
            },
            None => {
                let file = self.file(segment)?;
                read_full(&file, &mut buf, start)?
            }
        };
        buf.truncate(n);
        let buf = buf.freeze();
        if len as u64 >= MIN_DIRECT {
            self.keep_buffer(&buf);
        }
        Ok(buf)
    }

    /// A kept buffer that nothing else holds any more, with room for `len` bytes from its
    /// (aligned) start, set to that length; its bytes are those of an earlier read.
    fn reused_buffer(&self, len: usize) -> Option<BytesMut> {
        let mut buf = self.inner.read_buffers.take(len)?;
        // Only bytes past the earlier read's length are zeroed.
        buf.resize(len, 0);
        Some(buf)
    }

    /// Keeps a clone of `buf` for [`Self::reused_buffer`], if there is room.
    fn keep_buffer(&self, buf: &Bytes) {
        self.inner.read_buffers.keep(buf);
    }

    /// The segment opened for reading around the page cache, once per segment; `None` where
    /// the file system refuses it.
    fn direct_reader(&self, segment: u32) -> Option<Arc<File>> {
        let known = self
            .inner
            .direct_reads
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&segment)
            .cloned();
        if let Some(known) = known {
            return known;
        }
        use std::os::unix::fs::OpenOptionsExt;
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(segment_path(&self.inner.dir, segment))
            .ok()
            .map(Arc::new);
        self.inner
            .direct_reads
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(segment, opened.clone());
        opened
    }

    /// The buffered handle of `segment` (opened on first use).
    pub(super) fn file(&self, segment: u32) -> Result<Arc<File>> {
        if let Some(f) = self
            .inner
            .files
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&segment)
        {
            return Ok(f.clone());
        }
        let file = Arc::new(File::open(segment_path(&self.inner.dir, segment))?);
        self.inner
            .files
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(segment, file.clone());
        Ok(file)
    }
}

/// The block at `loc` within `buf` (read from `start`), checked against its CID.
fn checked(cid: &Cid, loc: Location, buf: &Bytes, start: u64) -> Result<Bytes> {
    let (from, to) = ((loc.offset - start) as usize, (loc.end() - start) as usize);
    if to > buf.len() {
        tracing::debug!(cid = %cid_text(cid), segment = loc.segment, offset = loc.offset, "block past the end of its segment");
        return Err(Error::NotFound(*cid));
    }
    let bytes = buf.slice(from..to);
    // The bytes matched their CID when they were written (an upload hashed them, a fetch
    // verified them, compaction read them checked); the checksum taken then shows they are
    // still those bytes. Blocks written before format 3 have none and are hashed again.
    let intact = match loc.checksum {
        Some(sum) => crc32fast::hash(&bytes) == sum,
        None => verify(cid, &bytes),
    };
    if !intact {
        tracing::error!(cid = %cid_text(cid), segment = loc.segment, offset = loc.offset, "stored block does not match its checksum or CID");
        return Err(Error::Corrupted(*cid));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::format::cid::block_cid;

    fn block(i: u8, len: usize) -> (Cid, Bytes) {
        let b = Bytes::from(vec![i; len]);
        (block_cid(&b), b)
    }

    /// Blocks of two runs, a block of another segment, a block out of order and one whose
    /// bytes are gone: each gets its own answer, in order.
    #[test]
    fn many_blocks_are_read_in_spans_each_with_its_own_answer() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let bytes = BlockBytes::open(dir.path(), 400_000, HashMap::new())?;
        let first: Vec<(Cid, Bytes)> = (1u8..=3).map(|i| block(i, 65536)).collect();
        let second: Vec<(Cid, Bytes)> = vec![block(4, 1000), block(5, 65536)];
        let third: Vec<(Cid, Bytes)> = (6u8..=7).map(|i| block(i, 65536)).collect();
        let mut locs = bytes.write(&first)?;
        locs.extend(bytes.write(&second)?);
        locs.extend(bytes.write(&third)?); // rotates: segment 1
        assert_eq!(locs[6].segment, 1);
        let all: Vec<(Cid, Bytes)> = first.into_iter().chain(second).chain(third).collect();
        let gone = Location {
            segment: 0,
            offset: 10 << 20,
            len: 65536,
            checksum: None,
        };
        let mut asked: Vec<(Cid, Location)> =
            all.iter().zip(&locs).map(|((c, _), l)| (*c, *l)).collect();
        asked.insert(2, asked[0]); // out of order: starts a new span
        asked.push((all[0].0, gone));
        let got = bytes.read_many(&asked);
        assert_eq!(got.len(), asked.len());
        let mut expected: Vec<&Bytes> = all.iter().map(|(_, b)| b).collect();
        expected.insert(2, &all[0].1);
        for (got, want) in got.iter().zip(&expected) {
            assert_eq!(got.as_ref().ok(), Some(*want));
        }
        assert!(matches!(got.last(), Some(Err(Error::NotFound(_)))));
        Ok(())
    }

    /// A store in `dir` holding `n` 64 KiB blocks written as one run, and their locations.
    #[allow(clippy::type_complexity)]
    fn one_run(
        dir: &std::path::Path,
        n: u8,
    ) -> Result<(BlockBytes, Vec<(Cid, Bytes)>, Vec<(Cid, Location)>)> {
        let bytes = BlockBytes::open(dir, 1 << 30, HashMap::new())?;
        let blocks: Vec<(Cid, Bytes)> = (0..n).map(|i| block(i, 65536)).collect();
        let locs = bytes.write(&blocks)?;
        let asked = blocks
            .iter()
            .zip(&locs)
            .map(|((c, _), l)| (*c, *l))
            .collect();
        Ok((bytes, blocks, asked))
    }

    /// A span of 1 MiB or more is read around the page cache where the file system allows it;
    /// the blocks are the same.
    #[test]
    fn a_long_span_is_read_directly() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (bytes, blocks, asked) = one_run(dir.path(), 20)?;
        let (start, end, next) = span(&asked, 0);
        assert!(end - start >= MIN_DIRECT && next == asked.len());
        let got = bytes.read_many(&asked);
        for (got, (_, want)) in got.iter().zip(&blocks) {
            assert_eq!(got.as_ref().ok(), Some(want));
        }
        // (On a file system that refuses direct reads, tmpfs for one, the same span was read
        // through the page cache instead.)
        Ok(())
    }

    /// A large read buffer is used again once its blocks are dropped, and what an earlier read
    /// left in it never shows: a shorter span, then a span of other blocks, read right.
    #[test]
    fn read_buffers_are_reused_once_free_and_hold_no_stale_bytes() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (bytes, blocks, asked) = one_run(dir.path(), 40)?;
        let kept = || bytes.inner.read_buffers.len();
        let first = bytes.read_many(&asked[..32]);
        assert_eq!(kept(), 1, "a 2 MiB span's buffer is kept");
        // Still held by `first`: a second read gets a buffer of its own.
        let second = bytes.read_many(&asked[20..40]);
        assert_eq!(kept(), 2);
        for (got, (_, want)) in second.iter().zip(&blocks[20..40]) {
            assert_eq!(got.as_ref().ok(), Some(want));
        }
        drop((first, second));
        // Both free now: each read takes one of them, shorter spans than they held.
        for range in [0..18, 22..40, 2..38] {
            let got = bytes.read_many(&asked[range.clone()]);
            assert!(kept() <= 2, "buffers are reused, not piled up");
            for (got, (_, want)) in got.iter().zip(&blocks[range]) {
                assert_eq!(got.as_ref().ok(), Some(want));
            }
        }
        Ok(())
    }

    #[test]
    fn spans_stop_at_segments_gaps_and_their_size_limit() {
        let cid = block_cid(b"x");
        let at = |segment, offset| {
            (
                cid,
                Location {
                    segment,
                    offset,
                    len: 65536,
                    checksum: None,
                },
            )
        };
        let b = 65536;
        let blocks = [
            at(0, 4096),
            at(0, 4096 + b),
            at(0, 2 * 4096 + 2 * b), // after the next run's header page
            at(0, 2 * 4096 + 3 * b + MAX_GAP + 4096), // too far
            at(1, 4096),
        ];
        assert_eq!(span(&blocks, 0), (4096, 2 * 4096 + 3 * b, 3));
        assert_eq!(span(&blocks, 3).2, 4);
        let many: Vec<(Cid, Location)> = (0..100).map(|i| at(0, 4096 + i * b)).collect();
        let (start, end, next) = span(&many, 0);
        assert!(end - start <= MAX_SPAN);
        assert_eq!(next, 64, "4 MiB");
    }
}
