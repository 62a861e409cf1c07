//! Message bodies: one type byte, then protobuf `{1: request id (≤ 8 bytes), 2: inner}`.
//!
//! The inner messages follow codex-dht's `messages_encoding.nim` and `providers_encoding.nim`:
//! - PING `{1: sprSeq}`; PONG `{1: sprSeq, 2: {1: family byte, 2: address bytes}, 3: port as
//!   2 bytes big-endian}`; the family byte is Nim's `IpAddressFamily` ordinal: IPv6 = 0,
//!   IPv4 = 1.
//! - FINDNODE `{1: repeated distance as 2 bytes big-endian}`; NODES `{1: total, 2: repeated
//!   SPR}`; FINDNODE_FAST `{1: 32-byte target}`.
//! - TALKREQ `{1: protocol, 2: request}`; TALKRESP `{2: response}` (field 2, not 1).
//! - ADD_PROVIDER `{1: 32-byte key, 2: SPR}`; GET_PROVIDERS `{1: key}`; PROVIDERS `{1: total,
//!   2: repeated SPR}`.
//!
//! Every field is written even when zero or empty, because Codex requires them (see
//! `protobuf`). Decoding checks sizes and counts so that a reply cannot make us hold more
//! than [`MAX_RECORDS_PER_MESSAGE`] records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::MessageError;
use super::node_id::NodeId;
use super::protobuf::{self, Writer};
use super::record::Spr;

/// Request ids are at most 8 bytes (discv5); Codex refuses longer ones.
pub const MAX_REQUEST_ID: usize = 8;

/// Most records one NODES or PROVIDERS message may carry. Codex sends 3 per NODES message and
/// at most 20 providers per key in one PROVIDERS message; 32 leaves slack, and a message over
/// it is dropped whole.
pub const MAX_RECORDS_PER_MESSAGE: usize = 32;

/// Most distances one FINDNODE may ask for; discv5 allows all 257, Codex sends 3.
pub const MAX_DISTANCES: usize = 32;

/// Most bytes of a TALKREQ protocol name, request or response.
pub const MAX_TALK_BYTES: usize = 1024;

/// A request id as sent: up to 8 opaque bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RequestId {
    len: u8,
    bytes: [u8; MAX_REQUEST_ID],
}

impl RequestId {
    /// A random 8-byte id, as Codex makes them.
    pub fn random() -> Self {
        RequestId {
            len: MAX_REQUEST_ID as u8,
            bytes: rand::random(),
        }
    }

    /// An id from bytes; `None` when longer than 8.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > MAX_REQUEST_ID {
            return None;
        }
        let mut id = RequestId {
            len: bytes.len() as u8,
            bytes: [0; MAX_REQUEST_ID],
        };
        id.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(id)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestId(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// One message of Codex's DHT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// 0x01: are you there?
    Ping {
        /// The sender's record sequence number.
        spr_seq: u64,
    },
    /// 0x02: yes.
    Pong {
        /// The sender's record sequence number.
        spr_seq: u64,
        /// The IP the request came from, as the responder saw it.
        ip: IpAddr,
        /// The port it came from.
        port: u16,
    },
    /// 0x03: the nodes at these log distances from you.
    FindNode {
        /// Log distances, 0 (the responder itself) to 256.
        distances: Vec<u16>,
    },
    /// 0x04: one of `total` messages answering a FINDNODE.
    Nodes {
        /// How many NODES messages answer the request.
        total: u32,
        /// Records in this one.
        records: Vec<Spr>,
    },
    /// 0x05: an application request.
    TalkReq {
        /// The application protocol.
        protocol: Vec<u8>,
        /// Its request.
        request: Vec<u8>,
    },
    /// 0x06: its answer (empty for an unknown protocol).
    TalkResp {
        /// The answer.
        response: Vec<u8>,
    },
    /// 0x0B: keep this provider record for this key (no answer).
    AddProvider {
        /// The content key.
        key: NodeId,
        /// The provider's record (Codex sends the one with its TCP addresses).
        record: Spr,
    },
    /// 0x0C: who provides this key?
    GetProviders {
        /// The content key.
        key: NodeId,
    },
    /// 0x0D: these do.
    Providers {
        /// Always 1 from Codex: everything comes in one message.
        total: u32,
        /// The provider records.
        records: Vec<Spr>,
    },
    /// 0x83: the nodes you know closest to this id.
    FindNodeFast {
        /// The id.
        target: NodeId,
    },
}

