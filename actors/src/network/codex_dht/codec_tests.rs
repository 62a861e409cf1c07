//! Tests of the handshake: Codex's own packet vectors, and two codecs talking to each other.

use super::*;
use crate::network::codex_dht::message::{Body, RequestId};
use crate::network::codex_dht::unhex;

fn keypair(hex: &str) -> Keypair {
    let secret = secp256k1::SecretKey::try_from_bytes(unhex(hex)).unwrap();
    Keypair::from(secp256k1::Keypair::from(secret))
}

fn limits() -> CodecLimits {
    CodecLimits {
        sessions: 16,
        challenges: 16,
        sent: 16,
        handshake_timeout: Duration::from_secs(1),
    }
}

fn codec(key: &Keypair, port: u16) -> Codec {
    let addr = format!("/ip4/127.0.0.1/udp/{port}").parse().unwrap();
    let record = Spr::create(key, vec![addr]).unwrap();
    Codec::new(key.clone(), record, limits()).unwrap()
}

const NODE_A: &str = "fe5f08c842aa946659b266ce68faa5d2fd982634594dccdf7f916e3fcf0541a3";
const NODE_B: &str = "00064765abe9a4e63b068b5af99c26c61c8ade9bfdae6494873b137ec8152578";

/// codex-dht's "Ping Handshake Message Packet" vector: node A's handshake to node B, answering
/// a WHOAREYOU whose challenge data is given, with a DER id-signature over a protobuf
/// ephemeral key. Decoding it exercises node ids, ECDH, HKDF, the double-hashed signature and
/// GCM exactly as Codex does them.
#[test]
fn opens_codex_handshake_vector() {
    let a = keypair(NODE_A);
    let mut b = codec(&keypair(NODE_B), 9001);
    let from: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    let a_id = NodeId::from_peer_id(&a.public().to_peer_id());
    let now = Instant::now();
    let challenge = Challenge {
        data: unhex("000000000000000000000000000000006469736376350001010102030405060708090a0b0c00180102030405060708090a0b0c0d0e0f100000000000000001"),
        known_key: Some(a.public().try_into_secp256k1().unwrap()),
        expires: now + Duration::from_secs(1),
    };
    assert!(b.challenges.insert((a_id, from), challenge, now));
    let packet = unhex(concat!(
        "000000000000000000000000000000003788c1e1079e89374e4beac74d76364d",
        "bd9e8cd1847a712f49fbacc6862425583586c023b19b6fdd1d836777ee39fee8",
        "7afd279a5fe4ff441af3b17ec840104be4fae12da6828a752f1f7df615c4c757",
        "9558b0b537760549eb0e5ada50545b066734abb4b7bddbd503fad873e981b485",
        "dc9f8eee725661ebf766ce027edc9dcb55f6160b06d9c764481fb520b7581678",
        "e5fce2ab0d5fa2edaa92f252db6d6ea30d52a78e4114fb9dcf26fb1690e65ca0",
        "079386331f311bfc0aef4a771155ed"
    ));
    let Inbound::Message {
        src,
        message,
        record,
    } = b.open(from, &packet, now).unwrap()
    else {
        panic!("not a message")
    };
    assert_eq!(src, a_id);
    assert!(record.is_none());
    assert_eq!(message.request_id.as_bytes(), &[0, 0, 0, 1]);
    assert_eq!(message.body, Body::Ping { spr_seq: 1 });
    // The challenge was used up: the same packet again is refused.
    assert!(matches!(
        b.open(from, &packet, now),
        Err(PacketError::NoChallenge)
    ));
}

