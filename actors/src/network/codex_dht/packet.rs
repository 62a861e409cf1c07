//! discv5 v5.1 packet framing, unchanged in Codex.
//!
//! ```text
//! packet        = masking-iv (16) ‖ masked-header ‖ message
//! masked-header = AES-128-CTR(key = destination id[..16], iv = masking-iv, header)
//! header        = static-header (23) ‖ authdata
//! static-header = "discv5" ‖ version (2, = 1) ‖ flag (1) ‖ nonce (12) ‖ authdata-size (2)
//! ```
//! authdata by flag:
//! - 0, ordinary message: source id (32);
//! - 1, WHOAREYOU: id-nonce (16) ‖ record sequence number (8); no message follows;
//! - 2, handshake: source id (32) ‖ sig-size (1) ‖ key-size (1) ‖ id-signature ‖ ephemeral
//!   key ‖ the sender's SPR, only when the WHOAREYOU showed an older sequence number.
//!
//! The message is AES-128-GCM sealed with the masking IV and the *unmasked* header as
//! associated data. Decoding here never panics: every length is checked before it is used.
//! Decoding does not decrypt; that needs session state ([`super::codec`]).

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};

use super::crypto::{NONCE_LEN, TAG_LEN};
use super::error::PacketError;
use super::node_id::{NodeId, NODE_ID_LEN};

type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// The protocol id at the start of every header.
pub const PROTOCOL_ID: &[u8; 6] = b"discv5";
/// The only protocol version.
pub const VERSION: u16 = 1;
/// Masking IV length.
pub const IV_LEN: usize = 16;
/// Static header length.
pub const STATIC_HEADER_LEN: usize = 23;
/// WHOAREYOU id-nonce length.
pub const ID_NONCE_LEN: usize = 16;
const WHOAREYOU_AUTH_LEN: usize = ID_NONCE_LEN + 8;
const HANDSHAKE_HEAD_LEN: usize = NODE_ID_LEN + 2;
/// The smallest packet: a WHOAREYOU.
pub const MIN_PACKET: usize = IV_LEN + STATIC_HEADER_LEN + WHOAREYOU_AUTH_LEN;
/// The largest datagram accepted or sent. discv5 says 1280, but Codex sends bigger ones: a
/// PROVIDERS reply holds up to 20 records of about 200 bytes each in one packet.
pub const MAX_PACKET: usize = 16 * 1024;

/// What a packet's authdata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthData {
    /// Flag 0: an ordinary message from `src`.
    Message {
        /// The sender's node id.
        src: NodeId,
    },
    /// Flag 1: "who are you?", answering a message we could not decrypt.
    Whoareyou {
        /// Random bytes that make the challenge unique.
        id_nonce: [u8; ID_NONCE_LEN],
        /// The sequence number of our record that the sender holds (0: none).
        record_seq: u64,
    },
    /// Flag 2: a handshake, answering a WHOAREYOU, with a message.
    Handshake {
        /// The sender's node id.
        src: NodeId,
        /// The DER id-signature.
        signature: Vec<u8>,
        /// The ephemeral public key, libp2p protobuf encoding.
        ephemeral_key: Vec<u8>,
        /// The sender's SPR bytes, when sent.
        record: Option<Vec<u8>>,
    },
}

impl AuthData {
    fn flag(&self) -> u8 {
        match self {
            AuthData::Message { .. } => 0,
            AuthData::Whoareyou { .. } => 1,
            AuthData::Handshake { .. } => 2,
        }
    }

