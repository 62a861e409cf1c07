//! Large buffers kept for reuse once nothing holds the bytes sliced from them.
//!
//! Blocks travel as slices of the buffer they were read into (a span read from a segment, a
//! frame from a peer), so a buffer lives until its last block is sent or stored. A new large
//! buffer costs a zero fill and a page fault per page on first touch; a kept one whose slices
//! are all gone is written into as it is. Its earlier bytes stay until overwritten, so a user
//! exposes only what it wrote. The segments' reads and the network's frames each keep their
//! own, at most a fixed number of buffers, and decide which buffers are worth keeping.

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};

/// Handles on buffers handed out before; see the module docs.
pub(crate) struct KeptBuffers {
    kept: Mutex<Vec<Bytes>>,
    most: usize,
}

impl KeptBuffers {
    /// Keeps at most `most` buffers (idle memory of at most `most` times the largest).
    pub(crate) fn new(most: usize) -> Self {
        Self {
            kept: Mutex::new(Vec::new()),
            most,
        }
    }

    /// A kept buffer that nothing else holds any more, with room for `len` bytes from its
    /// start, and at most `len` bytes in it (those of its earlier use); `None` when none is free
    /// (the free one found is dropped if it is too small, making room for a larger one).
    pub(crate) fn take(&self, len: usize) -> Option<BytesMut> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let i = kept.iter().position(Bytes::is_unique)?;
        let mut buf = kept.swap_remove(i).try_into_mut().ok()?;
        if buf.capacity() < len {
            return None;
        }
        buf.truncate(len);
        Some(buf)
    }

    /// Keeps a handle on `buf` for [`Self::take`], if there is room.
    pub(crate) fn keep(&self, buf: &Bytes) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < self.most {
            kept.push(buf.clone());
        }
    }

    /// Buffers kept now, free or not.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.kept.lock().map(|k| k.len()).unwrap_or(0)
    }
}
