//! Signed peer records (libp2p RFC 0002/0003) in Codex's text form: `spr:` followed by the
//! unpadded base64url of the signed envelope.
//!
//! The envelope uses the standard domain `libp2p-peer-record` and payload type `0x03 0x01`, which
//! libp2p-core calls the `*_interop` variants; its default methods still use a legacy domain
//! that nim-libp2p rejects. The payload holds the peer id, a sequence number (unix seconds) and
//! the multiaddrs. Codex's `/spr` shows its DHT record, whose address is the UDP discovery port,
//! not the TCP port block exchange listens on.

use base64::engine::{general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig};
use base64::{alphabet, Engine as _};
use libp2p::core::{PeerRecord, SignedEnvelope};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};

/// The text prefix of an SPR.
pub const PREFIX: &str = "spr:";

/// Longest SPR text parsed. Codex's records are a few hundred characters; a record that long
/// could hold dozens of addresses, so anything longer is refused unparsed.
pub const MAX_SPR_TEXT: usize = 4096;

/// Codex writes base64url without padding; padded text is accepted too, as it costs nothing.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why SPR text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SprError {
    /// No `spr:` prefix, too long, or not base64url.
    #[error("not SPR text")]
    Text,
    /// The bytes are not a signed envelope.
    #[error("not a signed envelope")]
    Envelope,
    /// Wrong domain or payload type, a bad signature, or a payload that is not a peer record.
    #[error("not a valid signed peer record: {0}")]
    Record(String),
    /// Our key could not sign.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Our record over `addrs`, signed with `key`, as `spr:…` text.
///
/// # Errors
/// [`SprError::Signing`] when the key cannot sign (it always can for secp256k1).
pub fn encode(key: &Keypair, addrs: Vec<Multiaddr>) -> Result<String, SprError> {
    let record =
        PeerRecord::new_interop(key, addrs).map_err(|e| SprError::Signing(e.to_string()))?;
    let bytes = record.into_signed_envelope().into_protobuf_encoding();
    Ok(format!("{PREFIX}{}", BASE64URL.encode(bytes)))
}

/// The peer id and addresses of a Codex SPR, after checking its signature.
///
/// # Errors
/// [`SprError`] names what is wrong.
pub fn decode(text: &str) -> Result<(PeerId, Vec<Multiaddr>), SprError> {
    let text = text.trim();
    if text.len() > MAX_SPR_TEXT {
        return Err(SprError::Text);
    }
    let b64 = text.strip_prefix(PREFIX).ok_or(SprError::Text)?;
    let bytes = BASE64URL.decode(b64).map_err(|_| SprError::Text)?;
    let envelope =
        SignedEnvelope::from_protobuf_encoding(&bytes).map_err(|_| SprError::Envelope)?;
    let record = PeerRecord::from_signed_envelope_interop(envelope)
        .map_err(|e| SprError::Record(e.to_string()))?;
    Ok((record.peer_id(), record.addresses().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_record_round_trips_and_uses_the_standard_domain() {
        let key = Keypair::generate_secp256k1();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().expect("addr");
        let text = encode(&key, vec![addr.clone()]).expect("signs");
        assert!(text.starts_with(PREFIX));
        assert!(!text.contains('=') && !text.contains('+') && !text.contains('/'));
        let (peer, addrs) = decode(&text).expect("parses");
        assert_eq!(peer, key.public().to_peer_id());
        assert_eq!(addrs, vec![addr]);

        let bytes = BASE64URL.decode(&text[PREFIX.len()..]).expect("b64");
        let envelope = SignedEnvelope::from_protobuf_encoding(&bytes).expect("envelope");
        assert!(envelope.verify("libp2p-peer-record".into()));
        assert!(!envelope.verify("libp2p-routing-state".into()));
    }

    #[test]
    fn legacy_domain_records_and_garbage_are_refused() {
        let key = Keypair::generate_secp256k1();
        let legacy = PeerRecord::new(&key, vec![])
            .expect("signs")
            .into_signed_envelope()
            .into_protobuf_encoding();
        let text = format!("{PREFIX}{}", BASE64URL.encode(legacy));
        assert!(matches!(decode(&text), Err(SprError::Record(_))));
        assert_eq!(decode("enr:abc"), Err(SprError::Text));
        assert_eq!(decode("spr:!!!"), Err(SprError::Text));
        assert_eq!(decode("spr:AAAA"), Err(SprError::Envelope));
        let long = format!("{PREFIX}{}", "A".repeat(MAX_SPR_TEXT));
        assert_eq!(decode(&long), Err(SprError::Text));
    }

    #[test]
    fn a_tampered_record_fails_its_signature() {
        let key = Keypair::generate_secp256k1();
        let addr: Multiaddr = "/ip4/127.0.0.1/udp/8090".parse().expect("addr");
        let text = encode(&key, vec![addr]).expect("signs");
        let mut bytes = BASE64URL.decode(&text[PREFIX.len()..]).expect("b64");
        // The port's last byte sits inside the payload, before the trailing signature.
        let port_at = bytes
            .windows(2)
            .rposition(|w| w == [0x1f, 0x9a])
            .expect("port 8090 in the payload");
        bytes[port_at + 1] ^= 1;
        let tampered = format!("{PREFIX}{}", BASE64URL.encode(bytes));
        assert!(matches!(decode(&tampered), Err(SprError::Record(_))));
    }
}