impl Body {
    /// The type byte on the wire.
    pub fn kind(&self) -> u8 {
        match self {
            Body::Ping { .. } => 0x01,
            Body::Pong { .. } => 0x02,
            Body::FindNode { .. } => 0x03,
            Body::Nodes { .. } => 0x04,
            Body::TalkReq { .. } => 0x05,
            Body::TalkResp { .. } => 0x06,
            Body::AddProvider { .. } => 0x0b,
            Body::GetProviders { .. } => 0x0c,
            Body::Providers { .. } => 0x0d,
            Body::FindNodeFast { .. } => 0x83,
        }
    }

    /// Whether this message answers a request (and so must match one we sent).
    pub fn is_response(&self) -> bool {
        matches!(
            self,
            Body::Pong { .. } | Body::Nodes { .. } | Body::TalkResp { .. } | Body::Providers { .. }
        )
    }

    fn encode_inner(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Body::Ping { spr_seq } => w.varint(1, *spr_seq),
            Body::Pong { spr_seq, ip, port } => {
                let ip = match ip {
                    IpAddr::V4(v4) => Writer::new().bytes(1, &[1]).bytes(2, &v4.octets()).finish(),
                    IpAddr::V6(v6) => Writer::new().bytes(1, &[0]).bytes(2, &v6.octets()).finish(),
                };
                w.varint(1, *spr_seq)
                    .bytes(2, &ip)
                    .bytes(3, &port.to_be_bytes())
            }
            Body::FindNode { distances } => {
                for d in distances {
                    w.bytes(1, &d.to_be_bytes());
                }
                &mut w
            }
            Body::Nodes { total, records } | Body::Providers { total, records } => {
                w.varint(1, u64::from(*total));
                for r in records {
                    w.bytes(2, r.as_bytes());
                }
                &mut w
            }
            Body::TalkReq { protocol, request } => w.bytes(1, protocol).bytes(2, request),
            Body::TalkResp { response } => w.bytes(2, response),
            Body::AddProvider { key, record } => {
                w.bytes(1, key.as_bytes()).bytes(2, record.as_bytes())
            }
            Body::GetProviders { key } => w.bytes(1, key.as_bytes()),
            Body::FindNodeFast { target } => w.bytes(1, target.as_bytes()),
        };
        w.finish()
    }
}

/// A message with its request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Pairs a response with its request.
    pub request_id: RequestId,
    /// What it says.
    pub body: Body,
}

impl Message {
    /// The plaintext that gets encrypted into a packet.
    pub fn encode(&self) -> Vec<u8> {
        let inner = self.body.encode_inner();
        let mut out = vec![self.body.kind()];
        out.extend(
            Writer::new()
                .bytes(1, self.request_id.as_bytes())
                .bytes(2, &inner)
                .finish(),
        );
        out
    }

    /// Parses a decrypted plaintext, checking every bound.
    ///
    /// # Errors
    /// [`MessageError`] names the first problem found.
    pub fn decode(plain: &[u8]) -> Result<Self, MessageError> {
        let (&kind, rest) = plain.split_first().ok_or(MessageError::Empty)?;
        // The type is checked first: topic messages (0x07–0x0A) and anything else are refused
        // before their contents are looked at.
        if !matches!(kind, 0x01..=0x06 | 0x0b..=0x0d | 0x83) {
            return Err(MessageError::UnknownType(kind));
        }
        let outer = protobuf::fields(rest)?;
        let request_id = protobuf::bytes(&outer, 1)
            .and_then(RequestId::from_slice)
            .ok_or(MessageError::RequestId)?;
        let inner = protobuf::bytes(&outer, 2).ok_or(MessageError::Field("message"))?;
        let f = protobuf::fields(inner)?;
        let body = match kind {
            0x01 => Body::Ping {
                spr_seq: protobuf::varint(&f, 1).ok_or(MessageError::Field("sprSeq"))?,
            },
            0x02 => decode_pong(&f)?,
            0x03 => {
                let raw = protobuf::repeated(&f, 1);
                if raw.len() > MAX_DISTANCES {
                    return Err(MessageError::Oversized("distances"));
                }
                let distances = raw
                    .iter()
                    .map(|d| <[u8; 2]>::try_from(*d).map(u16::from_be_bytes))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| MessageError::Field("distance"))?;
                if distances.is_empty() {
                    return Err(MessageError::Field("distances"));
                }
                Body::FindNode { distances }
            }
            0x04 | 0x0d => {
                let total = protobuf::varint(&f, 1).ok_or(MessageError::Field("total"))?;
                let total = u32::try_from(total).map_err(|_| MessageError::Field("total"))?;
                let records = records(&f)?;
                if kind == 0x04 {
                    Body::Nodes { total, records }
                } else {
                    Body::Providers { total, records }
                }
            }
            0x05 => Body::TalkReq {
                protocol: talk_bytes(&f, 1, "protocol")?,
                request: talk_bytes(&f, 2, "request")?,
            },
            0x06 => Body::TalkResp {
                response: talk_bytes(&f, 2, "response")?,
            },
            0x0b => Body::AddProvider {
                key: key_field(&f)?,
                record: Spr::from_bytes(
                    protobuf::bytes(&f, 2).ok_or(MessageError::Field("provider"))?,
                )?,
            },
            0x0c => Body::GetProviders {
                key: key_field(&f)?,
            },
            _ => Body::FindNodeFast {
                target: key_field(&f)?,
            },
        };
        Ok(Message { request_id, body })
    }
}

