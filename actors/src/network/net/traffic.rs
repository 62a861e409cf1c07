//! Bytes per connection: every connection's muxer is wrapped so that what its streams read and
//! write is counted, and `/debug/info` can say how much went to each peer, directly or through
//! a relay. The counts are stream payload (block exchange, DHT, identify…), without the Noise
//! and muxer framing, which add about 1 %.
//!
//! The transport does not know the swarm's connection ids, so each new connection's counters
//! wait in [`Unclaimed`] under its peer and remote address until the driver, hearing of the
//! established connection, takes them.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerBox, StreamMuxerEvent, SubstreamBox};
use libp2p::core::ConnectedPoint;
use libp2p::{Multiaddr, PeerId};

/// Above this many unclaimed entries, those whose connection is gone are dropped (a connection
/// refused by the limits is never claimed).
const PRUNE_ABOVE: usize = 256;

/// Bytes one connection carried so far.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    sent: AtomicU64,
    received: AtomicU64,
}

impl Traffic {
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// The remote address that identifies a connection in both the transport and the swarm.
pub(crate) fn remote_of(endpoint: &ConnectedPoint) -> Multiaddr {
    match endpoint {
        ConnectedPoint::Dialer { address, .. } => address.clone(),
        ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
    }
}

/// A connection's counters by its peer and remote address.
type ByConnection = HashMap<(PeerId, Multiaddr), Arc<Traffic>>;

/// Counters of connections the transport made and the driver has not taken yet.
#[derive(Clone, Default)]
pub(crate) struct Unclaimed(Arc<Mutex<ByConnection>>);

impl Unclaimed {
    /// Wraps a new connection's muxer so that it counts into fresh counters, kept here.
    pub(crate) fn wrap(
        &self,
        peer: PeerId,
        endpoint: &ConnectedPoint,
        muxer: StreamMuxerBox,
    ) -> StreamMuxerBox {
        let traffic = Arc::new(Traffic::default());
        let mut map = match self.0.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, t| Arc::strong_count(t) > 1);
        }
        map.insert((peer, remote_of(endpoint)), traffic.clone());
        StreamMuxerBox::new(Counted {
            inner: muxer,
            traffic,
        })
    }

    /// The counters of the connection to `peer` at `remote`, once.
    pub(crate) fn claim(&self, peer: PeerId, remote: &Multiaddr) -> Arc<Traffic> {
        let mut map = match self.0.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        // A connection the transport did not wrap (none today) counts nothing.
        map.remove(&(peer, remote.clone())).unwrap_or_default()
    }
}

/// A muxer whose streams count what they carry.
struct Counted {
    inner: StreamMuxerBox,
    traffic: Arc<Traffic>,
}

impl StreamMuxer for Counted {
    type Substream = SubstreamBox;
    type Error = io::Error;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let traffic = self.traffic.clone();
        Pin::new(&mut self.inner)
            .poll_inbound(cx)
            .map_ok(|s| SubstreamBox::new(CountedStream { inner: s, traffic }))
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let traffic = self.traffic.clone();
        Pin::new(&mut self.inner)
            .poll_outbound(cx)
            .map_ok(|s| SubstreamBox::new(CountedStream { inner: s, traffic }))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

/// One stream of a [`Counted`] muxer.
struct CountedStream {
    inner: SubstreamBox,
    traffic: Arc<Traffic>,
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = read {
            self.traffic.received.fetch_add(n as u64, Ordering::Relaxed);
        }
        read
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.traffic.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
