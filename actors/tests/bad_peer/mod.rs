//! The misbehaving peer of `exchange_bad_peers.rs`: a bare libp2p swarm on the same stack as
//! the engine that serves a dataset's manifest honestly, then answers the first request for
//! leaves with one kind of bad message ([`Misbehaviour`]) and behaves from then on, reporting
//! what it saw to the test.

use std::time::Duration;

use bytes::Bytes;
use codex_actors::{
    format::blockexc::{BlockAddress, BlockDelivery, BlockPresence, Message, WantType},
    network::net::{framing, BLOCKEXC_PROTOCOL},
    Multiaddr, PeerId,
};
use futures::{AsyncReadExt as _, StreamExt as _};
use libp2p::swarm::{dial_opts::DialOpts, SwarmEvent};
use tokio::sync::mpsc;

use crate::dataset::Dataset;
use crate::net_common::{self, TestResult};

/// One kind of bad answer to a request for leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// A leaf whose bytes do not hash to its CID (beside genuine ones in the same message).
    WrongBytes,
    /// The right leaf with a proof of the same index in another tree.
    WrongProof,
    /// A genuine leaf of another dataset, never asked for.
    Unrequested,
    /// A length prefix above the frame limit.
    OversizedFrame,
    /// A frame that is not protobuf.
    Garbage,
    /// Genuine leaves in a message whose first address has `leaf = 2`.
    EnumOutOfRange,
}

impl Misbehaviour {
    /// True when the network layer refuses the frame (a violation) rather than the exchange
    /// refusing a valid message.
    pub fn is_violation(self) -> bool {
        !matches!(self, Self::WrongProof | Self::Unrequested)
    }
}

/// A dataset of `len` bytes from `seed`, as Codex chunks and hashes it.
pub fn dataset(seed: u8, len: usize) -> TestResult<Dataset> {
    let data: Vec<u8> = (0..len)
        .map(|i| ((i * 131 + i / 7 + seed as usize * 17) % 251) as u8)
        .collect();
    Dataset::new(data)
}

/// What the bad peer saw happen.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// It sent its bad message.
    Misbehaved,
    /// The stream it sent the bad message on was closed by the node.
    StreamClosed,
    /// The node closed the connection.
    Disconnected,
}

/// The misbehaving peer: a bare libp2p swarm (TCP, Noise, yamux, raw streams) that dials the
/// node, reads its want lists and writes whatever it likes.
pub struct BadPeer {
    reports: mpsc::UnboundedReceiver<Report>,
    /// Reports received so far.
    seen: Vec<Report>,
}

impl BadPeer {
    pub async fn start(
        to: PeerId,
        addr: Multiaddr,
        dataset: Dataset,
        other: Dataset,
        how: Misbehaviour,
    ) -> TestResult<Self> {
        let mut swarm = net_common::raw_swarm()?;
        let mut control = swarm.behaviour().new_control();
        let mut incoming = control.accept(BLOCKEXC_PROTOCOL)?;
        let (report, reports) = mpsc::unbounded_channel();
        let (msg_tx, mut messages) = mpsc::unbounded_channel::<Message>();
        swarm.dial(DialOpts::peer_id(to).addresses(vec![addr]).build())?;
        let swarm_report = report.clone();
        tokio::spawn(async move {
            loop {
                if let SwarmEvent::ConnectionClosed {
                    num_established: 0, ..
                } = swarm.select_next_some().await
                {
                    let _ = swarm_report.send(Report::Disconnected);
                }
            }
        });
        // Every stream the node opens to us: its frames, decoded, go to the brain below.
        tokio::spawn(async move {
            while let Some((_, mut stream)) = incoming.next().await {
                let tx = msg_tx.clone();
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
        });
        tokio::spawn(async move {
            let mut brain = Brain {
                control,
                to,
                out: None,
                dataset,
                other,
                how,
                misbehaved: false,
                report,
            };
            while let Some(message) = messages.recv().await {
                if brain.on_message(message).await.is_err() {
                    brain.out = None; // reopened on the next write
                }
            }
        });
        Ok(Self {
            reports,
            seen: Vec::new(),
        })
    }

    /// Waits for `want` (or finds it among the reports seen so far).
    pub async fn expect(&mut self, want: Report) -> TestResult {
        let (reports, seen) = (&mut self.reports, &mut self.seen);
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            while !seen.contains(&want) {
                match reports.recv().await {
                    Some(r) => seen.push(r),
                    None => return false,
                }
            }
            true
        })
        .await;
        match found {
            Ok(true) => Ok(()),
            _ => Err(format!("the bad peer never saw {want:?}").into()),
        }
    }
}

/// The bad peer's message handling.
struct Brain {
    control: libp2p_stream::Control,
    to: PeerId,
    /// Our stream to the node, opened on the first write.
    out: Option<libp2p::Stream>,
    dataset: Dataset,
    /// Another dataset of the same shape, for wrong proofs and unrequested blocks.
    other: Dataset,
    how: Misbehaviour,
    misbehaved: bool,
    report: mpsc::UnboundedSender<Report>,
}