    fn encode(&self) -> Result<Vec<u8>, PacketError> {
        Ok(match self {
            AuthData::Message { src } => src.as_bytes().to_vec(),
            AuthData::Whoareyou {
                id_nonce,
                record_seq,
            } => {
                let mut v = id_nonce.to_vec();
                v.extend_from_slice(&record_seq.to_be_bytes());
                v
            }
            AuthData::Handshake {
                src,
                signature,
                ephemeral_key,
                record,
            } => {
                let sig_len = u8::try_from(signature.len()).map_err(|_| PacketError::AuthData)?;
                let key_len =
                    u8::try_from(ephemeral_key.len()).map_err(|_| PacketError::AuthData)?;
                let mut v = src.as_bytes().to_vec();
                v.push(sig_len);
                v.push(key_len);
                v.extend_from_slice(signature);
                v.extend_from_slice(ephemeral_key);
                if let Some(r) = record {
                    v.extend_from_slice(r);
                }
                v
            }
        })
    }

    fn decode(flag: u8, auth: &[u8]) -> Result<Self, PacketError> {
        match flag {
            0 => NodeId::from_slice(auth)
                .map(|src| AuthData::Message { src })
                .ok_or(PacketError::AuthData),
            1 => {
                if auth.len() != WHOAREYOU_AUTH_LEN {
                    return Err(PacketError::AuthData);
                }
                let mut id_nonce = [0u8; ID_NONCE_LEN];
                id_nonce.copy_from_slice(&auth[..ID_NONCE_LEN]);
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&auth[ID_NONCE_LEN..]);
                Ok(AuthData::Whoareyou {
                    id_nonce,
                    record_seq: u64::from_be_bytes(seq),
                })
            }
            2 => {
                if auth.len() < HANDSHAKE_HEAD_LEN {
                    return Err(PacketError::AuthData);
                }
                let src = NodeId::from_slice(&auth[..NODE_ID_LEN]).ok_or(PacketError::AuthData)?;
                let sig_len = usize::from(auth[NODE_ID_LEN]);
                let key_len = usize::from(auth[NODE_ID_LEN + 1]);
                let rest = &auth[HANDSHAKE_HEAD_LEN..];
                if rest.len() < sig_len + key_len || sig_len == 0 || key_len == 0 {
                    return Err(PacketError::AuthData);
                }
                let record = &rest[sig_len + key_len..];
                Ok(AuthData::Handshake {
                    src,
                    signature: rest[..sig_len].to_vec(),
                    ephemeral_key: rest[sig_len..sig_len + key_len].to_vec(),
                    record: (!record.is_empty()).then(|| record.to_vec()),
                })
            }
            other => Err(PacketError::Flag(other)),
        }
    }
}

/// A packet's header, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The GCM nonce of the message (for WHOAREYOU: the nonce of the packet it answers).
    pub nonce: [u8; NONCE_LEN],
    /// The flag-specific data.
    pub auth: AuthData,
}

impl Header {
    /// The unmasked header bytes: static header ‖ authdata.
    ///
    /// # Errors
    /// [`PacketError::AuthData`] when a field is too long for its length byte.
    pub fn encode(&self) -> Result<Vec<u8>, PacketError> {
        let auth = self.auth.encode()?;
        let auth_len = u16::try_from(auth.len()).map_err(|_| PacketError::AuthData)?;
        let mut out = Vec::with_capacity(STATIC_HEADER_LEN + auth.len());
        out.extend_from_slice(PROTOCOL_ID);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.push(self.auth.flag());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&auth_len.to_be_bytes());
        out.extend_from_slice(&auth);
        Ok(out)
    }
}

/// Masks (or unmasks: CTR is symmetric) header bytes for `dest`.
fn mask(dest: &NodeId, iv: &[u8; IV_LEN], bytes: &mut [u8]) {
    let mut key = [0u8; 16];
    key.copy_from_slice(&dest.as_bytes()[..16]);
    let mut cipher = Aes128Ctr::new(&key.into(), iv.into());
    cipher.apply_keystream(bytes);
}

/// Builds the datagram: IV, masked header, sealed message.
pub fn assemble(dest: &NodeId, iv: &[u8; IV_LEN], header: &[u8], sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(IV_LEN + header.len() + sealed.len());
    out.extend_from_slice(iv);
    let start = out.len();
    out.extend_from_slice(header);
    mask(dest, iv, &mut out[start..]);
    out.extend_from_slice(sealed);
    out
}

