//! yamux for connections between our own nodes (Codex settles on mplex), built on the `yamux`
//! crate directly so that two of its settings are ours rather than libp2p-yamux's fixed
//! defaults, which that wrapper does not let us change:
//!
//! - **Frame size** ([`SEND_FRAME`]). yamux cuts every write into frames of at most 16 KiB by
//!   default, and its connection flushes after each frame. Under Noise a flush seals whatever is
//!   buffered, so each 16 KiB became its own Noise frame, its own AEAD call and its own `send`
//!   system call: 65,536 of each per GiB served. With 256 KiB frames, Noise fills its 64 KiB
//!   frames and a GiB takes 4× fewer sends. Frames are still bounded by the receiver's window
//!   (yamux never sends more than the credit it was given), so every yamux implementation
//!   accepts them; nim-libp2p checks exactly that bound.
//! - **Receive window per connection** ([`connection_window`]). yamux grows a stream's window
//!   when its reader keeps up (towards twice the bandwidth-delay product), and by default lets a
//!   connection's windows together reach 1 GiB: that much could then sit in our buffers if the
//!   reader stopped. Here the bound is explicit and small.
//!
//! Everything else (the protocol, flow control, stream states) is the `yamux` crate's.

use std::{
    collections::VecDeque,
    io, iter,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::{
    muxing::{StreamMuxer, StreamMuxerEvent},
    upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo},
};

/// Largest yamux frame we send (yamux's default is 16 KiB; see the module's comment).
pub(crate) const SEND_FRAME: usize = 256 * 1024;

/// The window yamux guarantees every stream, and starts it with.
const STREAM_WINDOW: usize = 256 * 1024;

/// What the receive windows of a connection's streams may grow to beyond their guaranteed
/// [`STREAM_WINDOW`] each, together. 32 MiB is twice the bandwidth-delay product of a
/// 1 Gbit/s link with a 130 ms round trip, so one stream can still fill such a link.
const WINDOW_GROWTH: usize = 32 * 1024 * 1024;

/// The receive windows of all of a connection's streams together, at most: the bytes a peer
/// may have in flight towards us on one connection ([`WINDOW_GROWTH`] plus every stream's
/// guaranteed window).
const fn connection_window(max_streams: usize) -> usize {
    max_streams * STREAM_WINDOW + WINDOW_GROWTH
}

/// The upgrade that puts yamux on an authenticated connection.
#[derive(Debug, Clone)]
pub(crate) struct Yamux {
    config: yamux::Config,
    max_streams: usize,
}

impl Yamux {
    /// yamux with at most `max_streams` streams per connection, [`SEND_FRAME`] frames and a
    /// receive window of [`connection_window`]`(max_streams)` per connection.
    pub(crate) fn new(max_streams: usize) -> Self {
        let mut config = yamux::Config::default();
        // The stream count first: the window is checked against it.
        config
            .set_max_num_streams(max_streams)
            .set_max_connection_receive_window(Some(connection_window(max_streams)))
            .set_split_send_size(SEND_FRAME);
        Self {
            config,
            max_streams,
        }
    }

    fn muxer<C>(self, socket: C, mode: yamux::Mode) -> Muxer<C>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        Muxer {
            connection: yamux::Connection::new(socket, self.config, mode),
            accepted: VecDeque::new(),
            max_accepted: self.max_streams,
            accept_waker: None,
        }
    }
}

impl UpgradeInfo for Yamux {
    type Info = &'static str;
    type InfoIter = iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        iter::once("/yamux/1.0.0")
    }
}

impl<C> InboundConnectionUpgrade<C> for Yamux
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = io::Error;
    type Future = futures::future::Ready<Result<Muxer<C>, io::Error>>;

    fn upgrade_inbound(self, socket: C, _: Self::Info) -> Self::Future {
        futures::future::ready(Ok(self.muxer(socket, yamux::Mode::Server)))
    }
}

impl<C> OutboundConnectionUpgrade<C> for Yamux
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = io::Error;
    type Future = futures::future::Ready<Result<Muxer<C>, io::Error>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        futures::future::ready(Ok(self.muxer(socket, yamux::Mode::Client)))
    }
}

/// A yamux connection as libp2p's [`StreamMuxer`].
///
/// yamux makes progress only through `poll_next_inbound`, which also yields the peer's new
/// streams. libp2p drives a connection through [`StreamMuxer::poll`] and takes new streams
/// through [`StreamMuxer::poll_inbound`] when it wants them, so streams that arrive while
/// `poll` drives the connection wait in `accepted` (at most one per allowed stream; yamux
/// itself refuses streams beyond that count, so none should ever be dropped here).
pub(crate) struct Muxer<C> {
    connection: yamux::Connection<C>,
    accepted: VecDeque<yamux::Stream>,
    max_accepted: usize,
    /// The task waiting in `poll_inbound`, woken when `poll` queues a stream.
    accept_waker: Option<Waker>,
}

impl<C> Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    /// Drives the connection until the peer opens a stream or the connection ends.
    fn next_inbound(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<yamux::Stream, yamux::ConnectionError>> {
        match self.connection.poll_next_inbound(cx) {
            Poll::Ready(Some(result)) => Poll::Ready(result),
            Poll::Ready(None) => Poll::Ready(Err(yamux::ConnectionError::Closed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<C> StreamMuxer for Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    type Substream = yamux::Stream;
    type Error = yamux::ConnectionError;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        if let Some(stream) = this.accepted.pop_front() {
            return Poll::Ready(Ok(stream));
        }
        let polled = this.next_inbound(cx);
        if polled.is_pending() {
            this.accept_waker = Some(cx.waker().clone());
        }
        polled
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        self.get_mut().connection.poll_new_outbound(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().connection.poll_close(cx)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        let this = self.get_mut();
        let stream = match this.next_inbound(cx) {
            Poll::Ready(result) => result?,
            Poll::Pending => return Poll::Pending,
        };
        if this.accepted.len() < this.max_accepted {
            this.accepted.push_back(stream);
            if let Some(waker) = this.accept_waker.take() {
                waker.wake();
            }
        } else {
            // Dropping a stream resets it: the peer learns at once that it was not taken.
            tracing::warn!(
                "yamux: a stream beyond {} waiting to be taken, reset",
                this.max_accepted
            );
        }
        // Come back for more, after whatever else this task has to do.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests;
