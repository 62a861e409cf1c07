//! Buffers of large frames (deliveries), taken again once nothing holds their blocks.
//!
//! A delivered block is a slice of the frame it came in, so a frame's buffer lives until its
//! last block is stored. A new 3 MiB buffer for each delivery was zeroed as the body arrived
//! and faulted its pages in on first touch: 4 % of a downloader's samples in a 1 GiB fetch,
//! after SHA-256 and ChaCha20 the largest single cost of receiving. A kept buffer whose blocks
//! are all gone is read into as it is: the body's bytes overwrite the earlier frame's, and only
//! the body's length is ever exposed.
//!
//! Kept buffers are idle memory outside the read budget (which counts frames being read or
//! queued), so they are few and shared by every reader of the node: at most
//! [`KEPT_FRAME_BUFFERS`] of at most the frame limit each. The keeping itself is
//! [`KeptBuffers`], which the segments' reads use too; this adds which frames are worth it.

use bytes::{Bytes, BytesMut};

use crate::kept_buffers::KeptBuffers;

/// Frame buffers kept for reuse, at most (with 4 MiB frames, 32 MiB of idle memory).
const KEPT_FRAME_BUFFERS: usize = 8;
/// Smallest frame whose buffer is kept: block deliveries; want lists and presences are small.
const MIN_KEPT: usize = 1 << 20;

/// The node's kept frame buffers; see the module docs.
pub(crate) struct FrameBuffers {
    kept: KeptBuffers,
}

impl Default for FrameBuffers {
    fn default() -> Self {
        Self {
            kept: KeptBuffers::new(KEPT_FRAME_BUFFERS),
        }
    }
}

impl FrameBuffers {
    /// A buffer with room for a body of `len` bytes and at most `len` bytes in it: a kept
    /// frame's that nothing else holds any more (its earlier bytes, to be overwritten), else a
    /// new, empty one. A new buffer for a large frame gets room for any frame (`max_frame`),
    /// so that once kept it serves the next whatever its length; its pages cost nothing until
    /// the body is written into them.
    pub(crate) fn buffer(&self, len: usize, max_frame: usize) -> BytesMut {
        if len < MIN_KEPT {
            return BytesMut::with_capacity(len);
        }
        self.kept
            .take(len)
            .unwrap_or_else(|| BytesMut::with_capacity(max_frame.max(len)))
    }

    /// Keeps a handle on `frame` for [`Self::buffer`], if it is large and there is room.
    pub(crate) fn keep(&self, frame: &Bytes) {
        if frame.len() >= MIN_KEPT {
            self.kept.keep(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 4 << 20;

    /// A frame of `len` bytes of `fill` read into a buffer from `frames`, as a reader does.
    fn frame(frames: &FrameBuffers, len: usize, fill: u8) -> Bytes {
        let mut buf = frames.buffer(len, MAX);
        assert!(buf.len() <= len && buf.capacity() >= len);
        buf.resize(len, 0);
        buf.fill(fill);
        buf.freeze()
    }

    #[test]
    fn a_frame_is_taken_again_only_once_nothing_holds_its_blocks() {
        let frames = FrameBuffers::default();
        let first = frame(&frames, 3 << 20, 7);
        let at = first.as_ptr();
        frames.keep(&first);
        let block = first.slice(100..200);
        drop(first);
        let other = frame(&frames, 2 << 20, 8);
        assert_ne!(other.as_ptr(), at, "a block still holds the first");
        drop(block);
        // A longer frame than the first fits: new buffers have room for any frame.
        let again = frames.buffer(MAX, MAX);
        assert_eq!(again.as_ptr(), at, "the same memory");
        assert_eq!(
            again.len(),
            3 << 20,
            "the first frame's bytes, to be overwritten"
        );
        frames.keep(&again.freeze());
        let shorter = frames.buffer(1 << 20, MAX);
        assert_eq!(shorter.as_ptr(), at);
        assert_eq!(shorter.len(), 1 << 20, "never more than the body's length");
    }

    #[test]
    fn small_frames_are_not_kept_and_the_pool_is_bounded() {
        let frames = FrameBuffers::default();
        let small = frame(&frames, 1000, 1);
        assert!(small.len() == 1000);
        frames.keep(&small);
        drop(small);
        let big: Vec<Bytes> = (0..KEPT_FRAME_BUFFERS + 2)
            .map(|i| frame(&frames, MIN_KEPT, i as u8))
            .collect();
        let starts: Vec<_> = big.iter().map(|b| b.as_ptr()).collect();
        for b in &big {
            frames.keep(b);
        }
        // The frames beyond the bound stay alive, so that no new buffer below can be given
        // their memory again by the allocator and pass for a reused one.
        let (kept, beyond) = big.split_at(KEPT_FRAME_BUFFERS);
        let (kept, beyond) = (kept.to_vec(), beyond.to_vec());
        drop(big);
        drop(kept);
        let taken: Vec<BytesMut> = (0..KEPT_FRAME_BUFFERS + 2)
            .map(|_| frames.buffer(MIN_KEPT, MAX))
            .collect();
        let reused = taken
            .iter()
            .filter(|b| starts.contains(&b.as_ptr()))
            .count();
        assert_eq!(reused, KEPT_FRAME_BUFFERS);
        drop(beyond);
    }
}
