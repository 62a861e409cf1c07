//! Turning messages into datagrams and back, with the handshake in between.
//!
//! Sending to a peer we have no session with, we send a packet of random bytes under a real
//! header (as codex-dht does); the peer cannot open it and answers WHOAREYOU; we answer that
//! with a handshake packet that carries the original message, sealed with the new keys.
//! Messages for the same peer that come while that is under way wait here (a few per peer) and
//! go out right after the handshake, because Codex answers only the first of several
//! undecryptable packets from one peer with a WHOAREYOU and drops the others.
//!
//! Receiving a packet we cannot open, the service may answer with [`Codec::whoareyou`]; the
//! handshake that answers it is checked here: the challenge must be ours and unused, the
//! id-signature must verify with the key from the sender's record (or the one we knew), the
//! message must decrypt. Only then is the session stored.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libp2p::identity::{secp256k1, Keypair};

use super::crypto::{self, Ephemeral, NONCE_LEN, TAG_LEN};
use super::error::PacketError;
use super::message::Message;
use super::node_id::NodeId;
use super::packet::{self, AuthData, Header, Packet, ID_NONCE_LEN, IV_LEN};
use super::record::Spr;
use super::session::{Challenge, Challenges, PeerKey, Sessions};

/// Messages waiting per peer for a handshake to finish.
const MAX_QUEUED_PER_PEER: usize = 8;

/// Where to send and how to seal: a peer's id, UDP address and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its node id.
    pub id: NodeId,
    /// Its UDP address.
    pub addr: SocketAddr,
    /// Its secp256k1 key (from its record); needed only to answer its WHOAREYOU, so a reply
    /// to a peer whose record we lack can go without.
    pub public_key: Option<secp256k1::PublicKey>,
}

/// What a received datagram means.
#[derive(Debug)]
pub enum Inbound {
    /// A message from `src`; `record` is the SPR that came with a handshake.
    Message {
        /// The sender's node id.
        src: NodeId,
        /// The message.
        message: Message,
        /// The sender's record, when it sent one in a handshake.
        record: Option<Spr>,
    },
    /// A packet from `src` that no session opens: answer with a WHOAREYOU.
    Undecryptable {
        /// Who claims to have sent it.
        src: NodeId,
        /// Its nonce, echoed in the WHOAREYOU.
        nonce: [u8; NONCE_LEN],
    },
    /// Datagrams to send back (a handshake, then queued messages).
    Send(Vec<Vec<u8>>),
}

/// A packet we sent that a WHOAREYOU may answer.
struct Sent {
    peer: Peer,
    plain: Vec<u8>,
    expires: Instant,
}

/// Limits of the codec's tables.
#[derive(Debug, Clone, Copy)]
pub struct CodecLimits {
    /// Sessions kept (least recently used evicted).
    pub sessions: usize,
    /// WHOAREYOU challenges pending at once.
    pub challenges: usize,
    /// Sent packets remembered for a possible WHOAREYOU.
    pub sent: usize,
    /// How long a challenge or a sent packet is remembered.
    pub handshake_timeout: Duration,
}

/// The packet layer's state; owned by the service task alone.
pub struct Codec {
    key: Keypair,
    secret: k256::SecretKey,
    local: NodeId,
    record: Spr,
    sessions: Sessions,
    challenges: Challenges,
    sent: HashMap<[u8; NONCE_LEN], Sent>,
    queued: HashMap<PeerKey, (Instant, Vec<Vec<u8>>)>,
    limits: CodecLimits,
}

impl Codec {
    /// A codec for `key`, announcing `record` in handshakes.
    ///
    /// # Errors
    /// [`PacketError::EphemeralKey`] if `key` is not secp256k1.
    pub fn new(key: Keypair, record: Spr, limits: CodecLimits) -> Result<Self, PacketError> {
        let pair = key
            .clone()
            .try_into_secp256k1()
            .map_err(|_| PacketError::EphemeralKey)?;
        let secret = crypto::secret_of(pair.secret()).ok_or(PacketError::EphemeralKey)?;
        Ok(Codec {
            local: NodeId::from_peer_id(&key.public().to_peer_id()),
            key,
            secret,
            record,
            sessions: Sessions::new(limits.sessions),
            challenges: Challenges::new(limits.challenges),
            sent: HashMap::new(),
            queued: HashMap::new(),
            limits,
        })
    }

    /// Our node id.
    pub fn local_id(&self) -> NodeId {
        self.local
    }

    /// Our record.
    pub fn record(&self) -> &Spr {
        &self.record
    }

