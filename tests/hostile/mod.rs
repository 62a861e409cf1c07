//! A hostile peer on the engine's own libp2p stack (TCP, Noise, yamux, raw block-exchange
//! streams), for the attacks of `tests/hostile_peers.rs`. Each [`Identity`] is one key and one
//! swarm polled on its own task; it can dial the node (several connections if asked), open
//! block-exchange streams and write anything on them, and take the streams the node opens.
//! Messages are built from the raw protobuf layout, so they can say what no honest encoder
//! would.

#![allow(dead_code)] // each scenario uses its own subset

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};
use std::time::Duration;

use codex_actors::format::{
    blockexc::{wire, Message},
    cid::{cid_from_digest, sha256, BLOCK_CODEC},
};
use codex_actors::network::net::{framing, BLOCKEXC_PROTOCOL};
use codex_actors::{Multiaddr, PeerId};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::swarm::{
    dial_opts::{DialOpts, PeerCondition},
    SwarmEvent,
};
use tokio::sync::mpsc;

// The same dataset the engine's misbehaving-peer tests serve from.
#[path = "../../actors/tests/dataset/mod.rs"]
mod dataset;
pub mod scenario;
pub mod seeder;

pub use dataset::Dataset;

/// Errors that may cross tasks.
pub type Fallible<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One hostile identity: a key, a swarm on its own task, and its connection counts.
pub struct Identity {
    pub peer: PeerId,
    control: libp2p_stream::Control,
    dials: mpsc::UnboundedSender<(PeerId, Multiaddr)>,
    /// Connections up now.
    pub connected: Arc<AtomicUsize>,
    /// Connections closed so far (by either side).
    pub closed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Identity {
    /// A fresh identity (must run inside a tokio runtime).
    pub fn new() -> Fallible<Self> {
        use libp2p::{identity::Keypair, noise, tcp, yamux, SwarmBuilder};
        let mut swarm = SwarmBuilder::with_existing_identity(Keypair::generate_secp256k1())
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_behaviour(|_| libp2p_stream::Behaviour::new())?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
            .build();
        let peer = *swarm.local_peer_id();
        let control = swarm.behaviour().new_control();
        let (dials, mut to_dial) = mpsc::unbounded_channel::<(PeerId, Multiaddr)>();
        let connected = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (up, down) = (connected.clone(), closed.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some((to, addr)) = to_dial.recv() => {
                        let opts = DialOpts::peer_id(to)
                            .addresses(vec![addr])
                            .condition(PeerCondition::Always)
                            .build();
                        let _ = swarm.dial(opts);
                    }
                    event = swarm.select_next_some() => match event {
                        SwarmEvent::ConnectionEstablished { .. } => {
                            up.fetch_add(1, Ordering::SeqCst);
                        }
                        SwarmEvent::ConnectionClosed { .. } => {
                            up.fetch_sub(1, Ordering::SeqCst);
                            down.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {}
                    },
                }
            }
        });
        Ok(Self {
            peer,
            control,
            dials,
            connected,
            closed,
            task,
        })
    }

    /// Opens `connections` connections to `to` and waits (5 s at most) until at least one is
    /// up; false when none came up (refused).
    pub async fn dial(&self, to: PeerId, addr: &Multiaddr, connections: usize) -> bool {
        for _ in 0..connections {
            let _ = self.dials.send((to, addr.clone()));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if self.connected.load(Ordering::SeqCst) > 0 {
                return true;
            }
            if self.closed.load(Ordering::SeqCst) >= connections {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// A new block-exchange stream to `to`.
    pub async fn open(&self, to: PeerId) -> Fallible<libp2p::Stream> {
        let mut control = self.control.clone();
        Ok(control.open_stream(to, BLOCKEXC_PROTOCOL).await?)
    }

    /// The block-exchange streams the node opens to us (call once).
    pub fn incoming(&self) -> Fallible<libp2p_stream::IncomingStreams> {
        let mut control = self.control.clone();
        Ok(control.accept(BLOCKEXC_PROTOCOL)?)
    }

    /// True once a connection of ours was closed.
    pub fn was_disconnected(&self) -> bool {
        self.closed.load(Ordering::SeqCst) > 0
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes `bytes` and flushes.
pub async fn write(stream: &mut libp2p::Stream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Reads every frame the node sends on `stream`, decoded, into `tx`.
pub fn read_messages(mut stream: libp2p::Stream, tx: mpsc::UnboundedSender<Message>) {
    tokio::spawn(async move {
        while let Ok(frame) = framing::read_frame(&mut stream, 8 << 20).await {
            let Ok(message) = Message::decode(frame) else {
                return;
            };
            if tx.send(message).is_err() {
                return;
            }
        }
    });
}

/// Every message the node sends us, on any stream it opens.
pub fn messages(id: &Identity) -> Fallible<mpsc::UnboundedReceiver<Message>> {
    let mut incoming = id.incoming()?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((_, stream)) = incoming.next().await {
            read_messages(stream, tx.clone());
        }
    });
    Ok(rx)
}

/// The framed bytes of a raw protobuf message.
pub fn frame(message: &wire::Message) -> Vec<u8> {
    framing::encode_frame(&prost::Message::encode_to_vec(message))
}

/// A raw standalone address for `cid_bytes` (any bytes at all).
pub fn raw_address(cid_bytes: Vec<u8>) -> wire::BlockAddress {
    wire::BlockAddress {
        leaf: Some(0),
        tree_cid: None,
        index: None,
        cid: Some(cid_bytes),
    }
}

/// The bytes of an identity-hash CIDv1 (codex-block) over `n`: a handful of bytes each.
pub fn identity_cid(n: u64) -> Vec<u8> {
    let payload = n.to_be_bytes();
    let mut out = vec![0x01, 0x82, 0x9a, 0x03, 0x00, payload.len() as u8];
    out.extend_from_slice(&payload);
    out
}

/// A real-looking codex-block CID number `n`.
pub fn block_cid(n: u64) -> Vec<u8> {
    cid_from_digest(BLOCK_CODEC, &sha256(&n.to_be_bytes())).to_bytes()
}

/// A want-list entry.
pub fn entry(address: wire::BlockAddress, have: bool, cancel: bool) -> wire::Entry {
    wire::Entry {
        address: Some(address),
        priority: Some(0),
        cancel: Some(u64::from(cancel)),
        want_type: Some(u64::from(have)),
        send_dont_have: Some(0),
    }
}

/// A message holding only `entries`.
pub fn wants(entries: Vec<wire::Entry>) -> wire::Message {
    wire::Message {
        wantlist: Some(wire::Wantlist {
            entries,
            full: Some(0),
        }),
        ..wire::Message::default()
    }
}

/// `message`'s frame with an unknown field of `pad` bytes appended (legal protobuf: decoders
/// skip field 15), as a peer that wants its frames kept alive would send it.
pub fn padded_frame(message: &Message, pad: usize) -> Vec<u8> {
    let mut body = message.encode();
    body.push(0x7a); // field 15, length-delimited
    prost::encoding::encode_varint(pad as u64, &mut body);
    body.resize(body.len() + pad, 0);
    framing::encode_frame(&body)
}

/// Reads and discards what a stream sends until it ends (keeps the node's writes flowing).
pub async fn drain(mut stream: libp2p::Stream) {
    let mut buf = vec![0u8; 64 * 1024];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// A Kademlia message, as far as `ADD_PROVIDER` needs it (libp2p's `dht.proto`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct KadMessage {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(bytes = "vec", tag = "2")]
    pub key: Vec<u8>,
    #[prost(message, repeated, tag = "9")]
    pub provider_peers: Vec<KadPeer>,
}

/// A peer in a Kademlia message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KadPeer {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub addrs: Vec<Vec<u8>>,
    #[prost(int32, tag = "3")]
    pub connection: i32,
}

/// `ADD_PROVIDER` (type 2) of `key` by `provider`, listing `addrs` addresses.
pub fn add_provider(key: Vec<u8>, provider: PeerId, addrs: usize) -> Vec<u8> {
    let addrs = (0..addrs)
        .map(|i| {
            let a: Multiaddr = format!("/ip4/203.0.113.{}/tcp/{}", i % 250, 1000 + i)
                .parse()
                .unwrap_or_else(|_| Multiaddr::empty());
            a.to_vec()
        })
        .collect();
    let m = KadMessage {
        r#type: 2,
        key,
        provider_peers: vec![KadPeer {
            id: provider.to_bytes(),
            addrs,
            connection: 0,
        }],
    };
    framing::encode_frame(&prost::Message::encode_to_vec(&m))
}

/// Opens a stream of `protocol` to `to`.
pub async fn open_protocol(
    id: &Identity,
    to: PeerId,
    protocol: libp2p::StreamProtocol,
) -> Fallible<libp2p::Stream> {
    let mut control = id.control.clone();
    Ok(control.open_stream(to, protocol).await?)
}
