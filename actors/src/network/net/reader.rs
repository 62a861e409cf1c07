//! The reading side of a block-exchange stream: frames read under the global and per-peer
//! budgets, then decoded and handed to the exchange as events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt as _};
use libp2p::PeerId;
use tokio::sync::{mpsc, Semaphore};

use crate::format::blockexc::Message;
use crate::network::net::frame_buffers::FrameBuffers;
use crate::network::net::framing::{self, FrameError};
use crate::network::net::{FrameBudget, NetEvent, Violation};

/// Above this many tracked peers, the per-peer budgets and stream slots of idle peers are
/// forgotten.
pub(super) const PRUNE_SLOTS_ABOVE: usize = 1024;

/// What every reader needs.
pub(crate) struct ReadCtx {
    /// Where messages and violations go (bounded: a slow consumer slows the peers down).
    pub events: mpsc::Sender<NetEvent>,
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Bytes of frames being read or queued as events, over all streams; one permit per byte.
    pub budget: Arc<Semaphore>,
    /// Each peer's share of `budget` (over all its streams), so that a few peers cannot take
    /// all of it; created on a peer's first frame.
    pub peer_budgets: PeerBudgets,
    /// A frame's body must arrive within this plus its length at [`ReadCtx::min_rate`].
    pub frame_timeout: Duration,
    /// Slowest rate, in bytes per second, at which a frame's body may arrive.
    pub min_rate: u64,
    /// An inbound stream on which no frame starts for this long is closed.
    pub idle_timeout: Duration,
    /// Buffers of delivered frames, taken again once their blocks are stored.
    pub frames: FrameBuffers,
}

/// Per-peer read budgets: one semaphore of `per_peer` bytes for each peer with frames in
/// flight. Entries whose semaphore nobody holds any more are pruned as the map grows.
pub(crate) struct PeerBudgets {
    per_peer: usize,
    map: std::sync::Mutex<HashMap<PeerId, std::sync::Weak<Semaphore>>>,
}

