//! Bounded fuzzing of the Codex DHT decoders, and round trips of the encoders: a few thousand
//! cases each, a few seconds in all, in every `cargo test`.
//!
//! Whatever bytes arrive, decoding returns an error or a value; it never panics. Valid packets
//! with bits flipped, bytes cut off or appended are refused (GCM authenticates all of a
//! packet), never accepted as something else.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use codex_actors::network::codex_dht::codec::{Codec, CodecLimits, Inbound, Peer};
use codex_actors::network::codex_dht::message::MAX_RECORDS_PER_MESSAGE;
use codex_actors::network::codex_dht::{packet, protobuf, Body, Message, NodeId, RequestId, Spr};
use libp2p::identity::Keypair;
use proptest::prelude::*;

fn limits() -> CodecLimits {
    CodecLimits {
        sessions: 64,
        challenges: 64,
        sent: 64,
        handshake_timeout: Duration::from_secs(5),
    }
}

fn codec(key: &Keypair, port: u16) -> Codec {
    let addr = format!("/ip4/127.0.0.1/udp/{port}").parse().expect("addr");
    Codec::new(
        key.clone(),
        Spr::create(key, vec![addr]).expect("record"),
        limits(),
    )
    .expect("codec")
}

static KEY: OnceLock<Keypair> = OnceLock::new();

/// A few records, made once: signing is too slow to do per case.
fn records() -> &'static [Spr] {
    static RECORDS: OnceLock<Vec<Spr>> = OnceLock::new();
    RECORDS.get_or_init(|| {
        (0..4)
            .map(|i| {
                let addr = format!("/ip4/127.0.0.1/udp/{}", 9000 + i)
                    .parse()
                    .expect("addr");
                Spr::create(&Keypair::generate_secp256k1(), vec![addr]).expect("record")
            })
            .collect()
    })
}

/// Two codecs with a session between them, and a sealed message from A to B.
struct Pair {
    b: Codec,
    a_addr: SocketAddr,
    sealed: Vec<u8>,
}

fn pair(plain: Vec<u8>) -> Pair {
    let now = Instant::now();
    let (ka, kb) = (Keypair::generate_secp256k1(), Keypair::generate_secp256k1());
    let (mut a, mut b) = (codec(&ka, 7101), codec(&kb, 7102));
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (
        "127.0.0.1:7101".parse().expect("a"),
        "127.0.0.1:7102".parse().expect("b"),
    );
    let to_b = Peer {
        id: b.local_id(),
        addr: b_addr,
        public_key: Some(b.record().public_key().clone()),
    };
    let ping = Message {
        request_id: RequestId::random(),
        body: Body::Ping { spr_seq: 1 },
    }
    .encode();
    let first = a.seal(&to_b, ping, now);
    let Ok(Inbound::Undecryptable { src, nonce }) = b.open(a_addr, &first[0], now) else {
        panic!("random packet")
    };
    let who = b
        .whoareyou(src, a_addr, nonce, None, now)
        .expect("whoareyou");
    let Ok(Inbound::Send(hs)) = a.open(b_addr, &who, now) else {
        panic!("handshake")
    };
    assert!(matches!(
        b.open(a_addr, &hs[0], now),
        Ok(Inbound::Message { .. })
    ));
    let sealed = a.seal(&to_b, plain, now).remove(0);
    Pair { b, a_addr, sealed }
}

