//! The muxer over a real loopback TCP connection: what one side writes arrives intact, and
//! leaves in frames larger than yamux's default 16 KiB but no larger than [`SEND_FRAME`].

use std::sync::{Arc, Mutex};

use futures::{future::poll_fn, AsyncReadExt, AsyncWriteExt};
use libp2p::core::muxing::StreamMuxerExt;
use libp2p::tcp::tokio::TcpStream;

use super::*;

/// A socket that records the length of every write it is given.
struct Recording<S> {
    inner: S,
    writes: Arc<Mutex<Vec<usize>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.writes.lock().expect("not poisoned").push(n);
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

/// Keeps a muxer's connection going until it fails or closes.
fn drive<C>(mut muxer: Muxer<C>)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move { poll_fn(|cx| muxer.poll_unpin(cx)).await });
}

#[tokio::test]
async fn a_large_write_arrives_whole_in_frames_up_to_send_frame() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (dialled, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let writes = Arc::new(Mutex::new(Vec::new()));
    let client_socket = Recording {
        inner: TcpStream(dialled.expect("connect")),
        writes: writes.clone(),
    };
    let server_socket = TcpStream(accepted.expect("accept").0);

    let yamux = Yamux::new(4);
    let mut client = yamux
        .clone()
        .upgrade_outbound(client_socket, "/yamux/1.0.0")
        .await
        .expect("client upgrade");
    let mut server = yamux
        .upgrade_inbound(server_socket, "/yamux/1.0.0")
        .await
        .expect("server upgrade");

    let sent: Vec<u8> = (0..4 * SEND_FRAME).map(|i| (i * 7 % 251) as u8).collect();
    let mut outbound = poll_fn(|cx| client.poll_outbound_unpin(cx))
        .await
        .expect("open");
    drive(client);
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            outbound.write_all(&sent).await.expect("write");
            outbound.close().await.expect("close");
        })
    };
    let mut inbound = poll_fn(|cx| server.poll_inbound_unpin(cx))
        .await
        .expect("accept");
    drive(server);
    let mut received = Vec::new();
    inbound.read_to_end(&mut received).await.expect("read");
    writer.await.expect("writer");

    assert!(
        received == sent,
        "{} bytes arrived of {}",
        received.len(),
        sent.len()
    );
    let writes = writes.lock().expect("not poisoned").clone();
    let largest = writes.iter().copied().max().unwrap_or(0);
    assert!(
        largest > 16 * 1024 && largest <= SEND_FRAME,
        "largest write {largest} bytes, writes {writes:?}"
    );
}