impl PeerBudgets {
    pub(crate) fn new(per_peer: usize) -> Self {
        Self {
            per_peer,
            map: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// `peer`'s budget (shared by all its streams while any of them holds it).
    fn of(&self, peer: PeerId) -> Arc<Semaphore> {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(s) = map.get(&peer).and_then(std::sync::Weak::upgrade) {
            return s;
        }
        if map.len() > PRUNE_SLOTS_ABOVE {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let s = Arc::new(Semaphore::new(self.per_peer));
        map.insert(peer, Arc::downgrade(&s));
        s
    }
}

/// How a read loop ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadEnd {
    /// The peer closed its side cleanly (or left it idle past the idle timeout).
    Eof,
    /// The peer broke the protocol (already reported); the stream must go.
    Violation,
    /// The stream failed, or the consumer of events is gone.
    Gone,
}

/// Bytes of budget taken per step while a frame's body arrives: a frame holds budget for what
/// has arrived, not for what it announced.
const BUDGET_STEP: usize = 64 * 1024;

/// Budget held for one frame, from the global and the peer's pool alike.
#[derive(Debug)]
pub(crate) struct Held {
    global: tokio::sync::OwnedSemaphorePermit,
    peer: tokio::sync::OwnedSemaphorePermit,
}

impl Held {
    /// Takes `n` more bytes from both pools (waits while either is exhausted).
    async fn grow(
        held: &mut Option<Held>,
        n: usize,
        global: &Arc<Semaphore>,
        peer: &Arc<Semaphore>,
    ) -> Option<()> {
        let n = u32::try_from(n).ok()?;
        if n == 0 {
            return Some(());
        }
        // The peer's own pool first: a peer over its share waits without holding global bytes.
        let p = peer.clone().acquire_many_owned(n).await.ok()?;
        let g = global.clone().acquire_many_owned(n).await.ok()?;
        match held {
            Some(h) => {
                h.global.merge(g);
                h.peer.merge(p);
            }
            None => *held = Some(Held { global: g, peer: p }),
        }
        Some(())
    }
}

/// Reads a frame body of `len` bytes, taking budget as the bytes arrive.
async fn read_body_budgeted<R: AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
    held: &mut Option<Held>,
    ctx: &ReadCtx,
    peer_budget: &Arc<Semaphore>,
) -> Result<bytes::Bytes, FrameError> {
    // A kept frame's buffer when one is free (its bytes are overwritten step by step), else
    // a new one with room for the whole body, so it never moves while it grows (a realloc
    // copied each 3 MiB delivery up to twice); each step is zeroed (a new buffer) and written
    // only once its budget is taken.
    let mut buf = ctx.frames.buffer(len, ctx.max_frame);
    let mut filled = 0;
    while filled < len {
        let step = (len - filled).min(BUDGET_STEP);
        if Held::grow(held, step, &ctx.budget, peer_budget)
            .await
            .is_none()
        {
            return Err(FrameError::Io(std::io::ErrorKind::BrokenPipe.into()));
        }
        let end = filled + step;
        if buf.len() < end {
            buf.resize(end, 0);
        }
        while filled < end {
            match r.read(&mut buf[filled..end]).await? {
                0 => return Err(FrameError::Truncated),
                n => filled += n,
            }
        }
    }
    let body = buf.freeze();
    ctx.frames.keep(&body);
    Ok(body)
}

/// `message` with its blocks copied out of the frame when the frame is much larger than they
/// are: blocks are slices of their frame and keep all of it alive until stored, so a peer that
/// pads each 64 KiB block's frame to 4 MiB (an unknown field is legal protobuf) would multiply
/// what a fetch window holds by 64. Honest frames stay zero-copy.
fn unpadded(mut message: Message, frame_len: usize) -> Message {
    let data: usize = message.deliveries.iter().map(|d| d.data.len()).sum();
    if data > 0 && frame_len > data + data / 4 + BUDGET_STEP {
        for d in &mut message.deliveries {
            d.data = bytes::Bytes::copy_from_slice(&d.data);
        }
    }
    message
}

/// Roughly what a decoded message holds in memory beyond its frame: its list entries are
/// several times their wire size.
fn decoded_extra(message: &Message, wire_len: usize) -> usize {
    use crate::format::blockexc::{BlockPresence, WantEntry};
    let entries = message.wantlist.entries.len() * std::mem::size_of::<WantEntry>();
    let presences = message.presences.len() * (std::mem::size_of::<BlockPresence>() + 32);
    (entries + presences).saturating_sub(wire_len)
}

/// A frame read in full, on its way to be decoded, with the budget it holds.
struct Frame {
    body: bytes::Bytes,
    held: Option<Held>,
}

/// Why reading a stream stops before a whole frame: its end, or the peer breaking the framing
/// (told through the decoder, so that it reaches the exchange after the frames before it).
enum Stop {
    End(ReadEnd),
    Broke(Violation),
}

/// The decoding task of one stream, aborted when its read loop is dropped (a stream reset, or
/// the writer aborting the reader of its stream).
struct Decoder(tokio::task::JoinHandle<ReadEnd>);

impl Drop for Decoder {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads frames from `r` until it ends, forwarding each valid message as an event, in order.
///
/// Decoding hashes every delivered block (a 48-block delivery: 3 MiB of SHA-256, about 2 ms),
/// so it runs in a task of its own, one frame behind the reads. Decoded in line, no byte of
/// the stream was read while a frame was hashed and its event queued: the muxer's window closed
/// and the sender waited (on loopback the reader spent half of a 1 GiB fetch not reading). The
/// frame in between holds its budget like any other, so the budgets bound this as before.
pub(crate) async fn read_loop<R: AsyncRead + Unpin>(
    peer: PeerId,
    r: R,
    ctx: &Arc<ReadCtx>,
) -> ReadEnd {
    let peer_budget = ctx.peer_budgets.of(peer);
    let (frames_tx, frames_rx) = mpsc::channel(1);
    let mut decoder = Decoder(tokio::spawn(decode_loop(
        peer,
        frames_rx,
        ctx.clone(),
        peer_budget.clone(),
    )));
    let read = read_frames(r, ctx, &peer_budget, frames_tx).await;
    // The frames already read are decoded and delivered before the end is told.
    let decoded = (&mut decoder.0).await.unwrap_or(ReadEnd::Gone);
    match (read, decoded) {
        (ReadEnd::Eof, decoded) => decoded,
        // The decoder found a bad message, and the reader stopped for it.
        (_, ReadEnd::Violation) => ReadEnd::Violation,
        (read, _) => read,
    }
}

/// Reads whole frames under budget and queues them for the decoder, until the stream ends, the
/// peer breaks the framing, or the decoder stops.
async fn read_frames<R: AsyncRead + Unpin>(
    mut r: R,
    ctx: &ReadCtx,
    peer_budget: &Arc<Semaphore>,
    frames: mpsc::Sender<Result<Frame, Violation>>,
) -> ReadEnd {
    loop {
        let frame = tokio::select! {
            // The decoder gave up (a bad message, or no one takes events): so does the reader,
            // even while the peer sends nothing.
            () = frames.closed() => return ReadEnd::Gone,
            frame = read_frame(&mut r, ctx, peer_budget) => frame,
        };
        match frame {
            Ok(frame) => {
                if frames.send(Ok(frame)).await.is_err() {
                    return ReadEnd::Gone;
                }
            }
            Err(Stop::End(end)) => return end,
            Err(Stop::Broke(violation)) => {
                let _ = frames.send(Err(violation)).await;
                return ReadEnd::Violation;
            }
        }
    }
}

/// Reads one frame: its length within the idle timeout, its body at the minimum rate.
async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    ctx: &ReadCtx,
    peer_budget: &Arc<Semaphore>,
) -> Result<Frame, Stop> {
    let len =
        match tokio::time::timeout(ctx.idle_timeout, framing::read_len(r, ctx.max_frame)).await {
            // Quiet for the idle timeout: closed like a clean end (a Codex peer opens a new
            // stream when it next has something to say).
            Err(_) => return Err(Stop::End(ReadEnd::Eof)),
            Ok(Ok(len)) => len,
            Ok(Err(FrameError::Eof)) => return Err(Stop::End(ReadEnd::Eof)),
            Ok(Err(FrameError::Io(_))) => return Err(Stop::End(ReadEnd::Gone)),
            Ok(Err(FrameError::TooLarge { len, max })) => {
                return Err(Stop::Broke(Violation::FrameTooLarge { len, max }))
            }
            Ok(Err(FrameError::BadLength | FrameError::Truncated)) => {
                return Err(Stop::Broke(Violation::Framing))
            }
        };
    // The body must come at the minimum rate or better, from the moment its length is
    // known: a peer that trickles a frame holds a stream and budget for a bounded time.
    let allowed =
        ctx.frame_timeout + Duration::from_secs_f64(len as f64 / ctx.min_rate.max(1) as f64);
    let mut held = None;
    match tokio::time::timeout(
        allowed,
        read_body_budgeted(r, len, &mut held, ctx, peer_budget),
    )
    .await
    {
        Ok(Ok(body)) => Ok(Frame { body, held }),
        Ok(Err(FrameError::Truncated)) => Err(Stop::Broke(Violation::Framing)),
        Ok(Err(_)) => Err(Stop::End(ReadEnd::Gone)),
        Err(_) => Err(Stop::Broke(Violation::SlowFrame)),
    }
}

/// Decodes the frames of one stream in order and hands each valid message to the exchange;
/// the first bad one, or the reader's report of broken framing, ends the stream.
async fn decode_loop(
    peer: PeerId,
    mut frames: mpsc::Receiver<Result<Frame, Violation>>,
    ctx: Arc<ReadCtx>,
    peer_budget: Arc<Semaphore>,
) -> ReadEnd {
    let broke = |violation| async {
        let _ = ctx
            .events
            .send(NetEvent::Violation { peer, violation })
            .await;
        ReadEnd::Violation
    };
    while let Some(frame) = frames.recv().await {
        let Frame { body, mut held } = match frame {
            Ok(frame) => frame,
            Err(violation) => return broke(violation).await,
        };
        let len = body.len();
        let message = match Message::decode(body) {
            Ok(message) => unpadded(message, len),
            Err(e) => return broke(Violation::Message(e)).await,
        };
        let extra = decoded_extra(&message, len);
        if Held::grow(&mut held, extra, &ctx.budget, &peer_budget)
            .await
            .is_none()
        {
            return ReadEnd::Gone;
        }
        let event = NetEvent::Message {
            peer,
            message,
            budget: FrameBudget { _held: held },
        };
        if ctx.events.send(event).await.is_err() {
            return ReadEnd::Gone;
        }
    }
    ReadEnd::Eof
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads one frame body from `bytes` as a reader does, with ample budget.
    async fn body(ctx: &ReadCtx, bytes: &[u8]) -> bytes::Bytes {
        let peer_budget = Arc::new(Semaphore::new(8 << 20));
        let mut r = futures::io::Cursor::new(bytes.to_vec());
        let mut held = None;
        let body = read_body_budgeted(&mut r, bytes.len(), &mut held, ctx, &peer_budget).await;
        body.expect("the whole body is there")
    }

    /// A reader's context with 4 MiB frames and ample budgets, its events going to `events`.
    fn context(events: mpsc::Sender<NetEvent>) -> ReadCtx {
        ReadCtx {
            events,
            max_frame: 4 << 20,
            budget: Arc::new(Semaphore::new(8 << 20)),
            peer_budgets: PeerBudgets::new(8 << 20),
            frame_timeout: Duration::from_secs(10),
            min_rate: 1,
            idle_timeout: Duration::from_secs(10),
            frames: FrameBuffers::default(),
        }
    }

    #[tokio::test]
    async fn a_broken_frame_is_told_after_the_messages_before_it() {
        use crate::format::blockexc::{BlockAddress, WantEntry, WantType, Wantlist};
        use crate::format::cid::{cid_from_digest, sha256, BLOCK_CODEC};
        let (events, mut rx) = mpsc::channel(8);
        let ctx = Arc::new(context(events));
        let address = BlockAddress::Cid(cid_from_digest(BLOCK_CODEC, &sha256(b"a block")));
        let message = Message {
            wantlist: Wantlist {
                entries: vec![WantEntry::new(address, WantType::Have)],
                full: false,
            },
            ..Message::default()
        };
        let body = prost::Message::encode_to_vec(&message.to_wire());
        let mut stream = Vec::new();
        prost::encoding::encode_varint(body.len() as u64, &mut stream);
        stream.extend_from_slice(&body);
        // The next frame announces more than the limit.
        prost::encoding::encode_varint(5 << 20, &mut stream);
        let peer = PeerId::random();
        let end = read_loop(peer, futures::io::Cursor::new(stream), &ctx).await;
        assert_eq!(end, ReadEnd::Violation);
        let first = rx.recv().await.expect("an event");
        assert!(
            matches!(&first, NetEvent::Message { message: m, .. } if m.wantlist.entries.len() == 1),
            "the message first: {first:?}"
        );
        let second = rx.recv().await.expect("a second event");
        assert!(
            matches!(
                second,
                NetEvent::Violation {
                    violation: Violation::FrameTooLarge { .. },
                    ..
                }
            ),
            "then the violation: {second:?}"
        );
    }

    #[tokio::test]
    async fn a_reused_frame_buffer_shows_only_the_new_body() {
        let (events, _rx) = mpsc::channel(1);
        let ctx = context(events);
        let first = vec![0xaa; 3 << 20];
        let a = body(&ctx, &first).await;
        assert_eq!(a, first);
        let at = a.as_ptr();
        drop(a);
        // Shorter: only its own bytes, none of the first frame's tail.
        let second = vec![0x55; (2 << 20) + 12_345];
        let b = body(&ctx, &second).await;
        assert_eq!(b.as_ptr(), at, "the first frame's buffer, reused");
        assert_eq!(b, second);
        drop(b);
        // Longer than the last: its bytes past the last frame's end are the new body's too.
        let third: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let c = body(&ctx, &third).await;
        assert_eq!(c.as_ptr(), at);
        assert_eq!(c, third);
    }
}