impl Brain {
    async fn write(&mut self, bytes: &[u8]) -> TestResult {
        if self.out.is_none() {
            self.out = Some(self.control.open_stream(self.to, BLOCKEXC_PROTOCOL).await?);
        }
        let out = self.out.as_mut().ok_or("no stream")?;
        futures::AsyncWriteExt::write_all(out, bytes).await?;
        futures::AsyncWriteExt::flush(out).await?;
        Ok(())
    }

    async fn send(&mut self, message: &Message) -> TestResult {
        self.write(&framing::encode_frame(&message.encode())).await
    }

    async fn on_message(&mut self, message: Message) -> TestResult {
        let mut haves = Vec::new();
        let mut blocks = Vec::new();
        for entry in message.wantlist.entries {
            if entry.cancel || !self.dataset.holds(&entry.address) {
                continue;
            }
            match entry.want_type {
                WantType::Have => haves.push(BlockPresence::have(entry.address)),
                WantType::Block => blocks.push(entry.address),
            }
        }
        if !haves.is_empty() {
            self.send(&Message {
                presences: haves,
                ..Message::default()
            })
            .await?;
        }
        let leaves: Vec<BlockAddress> = blocks
            .iter()
            .filter(|a| matches!(a, BlockAddress::Leaf { .. }))
            .cloned()
            .collect();
        if !leaves.is_empty() && !self.misbehaved {
            self.misbehaved = true;
            self.misbehave(&leaves).await?;
            blocks.retain(|a| !leaves.contains(a));
        }
        if self.misbehaved {
            // From then on it sends nothing more: whatever the node stores of X must come from
            // the good seeder, so the count below is exact even when a later request reaches it
            // before the disconnect does.
            return Ok(());
        }
        for chunk in blocks.chunks(20) {
            let deliveries = chunk
                .iter()
                .filter_map(|a| self.dataset.delivery(a))
                .collect();
            self.send(&Message {
                deliveries,
                ..Message::default()
            })
            .await?;
        }
        Ok(())
    }

    /// Answers the first request for `leaves` badly, then watches what the node does with the
    /// stream it came on.
    async fn misbehave(&mut self, leaves: &[BlockAddress]) -> TestResult {
        let genuine: Vec<BlockDelivery> = leaves
            .iter()
            .take(3)
            .filter_map(|a| self.dataset.delivery(a))
            .collect();
        let first = genuine.first().cloned().ok_or("no leaf to answer")?;
        let frame = match self.how {
            Misbehaviour::WrongBytes => {
                let mut data = first.data.to_vec();
                data[100] ^= 0xff;
                let mut deliveries = genuine.clone();
                deliveries[0].data = Bytes::from(data);
                framing::encode_frame(
                    &Message {
                        deliveries,
                        ..Message::default()
                    }
                    .encode(),
                )
            }
            Misbehaviour::WrongProof => {
                let BlockAddress::Leaf { index, .. } = first.address else {
                    return Err("not a leaf".into());
                };
                let bad = BlockDelivery {
                    proof: self.other.proof(index),
                    ..first
                };
                framing::encode_frame(
                    &Message {
                        deliveries: vec![bad],
                        ..Message::default()
                    }
                    .encode(),
                )
            }
            Misbehaviour::Unrequested => {
                let address = BlockAddress::Leaf {
                    tree: self.other.tree,
                    index: 0,
                };
                let stray = self.other.delivery(&address).ok_or("no leaf")?;
                assert!(stray.is_authentic());
                framing::encode_frame(
                    &Message {
                        deliveries: vec![stray],
                        ..Message::default()
                    }
                    .encode(),
                )
            }
            Misbehaviour::OversizedFrame => {
                let mut prefix = Vec::new();
                prost::encoding::encode_varint(5 << 20, &mut prefix);
                prefix.extend_from_slice(&[0u8; 64]);
                prefix
            }
            Misbehaviour::Garbage => framing::encode_frame(&[0xff; 40]),
            Misbehaviour::EnumOutOfRange => {
                let mut wire = Message {
                    deliveries: genuine,
                    ..Message::default()
                }
                .to_wire();
                if let Some(a) = wire.payload[0].address.as_mut() {
                    a.leaf = Some(2);
                }
                framing::encode_frame(&prost::Message::encode_to_vec(&wire))
            }
        };
        self.write(&frame).await?;
        let _ = self.report.send(Report::Misbehaved);
        // Watch the stream: the node must close (reset) it after a violation.
        if let Some(mut stream) = self.out.take().filter(|_| self.how.is_violation()) {
            let report = self.report.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            let _ = report.send(Report::StreamClosed);
                            return;
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
        Ok(())
    }
}