    /// Announces `record` from now on: in handshakes with peers that hold an older one, and
    /// (through the service) in PONG's sequence number and FINDNODE at distance 0.
    pub fn set_record(&mut self, record: Spr) {
        self.record = record;
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Forgets expired challenges, sent packets and queues.
    pub fn sweep(&mut self, now: Instant) {
        self.challenges.sweep(now);
        self.sent.retain(|_, s| s.expires > now);
        let timeout = self.limits.handshake_timeout;
        self.queued.retain(|_, (since, _)| *since + timeout > now);
    }

    /// Datagrams carrying `plain` (an encoded [`Message`]) to `peer`: sealed if we have a
    /// session, otherwise a random packet that starts a handshake. Empty when the message has
    /// to wait for a handshake under way, or the tables are full.
    pub fn seal(&mut self, peer: &Peer, plain: Vec<u8>, now: Instant) -> Vec<Vec<u8>> {
        let key = (peer.id, peer.addr);
        if !self.sessions.contains(&key) {
            if let Some((since, queue)) = self.queued.get_mut(&key) {
                if *since + self.limits.handshake_timeout > now {
                    if queue.len() < MAX_QUEUED_PER_PEER {
                        queue.push(plain);
                    }
                    return Vec::new();
                }
            }
            self.queued.insert(key, (now, Vec::new()));
        }
        let nonce: [u8; NONCE_LEN] = rand::random();
        let iv: [u8; IV_LEN] = rand::random();
        let header = Header {
            nonce,
            auth: AuthData::Message { src: self.local },
        };
        let Ok(header_bytes) = header.encode() else {
            return Vec::new();
        };
        let sealed = match self.sessions.get_mut(&key) {
            Some(session) => {
                let mut ad = iv.to_vec();
                ad.extend_from_slice(&header_bytes);
                crypto::encrypt(&session.write, &nonce, &plain, &ad)
            }
            // The smallest PING is 4 bytes, plus the tag: a random packet of that size.
            None => (0..TAG_LEN + 4).map(|_| rand::random::<u8>()).collect(),
        };
        self.remember_sent(nonce, peer.clone(), plain, now);
        vec![packet::assemble(&peer.id, &iv, &header_bytes, &sealed)]
    }

    fn remember_sent(&mut self, nonce: [u8; NONCE_LEN], peer: Peer, plain: Vec<u8>, now: Instant) {
        if self.sent.len() >= self.limits.sent {
            self.sent.retain(|_, s| s.expires > now);
        }
        if self.sent.len() < self.limits.sent {
            let expires = now + self.limits.handshake_timeout;
            self.sent.insert(
                nonce,
                Sent {
                    peer,
                    plain,
                    expires,
                },
            );
        }
    }

    /// A WHOAREYOU for `src` at `addr`, answering the packet with `nonce`; `None` if one is
    /// already pending for that peer or the challenge table is full. `known` is the peer's
    /// record if we have it: its sequence number tells the peer it need not send it again.
    pub fn whoareyou(
        &mut self,
        src: NodeId,
        addr: SocketAddr,
        nonce: [u8; NONCE_LEN],
        known: Option<&Spr>,
        now: Instant,
    ) -> Option<Vec<u8>> {
        let key = (src, addr);
        if self.challenges.pending(&key, now) {
            return None;
        }
        let id_nonce: [u8; ID_NONCE_LEN] = rand::random();
        let iv: [u8; IV_LEN] = rand::random();
        let header = Header {
            nonce,
            auth: AuthData::Whoareyou {
                id_nonce,
                record_seq: known.map_or(0, Spr::seq),
            },
        };
        let header_bytes = header.encode().ok()?;
        let mut data = iv.to_vec();
        data.extend_from_slice(&header_bytes);
        let challenge = Challenge {
            data,
            known_key: known.map(|r| r.public_key().clone()),
            expires: now + self.limits.handshake_timeout,
        };
        if !self.challenges.insert(key, challenge, now) {
            return None;
        }
        // WHOAREYOU is masked with the id of the node it goes to.
        Some(packet::assemble(&src, &iv, &header_bytes, &[]))
    }

    /// Opens a datagram from `from`.
    ///
    /// # Errors
    /// [`PacketError`] for anything malformed, forged, replayed or unsolicited.
    pub fn open(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) -> Result<Inbound, PacketError> {
        let packet = packet::decode(&self.local, datagram)?;
        match packet.header.auth.clone() {
            AuthData::Message { src } => self.open_message(from, src, &packet),
            AuthData::Whoareyou { record_seq, .. } => {
                self.answer_whoareyou(from, &packet, record_seq, now)
            }
            AuthData::Handshake {
                src,
                signature,
                ephemeral_key,
                record,
            } => self.open_handshake(from, src, &packet, &signature, &ephemeral_key, record, now),
        }
    }

    fn open_message(
        &mut self,
        from: SocketAddr,
        src: NodeId,
        packet: &Packet<'_>,
    ) -> Result<Inbound, PacketError> {
        let nonce = packet.header.nonce;
        let undecryptable = Inbound::Undecryptable { src, nonce };
        let Some(session) = self.sessions.get_mut(&(src, from)) else {
            return Ok(undecryptable);
        };
        let ad = packet.authenticated_data();
        let plain = match crypto::decrypt(&session.read, &nonce, packet.sealed, &ad) {
            Ok(p) => p,
            Err(_) => match session
                .previous_read
                .map(|k| crypto::decrypt(&k, &nonce, packet.sealed, &ad))
            {
                Some(Ok(p)) => p,
                // The peer lost our session, or this is garbage: start over with a WHOAREYOU.
                _ => return Ok(undecryptable),
            },
        };
        if !session.accept_nonce(&nonce) {
            return Err(PacketError::Replay);
        }
        Ok(Inbound::Message {
            src,
            message: Message::decode(&plain)?,
            record: None,
        })
    }

    fn answer_whoareyou(
        &mut self,
        from: SocketAddr,
        packet: &Packet<'_>,
        record_seq: u64,
        now: Instant,
    ) -> Result<Inbound, PacketError> {
        let sent = self
            .sent
            .remove(&packet.header.nonce)
            .filter(|s| s.expires > now && s.peer.addr == from)
            .ok_or(PacketError::UnsolicitedWhoareyou)?;
        let peer = sent.peer;
        let challenge_data = packet.authenticated_data();
        let eph = Ephemeral::generate()?;
        let signature = crypto::sign_id(&self.key, &challenge_data, &eph.encoded, &peer.id)?;
        let remote = peer
            .public_key
            .as_ref()
            .and_then(crypto::public_of)
            .ok_or(PacketError::MissingRecord)?;
        let keys = crypto::derive_keys(
            &crypto::ecdh(&eph.secret, &remote),
            &challenge_data,
            &self.local,
            &peer.id,
        );
        let nonce: [u8; NONCE_LEN] = rand::random();
        let iv: [u8; IV_LEN] = rand::random();
        let header = Header {
            nonce,
            auth: AuthData::Handshake {
                src: self.local,
                signature,
                ephemeral_key: eph.encoded,
                record: (record_seq < self.record.seq()).then(|| self.record.as_bytes().to_vec()),
            },
        };
        let header_bytes = header.encode()?;
        let mut ad = iv.to_vec();
        ad.extend_from_slice(&header_bytes);
        let sealed = crypto::encrypt(&keys.initiator, &nonce, &sent.plain, &ad);
        let key = (peer.id, peer.addr);
        self.sessions.insert(key, keys.recipient, keys.initiator);
        // Remembered too: if the peer cannot open the handshake it answers WHOAREYOU again.
        self.remember_sent(nonce, peer.clone(), sent.plain, now);
        let mut out = vec![packet::assemble(&peer.id, &iv, &header_bytes, &sealed)];
        if let Some((_, queue)) = self.queued.remove(&key) {
            for plain in queue {
                out.extend(self.seal(&peer, plain, now));
            }
        }
        Ok(Inbound::Send(out))
    }

    #[allow(clippy::too_many_arguments)]
    fn open_handshake(
        &mut self,
        from: SocketAddr,
        src: NodeId,
        packet: &Packet<'_>,
        signature: &[u8],
        ephemeral_key: &[u8],
        record: Option<Vec<u8>>,
        now: Instant,
    ) -> Result<Inbound, PacketError> {
        let key = (src, from);
        let challenge = self
            .challenges
            .take(&key, now)
            .ok_or(PacketError::NoChallenge)?;
        let ephemeral = crypto::decode_ephemeral(ephemeral_key)?;
        let record = record.map(|r| Spr::from_bytes(&r)).transpose()?;
        let signer = match (&record, &challenge.known_key) {
            (Some(r), _) if r.node_id() != src => return Err(PacketError::RecordMismatch),
            (Some(r), _) => r.public_key().clone(),
            (None, Some(k)) => k.clone(),
            (None, None) => return Err(PacketError::MissingRecord),
        };
        if !crypto::verify_id(
            &signer,
            signature,
            &challenge.data,
            ephemeral_key,
            &self.local,
        ) {
            return Err(PacketError::IdSignature);
        }
        let keys = crypto::derive_keys(
            &crypto::ecdh(&self.secret, &ephemeral),
            &challenge.data,
            &src,
            &self.local,
        );
        let plain = crypto::decrypt(
            &keys.initiator,
            &packet.header.nonce,
            packet.sealed,
            &packet.authenticated_data(),
        )?;
        let message = Message::decode(&plain)?;
        self.sessions.insert(key, keys.initiator, keys.recipient);
        if let Some(s) = self.sessions.get_mut(&key) {
            s.accept_nonce(&packet.header.nonce);
        }
        Ok(Inbound::Message {
            src,
            message,
            record,
        })
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
