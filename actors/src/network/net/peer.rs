//! The tasks that move block-exchange frames: one writer per peer that owns our outbound stream,
//! and the acceptor that hands inbound streams to readers (`reader.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use libp2p::PeerId;
use tokio::sync::{mpsc, Semaphore};

use crate::format::blockexc::Message;
use crate::network::net::reader::{read_loop, ReadCtx, ReadEnd, PRUNE_SLOTS_ABOVE};
use crate::network::net::{NetEvent, SendFailure, Violation, BLOCKEXC_PROTOCOL};

/// A message queued for a peer, and who wants to know when it has been written.
pub(crate) type Outgoing = (Message, Option<tokio::sync::oneshot::Sender<bool>>);

/// Time allowed to negotiate a new outbound stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to write one frame, on top of its length at [`WRITE_MIN_RATE`]; a peer that
/// reads slower than that loses the stream (and the exchange disconnects it), so a peer that
/// never reads holds a serving slot for seconds, not minutes.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Slowest rate (bytes per second) a peer must read our frames at: 10 s for a 1.3 MiB delivery.
const WRITE_MIN_RATE: f64 = 256.0 * 1024.0;

/// Hands every inbound block-exchange stream to a reader, at most `per_peer` at once per peer.
pub(crate) async fn accept_loop(
    mut incoming: mpsc::Receiver<crate::network::net::inbound::NewStream>,
    ctx: Arc<ReadCtx>,
    per_peer: usize,
) {
    let mut slots: HashMap<PeerId, Arc<Semaphore>> = HashMap::new();
    while let Some((peer, stream)) = incoming.recv().await {
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
        // prost's length delimiter is the same unsigned varint as the frame prefix; the
        // blocks' bytes go to the muxer as they are, without a copy of the whole frame.
        let frame = wire.frame_pieces();
        let frame_len: usize = frame.iter().map(bytes::Bytes::len).sum();
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
        let allowed = WRITE_TIMEOUT + Duration::from_secs_f64(frame_len as f64 / WRITE_MIN_RATE);
        let result = tokio::time::timeout(allowed, write_all_flush(w, &frame)).await;
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
    pieces: &[bytes::Bytes],
) -> std::io::Result<()> {
    for piece in pieces {
        w.write_all(piece).await?;
    }
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
