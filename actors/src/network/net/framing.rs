//! Length-prefixed frames, as nim-libp2p's `writeLp` / `readLp` write and read them: an
//! unsigned varint (LEB128, at most 10 bytes, minimal) with the byte count, then the bytes.
//!
//! Reading refuses a length above the configured maximum *before* reading or allocating the
//! body, and grows the body buffer only as bytes arrive, so a peer that announces a large frame
//! and sends little costs little memory.

use std::io;

use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// What a frame body's buffer starts at before its bytes arrive (a claimed length is not trusted
/// with more).
const INITIAL_BODY: usize = 256 * 1024;

/// Why a frame could not be read. Everything but [`FrameError::Io`] is the peer's fault.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended between frames: the peer closed it, nothing is wrong.
    #[error("end of stream")]
    Eof,
    /// The length prefix is not a valid varint (too long, or not minimal).
    #[error("invalid length prefix")]
    BadLength,
    /// The announced length is above our limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: u64,
        /// Our limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The transport failed (reset, connection lost).
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// Reads the length prefix of the next frame and checks it against `max`. Separate from
/// reading the body so that the caller can reserve memory for it first.
///
/// # Errors
/// [`FrameError::Eof`] when the stream ends cleanly before a frame, otherwise as the variants
/// say.
pub async fn read_len<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<usize, FrameError> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        if r.read(&mut byte).await? == 0 {
            return Err(if i == 0 {
                FrameError::Eof
            } else {
                FrameError::Truncated
            });
        }
        let b = byte[0];
        // The 10th byte may only carry the top bit of a u64.
        if i == 9 && b > 1 {
            return Err(FrameError::BadLength);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // A trailing zero group means a non-minimal encoding, which unsigned-varint forbids.
            if b == 0 && i > 0 {
                return Err(FrameError::BadLength);
            }
            return match usize::try_from(value) {
                Ok(len) if len <= max => Ok(len),
                _ => Err(FrameError::TooLarge { len: value, max }),
            };
        }
    }
    Err(FrameError::BadLength)
}

/// Reads a frame body of `len` bytes.
///
/// # Errors
/// [`FrameError::Truncated`] when the stream ends early, [`FrameError::Io`] on transport errors.
pub async fn read_body<R: AsyncRead + Unpin>(r: &mut R, len: usize) -> Result<Bytes, FrameError> {
    // Start small: the announced length is only a claim until the bytes arrive. Grow by
    // doubling but never past `len`, so the buffer (which the frame's blocks keep alive as
    // slices until they are stored) holds no slack: `read_to_end` rounded a 1.3 MiB delivery
    // up to 2 MiB, and a downloader's memory grew by half as much again.
    let mut buf = vec![0u8; len.min(INITIAL_BODY)];
    let mut filled = 0;
    while filled < len {
        if filled == buf.len() {
            let grown = (buf.len() * 2).min(len);
            buf.reserve_exact(grown - buf.len());
            buf.resize(grown, 0);
        }
        match r.read(&mut buf[filled..]).await? {
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    Ok(Bytes::from(buf))
}

/// Reads one whole frame of at most `max` bytes.
///
/// # Errors
/// As [`read_len`] and [`read_body`].
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Bytes, FrameError> {
    let len = read_len(r, max).await?;
    read_body(r, len).await
}

/// `body` with its varint length prefix, ready to be written in one go.
pub fn encode_frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 10);
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// Writes one frame and flushes it.
///
/// # Errors
/// Transport errors.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> io::Result<()> {
    w.write_all(&encode_frame(body)).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;

    fn read_all(bytes: &[u8], max: usize) -> Vec<Result<Bytes, String>> {
        let mut r = Cursor::new(bytes.to_vec());
        let mut out = Vec::new();
        loop {
            match block_on(read_frame(&mut r, max)) {
                Err(FrameError::Eof) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
                Ok(f) => out.push(Ok(f)),
            }
        }
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let mut wire = Vec::new();
        for body in [&b""[..], b"a", &[7u8; 300], &[1u8; 70_000]] {
            block_on(write_frame(&mut wire, body)).expect("write to a vec");
        }
        let got = read_all(&wire, 1 << 20);
        let lens: Vec<usize> = got
            .iter()
            .map(|f| f.as_ref().map_or(0, Bytes::len))
            .collect();
        assert_eq!(lens, vec![0, 1, 300, 70_000]);
        assert_eq!(&wire[..1], &[0x00], "an empty frame is a single zero byte");
        assert_eq!(&wire[3..5], &[0xac, 0x02], "300 as a two-byte varint");
    }

    #[test]
    fn an_oversized_length_is_refused_before_the_body_is_read() {
        let mut r = Cursor::new(encode_frame(&[0u8; 101]));
        match block_on(read_frame(&mut r, 100)) {
            Err(FrameError::TooLarge { len: 101, max: 100 }) => {}
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(r.position(), 1, "only the prefix was consumed");
        // A 2^64-1 length is refused too, not wrapped or panicked on.
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(
            block_on(read_frame(&mut Cursor::new(huge), 100)),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn broken_prefixes_and_short_bodies_are_errors() {
        let eleven = [0xffu8; 11];
        assert!(matches!(
            block_on(read_frame(&mut Cursor::new(eleven), 100)),
            Err(FrameError::BadLength)
        ));
        assert!(matches!(
            block_on(read_frame(&mut Cursor::new([0x80u8, 0x00]), 100)),
            Err(FrameError::BadLength)
        ));
        assert!(matches!(
            block_on(read_frame(&mut Cursor::new([0x80u8]), 100)),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            block_on(read_frame(&mut Cursor::new([0x05u8, 1, 2]), 100)),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            block_on(read_frame(&mut Cursor::new([]), 100)),
            Err(FrameError::Eof)
        ));
    }
}
