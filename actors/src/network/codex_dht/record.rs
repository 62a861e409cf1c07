//! Signed peer records (SPRs) as Codex's DHT carries them.
//!
//! An SPR is a libp2p signed envelope (domain `libp2p-peer-record`, payload type `0x03 0x01`)
//! around a peer record: peer id, sequence number, multiaddrs. Codex's DHT uses it where
//! Ethereum's discv5 uses an ENR: in NODES replies, in handshakes, as the value of a provider
//! entry, and as text (`spr:` + unpadded base64url) in `--bootstrap-node` and `/spr`.
//!
//! Codex (codex-dht `spr.nim`) reads a node's UDP endpoint from the addresses like this: the IP
//! is the first address whose first part is `/ip4`, the port the first address whose second
//! part is `/udp`. This module reads them the same way, so that we reach a node where Codex
//! would. Codex's own `/spr` record holds exactly one address, `/ip4/<ip>/udp/<disc-port>`;
//! its provider records hold the TCP addresses instead.
//!
//! Every address we put in a record has at least two parts: codex-dht looks at the second part
//! of every address without checking that there is one.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
use base64::{alphabet, Engine as _};
use libp2p::core::{PeerRecord, SignedEnvelope};
use libp2p::identity::{secp256k1, Keypair};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use super::error::RecordError;
use super::node_id::NodeId;

/// The text prefix of an SPR.
pub const PREFIX: &str = "spr:";

/// Largest record accepted, in bytes. Codex's records are about 180 bytes with one address;
/// this leaves room for a dozen addresses and keeps a NODES or PROVIDERS reply bounded.
pub const MAX_RECORD_BYTES: usize = 1024;

const DOMAIN: &str = "libp2p-peer-record";
const PAYLOAD_TYPE: [u8; 2] = [0x03, 0x01];

/// Codex writes base64url without padding; padded text is accepted too.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A verified SPR: its bytes as received (re-sent unchanged) and what they say. Cloning is
/// cheap (shared), as records travel between the routing table, the provider store and
/// messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Spr(Arc<Inner>);

#[derive(PartialEq, Eq)]
struct Inner {
    bytes: Vec<u8>,
    peer_id: PeerId,
    node_id: NodeId,
    public_key: secp256k1::PublicKey,
    seq: u64,
    addrs: Vec<Multiaddr>,
}

impl std::fmt::Debug for Spr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spr")
            .field("peer_id", &self.0.peer_id)
            .field("seq", &self.0.seq)
            .field("addrs", &self.0.addrs)
            .finish()
    }
}

impl Spr {
    /// A new record for `key` over `addrs`, sequence number = unix seconds (as Codex).
    ///
    /// # Errors
    /// [`RecordError::KeyType`] for a key other than secp256k1; [`RecordError::Invalid`] for
    /// an address with fewer than two parts; [`RecordError::TooLarge`] past the bound.
    pub fn create(key: &Keypair, addrs: Vec<Multiaddr>) -> Result<Self, RecordError> {
        if key.clone().try_into_secp256k1().is_err() {
            return Err(RecordError::KeyType);
        }
        if addrs.iter().any(|a| a.iter().count() < 2) {
            return Err(RecordError::Invalid(
                "every address needs at least two parts".into(),
            ));
        }
        let record =
            PeerRecord::new_interop(key, addrs).map_err(|e| RecordError::Signing(e.to_string()))?;
        Self::from_bytes(&record.into_signed_envelope().into_protobuf_encoding())
    }