fn body() -> impl Strategy<Value = Body> {
    let record = (0..records().len()).prop_map(|i| records()[i].clone());
    let key = any::<[u8; 32]>().prop_map(NodeId);
    prop_oneof![
        any::<u64>().prop_map(|spr_seq| Body::Ping { spr_seq }),
        (any::<u64>(), any::<[u8; 4]>(), any::<u16>()).prop_map(|(spr_seq, ip, port)| Body::Pong {
            spr_seq,
            ip: ip.into(),
            port
        }),
        (any::<u64>(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(spr_seq, ip, port)| {
            Body::Pong {
                spr_seq,
                ip: ip.into(),
                port,
            }
        }),
        prop::collection::vec(0u16..=256, 1..10).prop_map(|distances| Body::FindNode { distances }),
        (any::<u32>(), prop::collection::vec(record.clone(), 0..4))
            .prop_map(|(total, records)| Body::Nodes { total, records }),
        (
            prop::collection::vec(any::<u8>(), 0..40),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(protocol, request)| Body::TalkReq { protocol, request }),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|response| Body::TalkResp { response }),
        (key.clone(), record.clone()).prop_map(|(key, record)| Body::AddProvider { key, record }),
        key.clone().prop_map(|key| Body::GetProviders { key }),
        (any::<u32>(), prop::collection::vec(record, 0..4))
            .prop_map(|(total, records)| Body::Providers { total, records }),
        key.prop_map(|target| Body::FindNodeFast { target }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn messages_round_trip(body in body(), id in prop::collection::vec(any::<u8>(), 0..=8)) {
        let msg = Message { request_id: RequestId::from_slice(&id).expect("short id"), body };
        prop_assert_eq!(Message::decode(&msg.encode()), Ok(msg));
    }

    #[test]
    fn decoders_never_panic_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let local = NodeId::keccak(b"local");
        let _ = packet::decode(&local, &bytes);
        let _ = Message::decode(&bytes);
        let _ = protobuf::fields(&bytes);
        let _ = Spr::from_bytes(&bytes);
        let _ = Spr::from_text(&String::from_utf8_lossy(&bytes));
    }

    /// Headers that pass the protocol id check, with any flag, size and authdata: the
    /// authdata parsers see everything.
    #[test]
    fn framed_garbage_never_panics(
        flag in 0u8..4,
        size in any::<u16>(),
        auth in prop::collection::vec(any::<u8>(), 0..120),
        rest in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut codec = codec(&KEY.get_or_init(Keypair::generate_secp256k1).clone(), 7200);
        let local = codec.local_id();
        let mut header = b"discv5".to_vec();
        header.extend_from_slice(&[0, 1, flag]);
        header.extend_from_slice(&[7; 12]);
        let size = if size % 2 == 0 { auth.len() as u16 } else { size };
        header.extend_from_slice(&size.to_be_bytes());
        header.extend_from_slice(&auth);
        let datagram = packet::assemble(&local, &[3; 16], &header, &rest);
        let _ = packet::decode(&local, &datagram);
        let _ = codec.open("127.0.0.1:7201".parse().expect("addr"), &datagram, Instant::now());
    }

    #[test]
    fn mutated_messages_never_panic(body in body(), cut in 0usize..200, flip in any::<(usize, u8)>()) {
        let encoded = Message { request_id: RequestId::random(), body }.encode();
        let mut bytes = encoded.clone();
        let at = flip.0 % bytes.len();
        bytes[at] ^= flip.1;
        let _ = Message::decode(&bytes);
        let _ = Message::decode(&encoded[..cut.min(encoded.len())]);
    }

    #[test]
    fn records_in_messages_are_bounded(n in (MAX_RECORDS_PER_MESSAGE + 1)..(MAX_RECORDS_PER_MESSAGE + 4)) {
        let records = (0..n).map(|i| records()[i % records().len()].clone()).collect();
        let msg = Message { request_id: RequestId::random(), body: Body::Providers { total: 1, records } };
        prop_assert!(Message::decode(&msg.encode()).is_err());
    }
}

proptest! {
    // Each case runs a handshake (key generation, ECDH, signatures): fewer cases.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn tampered_packets_are_refused(flip in any::<(usize, u8)>(), cut in 1usize..40, extra in prop::collection::vec(any::<u8>(), 1..8)) {
        let plain = Message { request_id: RequestId::random(), body: Body::GetProviders { key: NodeId::keccak(b"k") } }.encode();
        let Pair { mut b, a_addr, sealed } = pair(plain);
        let now = Instant::now();
        let mut flipped = sealed.clone();
        let at = flip.0 % flipped.len();
        flipped[at] ^= flip.1.max(1);
        let mut cut_short = sealed.clone();
        cut_short.truncate(sealed.len().saturating_sub(cut));
        let mut longer = sealed.clone();
        longer.extend(extra);
        for bad in [flipped, cut_short, longer] {
            // Either an error, or "cannot open" (which only earns a WHOAREYOU); never a message.
            let opened = matches!(b.open(a_addr, &bad, now), Ok(Inbound::Message { .. }));
            prop_assert!(!opened, "a tampered packet was opened");
        }
        // The untouched packet still opens, once.
        let opened = matches!(b.open(a_addr, &sealed, now), Ok(Inbound::Message { .. }));
        prop_assert!(opened, "the untouched packet did not open");
        prop_assert!(b.open(a_addr, &sealed, now).is_err());
    }
}
