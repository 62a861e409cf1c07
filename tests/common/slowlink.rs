//! A long, narrow link on loopback: a TCP forwarder that paces every byte to a rate and holds it
//! for a one-way delay, in both directions of every connection it forwards. The kernel here has
//! no `netem`, so the delay has to come from user space; the window of requests a node keeps in
//! flight is an application-level matter, which this shows as a real link would.
//!
//! The link takes bytes from the sender only as fast as its rate (a little ahead, so that timer
//! jitter never leaves it idle): the backlog waits in the sender's socket, as it waits at the
//! bottleneck of a real path. Each piece read is due at the far end one one-way delay after the
//! link has finished "sending" it. What is in transit is bounded by the rate × (delay + 1 s).
//!
//! Used by `tests/slow_link.rs` (functional, never timed) and by the `slowlink` bench binary
//! (`benches/slowlink.rs`, driven by `benches/slowlink.sh`), which measures the ratios.

use std::{
    io,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::{mpsc, Semaphore},
    time::Instant,
};

/// Largest piece read at once (a link "packet" train).
const MAX_PIECE: usize = 64 * 1024;
/// How far ahead of its rate the link may take bytes, so that a late timer never idles it.
const AHEAD: Duration = Duration::from_millis(10);
/// Each piece is at most this much of the link's time, so pacing stays smooth at low rates.
const PIECE_TIME: Duration = Duration::from_millis(1);

/// A link's rate and delay (the same both ways).
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Bytes per second, each way.
    pub bytes_per_sec: f64,
    /// Time from the link having sent a byte to its arrival at the far end: half the round trip.
    pub one_way: Duration,
}

impl Link {
    /// A link of `mbit` megabits (10⁶ bits) per second and a round trip of `rtt`.
    pub fn new(mbit: f64, rtt: Duration) -> Self {
        Self {
            bytes_per_sec: mbit * 1e6 / 8.0,
            one_way: rtt / 2,
        }
    }

    /// Bytes the link may hold in transit (its delay line), plus a second at its rate: a
    /// receiver that stops reading stops the link within that.
    fn in_transit_bound(&self) -> usize {
        let bytes = self.bytes_per_sec * (self.one_way.as_secs_f64() + 1.0);
        (bytes as usize).max(4 * MAX_PIECE)
    }

    /// The largest piece read at once at this rate.
    fn piece(&self) -> usize {
        ((self.bytes_per_sec * PIECE_TIME.as_secs_f64()) as usize).clamp(1024, MAX_PIECE)
    }

    /// Link time taken by `n` bytes.
    fn time_of(&self, n: usize) -> Duration {
        Duration::from_secs_f64(n as f64 / self.bytes_per_sec)
    }
}

/// Forwards every connection accepted on `listener` to `target` over `link`; counts the bytes
/// moved, both ways, in `moved`. Runs until its task is dropped.
pub async fn serve(listener: TcpListener, target: SocketAddr, link: Link, moved: Arc<AtomicU64>) {
    while let Ok((inbound, _)) = listener.accept().await {
        let moved = moved.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else {
                return; // dropping `inbound` closes it: the dialler sees the failure
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::join!(
                pipe(in_read, out_write, link, moved.clone()),
                pipe(out_read, in_write, link, moved),
            );
        });
    }
}

/// One direction of one connection: paced reads, a delay line, timed writes.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, link: Link, moved: Arc<AtomicU64>) {
    let room = Arc::new(Semaphore::new(link.in_transit_bound()));
    // Bounded in bytes by `room`; the channel itself only needs to hold as many pieces.
    let (tx, mut rx) =
        mpsc::unbounded_channel::<(Instant, Vec<u8>, tokio::sync::OwnedSemaphorePermit)>();
    let reader = async move {
        // When the link has finished sending what it took so far.
        let mut free_at = Instant::now();
        let mut buf = vec![0u8; link.piece()];
        loop {
            if free_at > Instant::now() + AHEAD {
                tokio::time::sleep_until(free_at - AHEAD).await;
            }
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let Ok(permit) = room.clone().acquire_many_owned(n as u32).await else {
                break;
            };
            free_at = free_at.max(Instant::now()) + link.time_of(n);
            if tx
                .send((free_at + link.one_way, buf[..n].to_vec(), permit))
                .is_err()
            {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes, _permit)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
            moved.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        // The sender closed its side: so does the link, once everything has arrived.
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// A forwarder on its own thread and runtime, for code that is not async (tests, benches).
pub struct Forwarder {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    moved: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Forwarder {
    /// Listens on `listen` (port 0 for a free one) and forwards to `target` over `link`.
    pub fn start(listen: SocketAddr, target: SocketAddr, link: Link) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("slowlink")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind(listen))?;
        let addr = listener.local_addr()?;
        let moved = Arc::new(AtomicU64::new(0));
        runtime.spawn(serve(listener, target, link, moved.clone()));
        Ok(Self {
            addr,
            moved,
            runtime: Some(runtime),
        })
    }

    /// Bytes it has delivered so far, both directions, every connection.
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Sends `bytes` through a link to a sink on the same machine and returns the seconds from
/// the connect until the sink has read the last byte: the raw TCP baseline of the bench.
pub fn raw_tcp_seconds(link: Link, bytes: u64) -> io::Result<f64> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let sink = TcpListener::bind("127.0.0.1:0").await?;
        let sink_addr = sink.local_addr()?;
        let front = TcpListener::bind("127.0.0.1:0").await?;
        let front_addr = front.local_addr()?;
        let forwarding = tokio::spawn(serve(front, sink_addr, link, Arc::default()));
        let reading = tokio::spawn(async move {
            let (mut s, _) = sink.accept().await?;
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0u64;
            loop {
                match s.read(&mut buf).await? {
                    0 => return Ok::<u64, io::Error>(got),
                    n => got += n as u64,
                }
            }
        });
        let started = Instant::now();
        let mut source = TcpStream::connect(front_addr).await?;
        let chunk = vec![0x5au8; 1 << 16];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            source.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        source.shutdown().await?;
        let got = reading.await.map_err(io::Error::other)??;
        let seconds = started.elapsed().as_secs_f64();
        forwarding.abort();
        if got != bytes {
            return Err(io::Error::other(format!("{got} of {bytes} bytes arrived")));
        }
        Ok(seconds)
    })
}