/// The same vector with node A's SPR in the handshake (the WHOAREYOU showed sequence 0).
#[test]
fn opens_codex_handshake_vector_with_record() {
    let a = keypair(NODE_A);
    let mut b = codec(&keypair(NODE_B), 9001);
    let from: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    let a_id = NodeId::from_peer_id(&a.public().to_peer_id());
    let now = Instant::now();
    let challenge = Challenge {
        data: unhex("000000000000000000000000000000006469736376350001010102030405060708090a0b0c00180102030405060708090a0b0c0d0e0f100000000000000000"),
        known_key: None,
        expires: now + Duration::from_secs(1),
    };
    assert!(b.challenges.insert((a_id, from), challenge, now));
    let packet = unhex(concat!(
        "000000000000000000000000000000003788c1e1079e89374e4beac74d76364d",
        "bd9e8cd1847bc72f49fbacc6862425583586c023b19b6fdd1d836777ee39fee8",
        "7afd279a5fe4ff441af3b17ec96b7e0586467988bd0c4784575e02a32d0e7594",
        "b65e939a8490bd71813894c9f4e8796f8c3d3fce29171fc3c568ace28d89ea80",
        "a9707693d2ee9388e74f89a5a62bc3cb55f6160bae865f0779b75c989805232d",
        "55b73645bbd797a7d550db7233300b3d1de011fbde92783b4d813ddabff9c96a",
        "a0361139ec10df16cf2c136caf44d064194cc6777202952dc24c6fccf04f026d",
        "6d58c1c43dcf643d211afe4ff8d9f9727fb45380862d47978fd015a4f9a7ff39",
        "28158c38173fd1192164e714ad5454446b681ed2130a349fdffd4b81f814700c",
        "5b04551e621b65432d3e1beca05dc8e801a4c21da44d4cb29b1eddb92417aedd",
        "de855ba1016e93eb25d55879a0d27d170dc7904c6dfa06ce813b0455b3258c66",
        "1de55dcd349397bc5b8eb8e8ef5b4ed2115e968197effe44a0f5fb2b7d"
    ));
    let Inbound::Message {
        message, record, ..
    } = b.open(from, &packet, now).unwrap()
    else {
        panic!("not a message")
    };
    assert_eq!(message.body, Body::Ping { spr_seq: 1 });
    let record = record.expect("record in the handshake");
    assert_eq!(record.peer_id(), a.public().to_peer_id());
    // The vector was made when the test's record said port 9000.
    assert_eq!(record.udp_addr(), Some("127.0.0.1:9000".parse().unwrap()));
}

/// codex-dht's "Ping Ordinary Message Packet" vector: a PING sealed with an all-zero key.
#[test]
fn opens_codex_ordinary_vector() {
    let a = keypair(NODE_A);
    let mut b = codec(&keypair(NODE_B), 9001);
    let from: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    let a_id = NodeId::from_peer_id(&a.public().to_peer_id());
    b.sessions.insert((a_id, from), [0; 16], [1; 16]);
    let packet = unhex(concat!(
        "000000000000000000000000000000003788c1e1079e89374c4beac74d76364d",
        "bd9e8cd1847adc2f49fbacc6862425583586c023b19b6fdd1d836777ee39fee8",
        "7afd279a5fe4ffdd21ed1a6d388207f00b48115b8ee4e8eaf675b0865821e126",
        "36bc"
    ));
    let now = Instant::now();
    let Inbound::Message { src, message, .. } = b.open(from, &packet, now).unwrap() else {
        panic!()
    };
    assert_eq!(src, a_id);
    assert_eq!(message.request_id.as_bytes(), &[0, 0, 0, 1]);
    assert_eq!(message.body, Body::Ping { spr_seq: 2 });
    assert!(matches!(
        b.open(from, &packet, now),
        Err(PacketError::Replay)
    ));
    // From another address the session does not apply.
    let other: SocketAddr = "127.0.0.1:9002".parse().unwrap();
    assert!(matches!(
        b.open(other, &packet, now),
        Ok(Inbound::Undecryptable { .. })
    ));
}

fn peer_of(codec: &Codec, addr: SocketAddr) -> Peer {
    Peer {
        id: codec.local_id(),
        addr,
        public_key: Some(codec.record().public_key().clone()),
    }
}

