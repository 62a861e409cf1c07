//! The tasks that move block-exchange frames: one writer per peer that owns our outbound stream,
//! a reader on every stream, and the acceptor that hands inbound streams to readers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::PeerId;
use tokio::sync::{mpsc, Semaphore};

use crate::format::blockexc::Message;
use crate::net::framing::{self, FrameError};
use crate::net::{FrameBudget, NetEvent, SendFailure, Violation, BLOCKEXC_PROTOCOL};

/// A message queued for a peer, and who wants to know when it has been written.
pub(crate) type Outgoing = (Message, Option<tokio::sync::oneshot::Sender<bool>>);

/// Time allowed to negotiate a new outbound stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to write one frame; a peer that stops reading for this long loses the stream.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Above this many tracked peers the acceptor forgets the idle ones.
const PRUNE_SLOTS_ABOVE: usize = 1024;

/// What every reader needs.
pub(crate) struct ReadCtx {
    /// Where messages and violations go (bounded: a slow consumer slows the peers down).
    pub events: mpsc::Sender<NetEvent>,
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Bytes of frames being read or queued as events, over all streams; one permit per byte.
    pub budget: Arc<Semaphore>,
    /// Time allowed to receive a frame's body once its length arrived.
    pub frame_timeout: Duration,
}

/// How a read loop ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadEnd {
    /// The peer closed its side cleanly.
    Eof,
    /// The peer broke the protocol (already reported); the stream must go.
    Violation,
    /// The stream failed, or the consumer of events is gone.
    Gone,
}

/// Reads frames from `r` until it ends, forwarding each valid message as an event.
pub(crate) async fn read_loop<R: AsyncRead + Unpin>(
    peer: PeerId,
    mut r: R,
    ctx: &ReadCtx,
) -> ReadEnd {
    let violation = |v: Violation| NetEvent::Violation { peer, violation: v };
    loop {
        let len = match framing::read_len(&mut r, ctx.max_frame).await {
            Ok(len) => len,
            Err(FrameError::Eof) => return ReadEnd::Eof,
            Err(FrameError::Io(_)) => return ReadEnd::Gone,
            Err(FrameError::TooLarge { len, max }) => {
                let _ = ctx
                    .events
                    .send(violation(Violation::FrameTooLarge { len, max }))
                    .await;
                return ReadEnd::Violation;
            }
            Err(FrameError::BadLength | FrameError::Truncated) => {
                let _ = ctx.events.send(violation(Violation::Framing)).await;
                return ReadEnd::Violation;
            }
        };
        // `len <= max_frame <= budget size <= u32::MAX`, checked when the budget was made.
        let permits = u32::try_from(len).unwrap_or(u32::MAX);
        let Ok(permit) = ctx.budget.clone().acquire_many_owned(permits).await else {
            return ReadEnd::Gone;
        };
        let body =
            match tokio::time::timeout(ctx.frame_timeout, framing::read_body(&mut r, len)).await {
                Ok(Ok(body)) => body,
                Ok(Err(FrameError::Truncated)) => {
                    let _ = ctx.events.send(violation(Violation::Framing)).await;
                    return ReadEnd::Violation;
                }
                Ok(Err(_)) => return ReadEnd::Gone,
                Err(_) => {
                    let _ = ctx.events.send(violation(Violation::SlowFrame)).await;
                    return ReadEnd::Violation;
                }
            };
        // Decoding hashes the delivered blocks (≤ 20 × 64 KiB): about a millisecond.
        let event = match Message::decode(body) {
            Ok(message) => NetEvent::Message {
                peer,
                message,
                budget: FrameBudget { _permit: permit },
            },
            Err(e) => {
                let _ = ctx.events.send(violation(Violation::Message(e))).await;
                return ReadEnd::Violation;
            }
        };
        if ctx.events.send(event).await.is_err() {
            return ReadEnd::Gone;
        }
    }
}