/// A received packet with its header unmasked; the message is still sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The masking IV (part of the GCM associated data and of WHOAREYOU challenge data).
    pub iv: [u8; IV_LEN],
    /// The parsed header.
    pub header: Header,
    /// The unmasked header bytes, as authenticated by GCM.
    pub header_bytes: Vec<u8>,
    /// The sealed message (empty for WHOAREYOU).
    pub sealed: &'a [u8],
}

impl Packet<'_> {
    /// GCM associated data: masking IV ‖ unmasked header. For a WHOAREYOU this is also the
    /// challenge data that keys and id-signature are bound to.
    pub fn authenticated_data(&self) -> Vec<u8> {
        let mut ad = self.iv.to_vec();
        ad.extend_from_slice(&self.header_bytes);
        ad
    }
}

/// Unmasks and parses a datagram addressed to `local`.
///
/// # Errors
/// [`PacketError`] for every malformed or truncated input; never panics.
pub fn decode<'a>(local: &NodeId, datagram: &'a [u8]) -> Result<Packet<'a>, PacketError> {
    if datagram.len() < MIN_PACKET {
        return Err(PacketError::TooShort);
    }
    if datagram.len() > MAX_PACKET {
        return Err(PacketError::TooLong);
    }
    let mut iv = [0u8; IV_LEN];
    iv.copy_from_slice(&datagram[..IV_LEN]);
    let mut key = [0u8; 16];
    key.copy_from_slice(&local.as_bytes()[..16]);
    let mut cipher = Aes128Ctr::new(&key.into(), (&iv).into());
    let mut header = datagram[IV_LEN..IV_LEN + STATIC_HEADER_LEN].to_vec();
    cipher.apply_keystream(&mut header);
    if &header[..6] != PROTOCOL_ID {
        return Err(PacketError::ProtocolId);
    }
    let version = u16::from_be_bytes([header[6], header[7]]);
    if version != VERSION {
        return Err(PacketError::Version(version));
    }
    let flag = header[8];
    if flag > 2 {
        return Err(PacketError::Flag(flag));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&header[9..21]);
    let auth_len = usize::from(u16::from_be_bytes([header[21], header[22]]));
    let auth_end = IV_LEN + STATIC_HEADER_LEN + auth_len;
    if datagram.len() < auth_end {
        return Err(PacketError::AuthData);
    }
    let mut auth = datagram[IV_LEN + STATIC_HEADER_LEN..auth_end].to_vec();
    // The keystream continues where the static header ended.
    cipher.apply_keystream(&mut auth);
    let parsed = AuthData::decode(flag, &auth)?;
    let sealed = &datagram[auth_end..];
    match parsed {
        AuthData::Whoareyou { .. } if !sealed.is_empty() => return Err(PacketError::MessageLength),
        AuthData::Message { .. } | AuthData::Handshake { .. } if sealed.len() < TAG_LEN => {
            return Err(PacketError::MessageLength)
        }
        _ => {}
    }
    header.extend_from_slice(&auth);
    Ok(Packet {
        iv,
        header: Header {
            nonce,
            auth: parsed,
        },
        header_bytes: header,
        sealed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::codex_dht::unhex;

    fn dest_b() -> NodeId {
        NodeId::from_slice(&unhex(
            "bbbb9d047f0488c0b5a93c1c3f2d8bafc7c8ff337024a55434a0d0555de64db9",
        ))
        .unwrap()
    }

    /// discv5 v5.1 wire test vector: the WHOAREYOU packet (masking and layout).
    #[test]
    fn whoareyou_vector() {
        let packet = unhex("00000000000000000000000000000000088b3d434277464933a1ccc59f5967ad1d6035f15e528627dde75cd68292f9e6c27d6b66c8100a873fcbaed4e16b8d");
        let p = decode(&dest_b(), &packet).unwrap();
        assert_eq!(p.header.nonce.to_vec(), unhex("0102030405060708090a0b0c"));
        assert_eq!(
            p.header.auth,
            AuthData::Whoareyou {
                id_nonce: unhex("0102030405060708090a0b0c0d0e0f10")
                    .try_into()
                    .unwrap(),
                record_seq: 0
            }
        );
        assert_eq!(
            p.authenticated_data(),
            unhex("000000000000000000000000000000006469736376350001010102030405060708090a0b0c00180102030405060708090a0b0c0d0e0f100000000000000000")
        );
        let header = p.header.encode().unwrap();
        assert_eq!(assemble(&dest_b(), &p.iv, &header, &[]), packet);
        let mut longer = packet.clone();
        longer.push(0);
        assert_eq!(decode(&dest_b(), &longer), Err(PacketError::MessageLength));
    }

    /// discv5 v5.1 wire test vector: the ordinary PING packet's header (its message is RLP
    /// and sealed for Ethereum's ids, so only the unmasking is checked here; codec_tests opens
    /// Codex's own ordinary packet vector).
    #[test]
    fn ordinary_message_vector() {
        let packet = unhex("00000000000000000000000000000000088b3d4342774649325f313964a39e55ea96c005ad52be8c7560413a7008f16c9e6d2f43bbea8814a546b7409ce783d34c4f53245d08dab84102ed931f66d1db57c785865ffccae8689057103acb15");
        let p = decode(&dest_b(), &packet).unwrap();
        assert_eq!(p.header.nonce, [0xff; 12]);
        assert_eq!(
            p.header.auth,
            AuthData::Message {
                src: NodeId::from_slice(&unhex(
                    "aaaa8419e9f49d0083561b48287df592939a8d19947d8c0ef88f2a4856a69fbb"
                ))
                .unwrap()
            }
        );
        assert_eq!(p.sealed.len(), 24);
    }

    #[test]
    fn malformed_headers_are_named() {
        let dest = dest_b();
        assert_eq!(decode(&dest, &[0; 10]), Err(PacketError::TooShort));
        assert_eq!(
            decode(&dest, &vec![0; MAX_PACKET + 1]),
            Err(PacketError::TooLong)
        );
        assert_eq!(
            decode(&dest, &[0; MIN_PACKET]),
            Err(PacketError::ProtocolId)
        );
        let iv = [7u8; IV_LEN];
        let mut h = Header {
            nonce: [1; 12],
            auth: AuthData::Message { src: dest },
        }
        .encode()
        .unwrap();
        h[8] = 3;
        assert_eq!(
            decode(&dest, &assemble(&dest, &iv, &h, &[0; 16])),
            Err(PacketError::Flag(3))
        );
        h[8] = 0;
        h[7] = 2;
        assert_eq!(
            decode(&dest, &assemble(&dest, &iv, &h, &[0; 16])),
            Err(PacketError::Version(2))
        );
        h[7] = 1;
        assert_eq!(
            decode(&dest, &assemble(&dest, &iv, &h, &[0; 15])),
            Err(PacketError::MessageLength)
        );
        // authdata-size pointing past the end.
        h[21] = 0xff;
        assert_eq!(
            decode(&dest, &assemble(&dest, &iv, &h, &[0; 16])),
            Err(PacketError::AuthData)
        );
    }

    #[test]
    fn handshake_authdata_round_trips() {
        let dest = dest_b();
        let header = Header {
            nonce: [9; 12],
            auth: AuthData::Handshake {
                src: NodeId::keccak(b"a"),
                signature: vec![0x30; 71],
                ephemeral_key: vec![8; 37],
                record: Some(vec![1, 2, 3]),
            },
        };
        let bytes = assemble(&dest, &[3; 16], &header.encode().unwrap(), &[0; 20]);
        let p = decode(&dest, &bytes).unwrap();
        assert_eq!(p.header, header);
        assert_eq!(p.sealed, &[0; 20]);
    }
}