/// A full exchange between two codecs: random packet, WHOAREYOU, handshake, reply, replay.
#[test]
fn two_codecs_handshake_and_reject_replays() {
    let now = Instant::now();
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (
        "127.0.0.1:7001".parse().unwrap(),
        "127.0.0.1:7002".parse().unwrap(),
    );
    let mut a = codec(&Keypair::generate_secp256k1(), 7001);
    let mut b = codec(&Keypair::generate_secp256k1(), 7002);
    let ping = Message {
        request_id: RequestId::random(),
        body: Body::Ping { spr_seq: 5 },
    };
    let first = a.seal(&peer_of(&b, b_addr), ping.encode(), now);
    assert_eq!(first.len(), 1);
    // A second message while the handshake is under way waits.
    let second = Message {
        request_id: RequestId::random(),
        body: Body::Ping { spr_seq: 6 },
    };
    assert!(a
        .seal(&peer_of(&b, b_addr), second.encode(), now)
        .is_empty());

    let Inbound::Undecryptable { src, nonce } = b.open(a_addr, &first[0], now).unwrap() else {
        panic!()
    };
    assert_eq!(src, a.local_id());
    let who = b.whoareyou(src, a_addr, nonce, None, now).unwrap();
    assert!(
        b.whoareyou(src, a_addr, nonce, None, now).is_none(),
        "one challenge at a time"
    );
    let Inbound::Send(out) = a.open(b_addr, &who, now).unwrap() else {
        panic!()
    };
    assert_eq!(out.len(), 2, "handshake and the queued message");
    let Inbound::Message {
        message, record, ..
    } = b.open(a_addr, &out[0], now).unwrap()
    else {
        panic!()
    };
    assert_eq!(message, ping);
    assert_eq!(record.map(|r| r.peer_id()), Some(a.record().peer_id()));
    let Inbound::Message { message, .. } = b.open(a_addr, &out[1], now).unwrap() else {
        panic!()
    };
    assert_eq!(message, second);
    assert!(matches!(
        b.open(a_addr, &out[1], now),
        Err(PacketError::Replay)
    ));
    assert!(matches!(
        b.open(a_addr, &out[0], now),
        Err(PacketError::NoChallenge)
    ));

    // B answers over the session; A opens it.
    let pong = Message {
        request_id: ping.request_id,
        body: Body::Pong {
            spr_seq: 1,
            ip: a_addr.ip(),
            port: 7001,
        },
    };
    let reply = b.seal(&peer_of(&a, a_addr), pong.encode(), now);
    let Inbound::Message { message, .. } = a.open(b_addr, &reply[0], now).unwrap() else {
        panic!()
    };
    assert_eq!(message, pong);
    // A WHOAREYOU nobody asked for is refused.
    assert!(matches!(
        a.open(b_addr, &who, now),
        Err(PacketError::UnsolicitedWhoareyou)
    ));
}

#[test]
fn a_tampered_handshake_fails_its_signature() {
    let now = Instant::now();
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (
        "127.0.0.1:7003".parse().unwrap(),
        "127.0.0.1:7004".parse().unwrap(),
    );
    let mut a = codec(&Keypair::generate_secp256k1(), 7003);
    let mut b = codec(&Keypair::generate_secp256k1(), 7004);
    let ping = Message {
        request_id: RequestId::random(),
        body: Body::Ping { spr_seq: 5 },
    };
    let first = a.seal(&peer_of(&b, b_addr), ping.encode(), now);
    let Inbound::Undecryptable { src, nonce } = b.open(a_addr, &first[0], now).unwrap() else {
        panic!()
    };
    let who = b.whoareyou(src, a_addr, nonce, None, now).unwrap();
    let Inbound::Send(out) = a.open(b_addr, &who, now).unwrap() else {
        panic!()
    };
    let p = packet::decode(&b.local_id(), &out[0]).unwrap();
    let mut header = p.header.clone();
    let AuthData::Handshake { signature, .. } = &mut header.auth else {
        panic!()
    };
    let last = signature.len() - 1;
    signature[last] ^= 1;
    let forged = packet::assemble(&b.local_id(), &p.iv, &header.encode().unwrap(), p.sealed);
    assert!(matches!(
        b.open(a_addr, &forged, now),
        Err(PacketError::IdSignature)
    ));
}