/// Hands every inbound block-exchange stream to a reader, at most `per_peer` at once per peer.
pub(crate) async fn accept_loop(
    mut incoming: libp2p_stream::IncomingStreams,
    ctx: Arc<ReadCtx>,
    per_peer: usize,
) {
    let mut slots: HashMap<PeerId, Arc<Semaphore>> = HashMap::new();
    while let Some((peer, stream)) = incoming.next().await {
        if slots.len() > PRUNE_SLOTS_ABOVE {
            slots.retain(|_, s| s.available_permits() < per_peer);
        }
        let slot = slots
            .entry(peer)
            .or_insert_with(|| Arc::new(Semaphore::new(per_peer)))
            .clone();
        let Ok(permit) = slot.try_acquire_owned() else {
            // Refused by dropping it (a reset). The event is best effort: the accept loop must not
            // wait on the consumer, or inbound streams of every peer would pile up behind it.
            drop(stream);
            let violation = Violation::TooManyStreams;
            let _ = ctx.events.try_send(NetEvent::Violation { peer, violation });
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut stream = stream;
            if read_loop(peer, &mut stream, &ctx).await == ReadEnd::Eof {
                let _ = stream.close().await;
            }
            // Otherwise the stream is dropped unclosed, which resets it.
        });
    }
}

/// Owns our one outbound stream to `peer`: opens it on the first message, writes every queued
/// message on it, runs a reader on it (Codex may answer there), and opens a new one on the next
/// message after a failure, as Codex does. Ends when the queue closes (peer gone or shutdown).
pub(crate) async fn write_loop(
    peer: PeerId,
    mut queue: mpsc::Receiver<Outgoing>,
    mut control: libp2p_stream::Control,
    ctx: Arc<ReadCtx>,
) {
    let failed = |reason| NetEvent::SendFailed { peer, reason };
    // The write half, and the reader of the read half while it runs.
    let mut out = None;
    let mut reader: Option<tokio::task::JoinHandle<ReadEnd>> = None;
    loop {
        let (message, written) = tokio::select! {
            m = queue.recv() => match m {
                Some(m) => m,
                None => break,
            },
            end = async { reader.as_mut()?.await.ok() }, if reader.is_some() => {
                reader = None;
                // A clean end of the peer's side leaves ours writable; anything else kills it.
                if end != Some(ReadEnd::Eof) {
                    out = None;
                }
                continue;
            }
        };
        let wire = message.to_wire();
        let len = prost::Message::encoded_len(&wire);
        // Whatever happens to this frame below, its sender hears of it (the sender's drop
        // reads as "not written").
        let mut written = written;
        let mut tell = |ok: bool| {
            if let Some(w) = written.take() {
                let _ = w.send(ok);
            }
        };
        if len > ctx.max_frame {
            let _ = ctx.events.send(failed(SendFailure::TooLarge(len))).await;
            continue;
        }
        // prost's length delimiter is the same unsigned varint as the frame prefix.
        let frame = prost::Message::encode_length_delimited_to_vec(&wire);
        drop(wire);
        if out.is_none() {
            if let Some(r) = reader.take() {
                r.abort();
            }
            let opened =
                tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, BLOCKEXC_PROTOCOL))
                    .await;
            let stream = match opened {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let _ = ctx.events.send(failed(open_failure(&e))).await;
                    continue;
                }
                Err(_) => {
                    let timed_out = SendFailure::OpenStream(std::io::ErrorKind::TimedOut);
                    let _ = ctx.events.send(failed(timed_out)).await;
                    continue;
                }
            };
            let (r, w) = stream.split();
            let ctx = ctx.clone();
            reader = Some(tokio::spawn(async move { read_loop(peer, r, &ctx).await }));
            out = Some(w);
        }
        let Some(w) = out.as_mut() else { continue };
        let result = tokio::time::timeout(WRITE_TIMEOUT, write_all_flush(w, &frame)).await;
        let kind = match result {
            Ok(Ok(())) => {
                tell(true);
                continue;
            }
            Ok(Err(e)) => e.kind(),
            Err(_) => std::io::ErrorKind::TimedOut,
        };
        out = None;
        if let Some(r) = reader.take() {
            r.abort();
        }
        let _ = ctx.events.send(failed(SendFailure::Write(kind))).await;
    }
    if let Some(mut w) = out {
        let _ = w.close().await;
    }
    if let Some(r) = reader {
        r.abort();
    }
}

async fn write_all_flush<W: futures::AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

fn open_failure(e: &libp2p_stream::OpenStreamError) -> SendFailure {
    match e {
        libp2p_stream::OpenStreamError::UnsupportedProtocol(_) => SendFailure::Unsupported,
        libp2p_stream::OpenStreamError::Io(e) => SendFailure::OpenStream(e.kind()),
        // The enum is non-exhaustive; a future variant is still a failure to open.
        _ => SendFailure::OpenStream(std::io::ErrorKind::Other),
    }
}