    /// Parses and verifies an envelope's protobuf bytes.
    ///
    /// # Errors
    /// [`RecordError`] names what is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge);
        }
        let envelope =
            SignedEnvelope::from_protobuf_encoding(bytes).map_err(|_| RecordError::Envelope)?;
        let key = envelope
            .payload_and_signing_key(DOMAIN.to_string(), &PAYLOAD_TYPE)
            .map_err(|e| RecordError::Invalid(e.to_string()))?
            .1
            .clone();
        let public_key = key.try_into_secp256k1().map_err(|_| RecordError::KeyType)?;
        // Checks the signature again and that the peer id is the signing key's.
        let record = PeerRecord::from_signed_envelope_interop(envelope)
            .map_err(|e| RecordError::Invalid(e.to_string()))?;
        let peer_id = record.peer_id();
        Ok(Spr(Arc::new(Inner {
            bytes: bytes.to_vec(),
            node_id: NodeId::from_peer_id(&peer_id),
            peer_id,
            public_key,
            seq: record.seq(),
            addrs: record.addresses().to_vec(),
        })))
    }

    /// Parses `spr:…` text.
    ///
    /// # Errors
    /// [`RecordError::Text`] for text that is not `spr:` + base64url; otherwise as
    /// [`Spr::from_bytes`].
    pub fn from_text(text: &str) -> Result<Self, RecordError> {
        let text = text.trim();
        // base64 grows by 4/3; anything longer cannot decode to an accepted record.
        if text.len() > PREFIX.len() + MAX_RECORD_BYTES * 4 / 3 + 4 {
            return Err(RecordError::TooLarge);
        }
        let b64 = text.strip_prefix(PREFIX).ok_or(RecordError::Text)?;
        let bytes = BASE64URL.decode(b64).map_err(|_| RecordError::Text)?;
        Self::from_bytes(&bytes)
    }

    /// The `spr:…` text form.
    pub fn to_text(&self) -> String {
        format!("{PREFIX}{}", BASE64URL.encode(&self.0.bytes))
    }

    /// The envelope bytes, exactly as signed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0.bytes
    }

    /// The peer the record is about (and signed by).
    pub fn peer_id(&self) -> PeerId {
        self.0.peer_id
    }

    /// The peer's node id in the DHT.
    pub fn node_id(&self) -> NodeId {
        self.0.node_id
    }

    /// The peer's secp256k1 key, used for the handshake.
    pub fn public_key(&self) -> &secp256k1::PublicKey {
        &self.0.public_key
    }

    /// The record's sequence number.
    pub fn seq(&self) -> u64 {
        self.0.seq
    }

    /// All addresses in the record.
    pub fn addrs(&self) -> &[Multiaddr] {
        &self.0.addrs
    }

    /// The UDP endpoint Codex would send to, read as codex-dht reads it (module doc).
    pub fn udp_addr(&self) -> Option<SocketAddrV4> {
        let ip = self.0.addrs.iter().find_map(|a| match a.iter().next() {
            Some(Protocol::Ip4(ip)) => Some(ip),
            _ => None,
        })?;
        let port = self.0.addrs.iter().find_map(|a| match a.iter().nth(1) {
            Some(Protocol::Udp(port)) => Some(port),
            _ => None,
        })?;
        Some(SocketAddrV4::new(ip, port))
    }

    /// The TCP addresses in the record: where block exchange can dial a provider.
    pub fn tcp_addrs(&self) -> Vec<Multiaddr> {
        self.0
            .addrs
            .iter()
            .filter(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))
            .cloned()
            .collect()
    }
}

/// `/ip4/<ip>/udp/<port>`, the shape of the address in Codex's DHT record.
pub fn udp_multiaddr(addr: SocketAddrV4) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4(*addr.ip()))
        .with(Protocol::Udp(addr.port()))
}