fn decode_pong(f: &[protobuf::Field<'_>]) -> Result<Body, MessageError> {
    let spr_seq = protobuf::varint(f, 1).ok_or(MessageError::Field("sprSeq"))?;
    let ip_msg = protobuf::fields(protobuf::bytes(f, 2).ok_or(MessageError::Field("ip"))?)?;
    let family = protobuf::bytes(&ip_msg, 1).ok_or(MessageError::Field("family"))?;
    let addr = protobuf::bytes(&ip_msg, 2).ok_or(MessageError::Field("address"))?;
    let ip = match (family, addr.len()) {
        ([1], 4) => IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(addr).map_err(|_| MessageError::Field("address"))?,
        )),
        ([0], 16) => IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(addr).map_err(|_| MessageError::Field("address"))?,
        )),
        _ => return Err(MessageError::Field("address")),
    };
    let port = protobuf::bytes(f, 3)
        .and_then(|p| <[u8; 2]>::try_from(p).ok())
        .map(u16::from_be_bytes)
        .ok_or(MessageError::Field("port"))?;
    Ok(Body::Pong { spr_seq, ip, port })
}

fn records(f: &[protobuf::Field<'_>]) -> Result<Vec<Spr>, MessageError> {
    let raw = protobuf::repeated(f, 2);
    if raw.len() > MAX_RECORDS_PER_MESSAGE {
        return Err(MessageError::Oversized("records"));
    }
    // Like Codex, one bad record spoils the message: it came from one sender who sent garbage.
    Ok(raw
        .into_iter()
        .map(Spr::from_bytes)
        .collect::<Result<Vec<_>, _>>()?)
}

fn key_field(f: &[protobuf::Field<'_>]) -> Result<NodeId, MessageError> {
    protobuf::bytes(f, 1)
        .and_then(NodeId::from_slice)
        .ok_or(MessageError::Field("key"))
}

fn talk_bytes(
    f: &[protobuf::Field<'_>],
    n: u32,
    name: &'static str,
) -> Result<Vec<u8>, MessageError> {
    let b = protobuf::bytes(f, n).ok_or(MessageError::Field(name))?;
    if b.len() > MAX_TALK_BYTES {
        return Err(MessageError::Oversized(name));
    }
    Ok(b.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::network::codex_dht::unhex;

    fn id1() -> RequestId {
        RequestId::from_slice(&[1]).unwrap()
    }

    /// Vectors from codex-dht's own encoding tests (`test_discoveryv5_encoding.nim`).
    #[test]
    fn encodes_like_codex() {
        let cases = [
            (Body::Ping { spr_seq: 1 }, "010a010112020801"),
            (
                Body::Pong {
                    spr_seq: 1,
                    ip: "127.0.0.1".parse().unwrap(),
                    port: 5000,
                },
                "020a01011211080112090a010112047f0000011a021388",
            ),
            (
                Body::FindNode {
                    distances: vec![256],
                },
                "030a010112040a020100",
            ),
            (
                Body::Nodes {
                    total: 1,
                    records: vec![],
                },
                "040a010112020801",
            ),
            (
                Body::TalkReq {
                    protocol: b"echo".to_vec(),
                    request: b"hi".to_vec(),
                },
                "050a0101120a0a046563686f12026869",
            ),
            (
                Body::TalkResp {
                    response: b"hi".to_vec(),
                },
                "060a0101120412026869",
            ),
        ];
        for (body, hex) in cases {
            let msg = Message {
                request_id: id1(),
                body,
            };
            assert_eq!(msg.encode(), unhex(hex), "{msg:?}");
            assert_eq!(Message::decode(&unhex(hex)).unwrap(), msg);
        }
    }

    #[test]
    fn decodes_codex_nodes_with_two_records() {
        let hex = "040a0101129f03080112cc010a250802122102339d487ed237392d83791950dc891f0636de698c1fa051ea01ae3fa58bd78580120203011a560a2700250802122102339d487ed237392d83791950dc891f0636de698c1fa051ea01ae3fa58bd78580109cfd8992061a0b0a090400000000910200011a0b0a090400000000910200021a0b0a090400000000910200032a4730450221008cc77fd265e33c955174b9f49628048b2d72a6395acb30f0ba9d90536fa1a5d502207fa8e5bab8e8ddee9884a8e244b0990228e3546b5a9b6848632abd924796e57612cb010a2508021221026beda5cfddf1cd89130e7b5bb6092bac23db4a044bf847328aa0310dd123a445120203011a560a27002508021221026beda5cfddf1cd89130e7b5bb6092bac23db4a044bf847328aa0310dd123a445109cfd8992061a0b0a090400000000910200011a0b0a090400000000910200021a0b0a090400000000910200032a46304402203d41b1a78c5e6d98c9b4f3fcb213dc16ae4de50a1c8715ab29c516afe6488b4e02205841d09e92b3d2f1ad72c7bc066e561dab57320886f3fbbf272d2cf1732ca259";
        let msg = Message::decode(&unhex(hex)).unwrap();
        let Body::Nodes { total: 1, records } = &msg.body else {
            panic!("{msg:?}")
        };
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].addrs().len(), 3);
        assert_eq!(msg.encode(), unhex(hex));
    }

    #[test]
    fn refuses_what_codex_refuses_and_more() {
        // Request id of 9 bytes (codex-dht's "too large RequestId" vector).
        assert_eq!(
            Message::decode(&unhex("010a0900010203040506070812020801")),
            Err(MessageError::RequestId)
        );
        assert_eq!(Message::decode(&[]), Err(MessageError::Empty));
        assert_eq!(
            Message::decode(&[0x07, 0x0a, 0x01, 0x01]),
            Err(MessageError::UnknownType(7))
        );
        assert_eq!(
            Message::decode(&unhex("010a0101")),
            Err(MessageError::Field("message"))
        );
        // PING without sprSeq, PONG with a 3-byte IPv4 address, FINDNODE with a 3-byte distance.
        assert_eq!(
            Message::decode(&unhex("010a01011200")),
            Err(MessageError::Field("sprSeq"))
        );
        assert!(Message::decode(&unhex("020a01011210080112080a010112037f00001a021388")).is_err());
        assert_eq!(
            Message::decode(&unhex("030a010112050a03010000")),
            Err(MessageError::Field("distance"))
        );
        let many = Message {
            request_id: id1(),
            body: Body::FindNode {
                distances: vec![1; MAX_DISTANCES + 1],
            },
        };
        assert_eq!(
            Message::decode(&many.encode()),
            Err(MessageError::Oversized("distances"))
        );
    }

    #[test]
    fn provider_messages_round_trip() {
        let key = libp2p::identity::Keypair::generate_secp256k1();
        let record = Spr::create(&key, vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()]).unwrap();
        let k = NodeId::keccak(b"cid");
        for body in [
            Body::AddProvider {
                key: k,
                record: record.clone(),
            },
            Body::GetProviders { key: k },
            Body::Providers {
                total: 1,
                records: vec![record.clone(), record],
            },
            Body::FindNodeFast { target: k },
        ] {
            let msg = Message {
                request_id: RequestId::random(),
                body,
            };
            assert_eq!(Message::decode(&msg.encode()).unwrap(), msg);
        }
    }
}