/// Whether `ip` may appear in a record received from `sender` (codex-dht `validIp`): never the
/// unspecified or a multicast address; loopback and private addresses only from a sender on
/// loopback or a private network. This stops a remote node from pointing us at local services.
pub fn plausible_ip(sender: Ipv4Addr, ip: Ipv4Addr) -> bool {
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        return false;
    }
    if ip.is_loopback() && !sender.is_loopback() {
        return false;
    }
    if ip.is_private() && !(sender.is_private() || sender.is_loopback()) {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `/spr` of a live Codex v0.2.5 node (disc port 28090 on loopback).
    const LIVE: &str = "spr:CiUIAhIhA4m9uh_OnEFJcSAiK603QR-QIPEkZhtvlFjNM4pOYl7yEgIDARo8CicAJQgCEiEDib26H86cQUlxICIrrTdBH5Ag8SRmG2-UWM0zik5iXvIQnp3Y2AYaCwoJBH8AAAGRAm26KkYwRAIgYPGB29ZA4dOx5ngdvlo_Hy3fpIJ3sLx-lL3TtfBJACoCIF3-wL58H6wvnQYg7MkfkJ53vbWBi3I2bYnPzGD2eLbi";

    #[test]
    fn parses_a_live_codex_record() {
        let spr = Spr::from_text(LIVE).unwrap();
        assert_eq!(
            spr.peer_id().to_string(),
            "16Uiu2HAmMvfzztg1MgpX7T4RFFgdrzA1kurjda8PhTr5CWKXqfdK"
        );
        assert_eq!(spr.addrs().len(), 1);
        assert_eq!(spr.udp_addr(), Some("127.0.0.1:28090".parse().unwrap()));
        assert!(spr.tcp_addrs().is_empty());
        assert!(spr.seq() > 1_700_000_000, "unix seconds");
        assert_eq!(spr.to_text(), LIVE);
    }

    #[test]
    fn our_record_round_trips_with_udp_first() {
        let key = Keypair::generate_secp256k1();
        let udp = udp_multiaddr("127.0.0.1:9000".parse().unwrap());
        let tcp: Multiaddr = "/ip4/127.0.0.1/tcp/9001".parse().unwrap();
        let spr = Spr::create(&key, vec![udp, tcp.clone()]).unwrap();
        let back = Spr::from_text(&spr.to_text()).unwrap();
        assert_eq!(back, spr);
        assert_eq!(back.udp_addr(), Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(back.tcp_addrs(), vec![tcp]);
        assert_eq!(
            back.node_id(),
            NodeId::from_peer_id(&key.public().to_peer_id())
        );
    }

    #[test]
    fn refuses_bad_records() {
        let ed = Keypair::generate_ed25519();
        assert_eq!(Spr::create(&ed, vec![]), Err(RecordError::KeyType));
        let key = Keypair::generate_secp256k1();
        let short: Multiaddr = "/ip4/127.0.0.1".parse().unwrap();
        assert!(matches!(
            Spr::create(&key, vec![short]),
            Err(RecordError::Invalid(_))
        ));
        assert_eq!(Spr::from_text("enr:abc"), Err(RecordError::Text));
        assert_eq!(Spr::from_text("spr:!!"), Err(RecordError::Text));
        assert_eq!(Spr::from_bytes(&[1, 2, 3]), Err(RecordError::Envelope));
        assert_eq!(
            Spr::from_bytes(&vec![0; MAX_RECORD_BYTES + 1]),
            Err(RecordError::TooLarge)
        );
        // A flipped bit inside the signed payload breaks the signature.
        let spr = Spr::from_text(LIVE).unwrap();
        let mut bytes = spr.as_bytes().to_vec();
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        assert!(Spr::from_bytes(&bytes).is_err());
    }

    #[test]
    fn plausible_ips_follow_the_sender() {
        let lo = Ipv4Addr::LOCALHOST;
        let public = Ipv4Addr::new(8, 8, 8, 8);
        assert!(plausible_ip(lo, lo));
        assert!(!plausible_ip(public, lo));
        assert!(!plausible_ip(public, Ipv4Addr::new(10, 0, 0, 1)));
        assert!(plausible_ip(public, Ipv4Addr::new(1, 1, 1, 1)));
        assert!(!plausible_ip(lo, Ipv4Addr::UNSPECIFIED));
    }
}
