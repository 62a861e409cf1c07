//! Two of our network components on loopback, and a raw libp2p peer that misbehaves.

mod net_common;

use std::time::Duration;

use codex_actors::format::blockexc::{
    BlockAddress, BlockPresence, Message, WantEntry, WantType, Wantlist,
};
use codex_actors::network::net::{
    framing, NetConfig, NetError, NetEvent, Violation, BLOCKEXC_PROTOCOL,
};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::PeerId;
use net_common::{block, expect, message_from, start, TestResult};

fn want(delivery_cid: cid::Cid) -> Message {
    Message {
        wantlist: Wantlist {
            entries: vec![WantEntry::new(
                BlockAddress::Cid(delivery_cid),
                WantType::Block,
            )],
            full: true,
        },
        ..Message::default()
    }
}

#[actix_rt::test]
async fn two_nodes_exchange_wants_presences_and_a_full_delivery() -> TestResult {
    let mut a = start(|c| c).await?;
    let mut b = start(|c| c).await?;
    b.handle.dial(a.peer_id(), vec![a.addr.clone()]).await?;
    let agent = b
        .expect("identify from a", |e| match e {
            NetEvent::Identified { agent_version, .. } => Some(agent_version),
            _ => None,
        })
        .await?;
    assert!(agent.starts_with("codex-node/"), "{agent}");

    let blocks: Vec<_> = (0..20u8).map(|i| block(i, 64 * 1024)).collect();
    b.handle.send(a.peer_id(), want(blocks[0].cid)).await?;
    let got = a.expect("b's want list", message_from(b.peer_id())).await?;
    assert_eq!(got, want(blocks[0].cid));

    // A Codex-sized answer: 20 blocks of 64 KiB plus presences, on a's own outbound stream.
    let reply = Message {
        deliveries: blocks.clone(),
        presences: vec![BlockPresence::have(BlockAddress::Cid(blocks[1].cid))],
        ..Message::default()
    };
    a.handle.send(b.peer_id(), reply.clone()).await?;
    let got = b.expect("a's delivery", message_from(a.peer_id())).await?;
    assert_eq!(got, reply);
    assert!(got.deliveries.iter().all(|d| d.is_authentic()));

    // Many small messages in a row arrive in order on the one stream.
    for i in 0..50u8 {
        b.handle.send(a.peer_id(), want(block(i, 10).cid)).await?;
    }
    for i in 0..50u8 {
        let got = a.expect("next want", message_from(b.peer_id())).await?;
        assert_eq!(got, want(block(i, 10).cid), "message {i}");
    }
    assert!(b.handle.disconnect(a.peer_id()).await?);
    a.expect("b disconnects", |e| {
        matches!(e, NetEvent::PeerDisconnected { .. }).then_some(())
    })
    .await?;
    Ok(())
}

#[actix_rt::test]
async fn sends_to_unknown_peers_and_over_full_queues_are_refused() -> TestResult {
    let a = start(|c| c).await?;
    let stranger = PeerId::random();
    assert_eq!(
        a.handle.send(stranger, Message::default()).await,
        Err(NetError::NotConnected(stranger))
    );
    let mut b = start(|c| NetConfig {
        peer_queue_len: 1,
        ..c
    })
    .await?;
    b.handle.dial(a.peer_id(), vec![a.addr.clone()]).await?;
    // The writer takes one message off the queue at a time; a burst must hit the limit.
    let big = Message {
        deliveries: (0..20u8).map(|i| block(i, 64 * 1024)).collect(),
        ..Message::default()
    };
    let mut full = false;
    for _ in 0..20 {
        if let Err(e) = b.handle.send(a.peer_id(), big.clone()).await {
            assert_eq!(e, NetError::QueueFull(a.peer_id()));
            full = true;
            break;
        }
    }
    assert!(full, "a queue of one must fill up");
    let _ = b.events.try_recv();
    Ok(())
}

#[actix_rt::test]
async fn the_peer_id_survives_a_restart() -> TestResult {
    let first = start(|c| c).await?;
    let id = first.peer_id();
    let key = first.dir.path().join("key");
    first.handle.shutdown().await?;
    let config = NetConfig::new(&key).listen_on("/ip4/127.0.0.1/tcp/0".parse()?);
    let (again, _events) = codex_actors::network::net::Net::start(config).await?;
    assert_eq!(again.peer_id(), id);
    assert!(id.to_base58().starts_with("16Uiu2"));
    assert_eq!(first.handle.listen_addrs().await, Err(NetError::Stopped));
    Ok(())
}

#[actix_rt::test]
async fn starts_inside_an_actix_arbiter() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = NetConfig::new(dir.path().join("key")).listen_on("/ip4/127.0.0.1/tcp/0".parse()?);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let arbiter = actix_rt::Arbiter::new();
    arbiter.spawn(async move {
        let _ = tx.send(codex_actors::network::net::Net::start(config).await);
    });
    let (handle, _events) = rx.await??;
    // The driver runs on the arbiter's thread; this System's thread talks to it.
    let mut b = start(|c| c).await?;
    let addrs = handle.listen_addrs().await?;
    b.handle.dial(handle.peer_id(), addrs).await?;
    b.expect("connected", |e| {
        matches!(e, NetEvent::PeerConnected { .. }).then_some(())
    })
    .await?;
    handle.shutdown().await?;
    arbiter.stop();
    Ok(())
}

#[actix_rt::test]
async fn the_connection_limit_turns_extra_peers_away() -> TestResult {
    let mut a = start(|c| c.max_peers(1)).await?;
    let b = start(|c| c).await?;
    let mut c = start(|c| c).await?;
    b.handle.dial(a.peer_id(), vec![a.addr.clone()]).await?;
    a.expect("b connects", |e| {
        matches!(e, NetEvent::PeerConnected { .. }).then_some(())
    })
    .await?;
    // a refuses c's connection once it is established: c's dial is no success (a dial
    // answers once the peer identified itself, and a never does), and c is not connected.
    let dialled = c.handle.dial(a.peer_id(), vec![a.addr.clone()]).await;
    assert!(
        matches!(dialled, Err(codex_actors::network::net::NetError::Dial(_))),
        "a dial to a full node must fail: {dialled:?}"
    );
    let sent = c.handle.send(a.peer_id(), Message::default()).await;
    assert!(
        matches!(
            sent,
            Err(codex_actors::network::net::NetError::NotConnected(_))
        ),
        "c must not stay connected: {sent:?}"
    );
    drop(c.events.try_recv());
    while let Ok(e) = a.events.try_recv() {
        if let NetEvent::PeerConnected { peer, .. } = e {
            assert_ne!(peer, c.peer_id(), "c was let in");
        }
    }
    Ok(())
}

/// A bare libp2p peer (yamux, no identify) that can open block-exchange streams and write
/// anything on them.
async fn raw_peer(to: PeerId, addr: libp2p::Multiaddr) -> TestResult<libp2p_stream::Control> {
    let mut swarm = net_common::raw_swarm()?;
    let control = swarm.behaviour().new_control();
    swarm.dial(DialOpts::peer_id(to).addresses(vec![addr]).build())?;
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    Ok(control)
}

/// Writes `bytes` on a new stream and checks that the node closes it.
async fn send_raw_and_expect_close(
    control: &mut libp2p_stream::Control,
    to: PeerId,
    bytes: &[u8],
) -> TestResult {
    let mut stream = control.open_stream(to, BLOCKEXC_PROTOCOL).await?;
    stream.write_all(bytes).await?;
    stream.flush().await?;
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await?;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "stream must be closed, read {read:?}"
    );
    Ok(())
}

#[actix_rt::test]
async fn a_misbehaving_peer_loses_its_stream_while_others_are_served() -> TestResult {
    let mut a = start(|c| c).await?;
    let b = start(|c| c).await?;
    b.handle.dial(a.peer_id(), vec![a.addr.clone()]).await?;
    let mut raw = raw_peer(a.peer_id(), a.addr.clone()).await?;

    // An oversized frame: only its length prefix is sent.
    let mut oversized = Vec::new();
    prost::encoding::encode_varint(5 << 20, &mut oversized);
    send_raw_and_expect_close(&mut raw, a.peer_id(), &oversized).await?;
    let v = a
        .expect("oversized frame reported", |e| match e {
            NetEvent::Violation { violation, .. } => Some(violation),
            _ => None,
        })
        .await?;
    assert_eq!(
        v,
        Violation::FrameTooLarge {
            len: 5 << 20,
            max: 4 << 20
        }
    );

    // Garbage protobuf, and a want with wantType 2 (which would crash a Codex node).
    let bad_enum = {
        let mut m = want(block(1, 1).cid).to_wire();
        if let Some(w) = m.wantlist.as_mut() {
            w.entries[0].want_type = Some(2);
        }
        prost::Message::encode_to_vec(&m)
    };
    for body in [vec![0xff; 40], bad_enum] {
        send_raw_and_expect_close(&mut raw, a.peer_id(), &framing::encode_frame(&body)).await?;
        let v = a
            .expect("bad message reported", |e| match e {
                NetEvent::Violation { violation, .. } => Some(violation),
                _ => None,
            })
            .await?;
        assert!(matches!(v, Violation::Message(_)), "{v:?}");
        // The well-behaved peer is still served.
        b.handle.send(a.peer_id(), want(block(9, 9).cid)).await?;
        a.expect("b still heard", message_from(b.peer_id())).await?;
    }

    // The raw peer's connection survives: a valid frame on a new stream gets through.
    let mut stream = raw.open_stream(a.peer_id(), BLOCKEXC_PROTOCOL).await?;
    framing::write_frame(&mut stream, &want(block(3, 3).cid).encode()).await?;
    let got = expect(&mut a.events, "raw peer's valid want", |e| match e {
        NetEvent::Message { message, .. } => Some(message),
        _ => None,
    })
    .await?;
    assert_eq!(got, want(block(3, 3).cid));
    Ok(())
}

#[actix_rt::test]
async fn held_messages_count_against_the_read_budget() -> TestResult {
    // Room for one ~600 KiB frame at a time.
    let mut a = start(|c| NetConfig {
        max_frame_bytes: 1 << 20,
        max_inflight_frame_bytes: 1 << 20,
        ..c
    })
    .await?;
    let b = start(|c| c).await?;
    b.handle.dial(a.peer_id(), vec![a.addr.clone()]).await?;
    let big = |fill: u8| Message {
        deliveries: vec![block(fill, 600 * 1024)],
        ..Message::default()
    };
    b.handle.send(a.peer_id(), big(1)).await?;
    b.handle.send(a.peer_id(), big(2)).await?;
    let first = a
        .expect("first frame", |e| {
            matches!(e, NetEvent::Message { .. }).then_some(e)
        })
        .await?;
    let waited = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            if let Some(NetEvent::Message { .. }) = a.events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(
        waited.is_err(),
        "the second frame must wait for the first to be released"
    );
    drop(first);
    let second = a.expect("second frame", message_from(b.peer_id())).await?;
    assert_eq!(second, big(2));
    Ok(())
}

#[actix_rt::test]
async fn a_message_over_the_frame_limit_is_not_sent() -> TestResult {
    let a = start(|c| c).await?;
    let mut b = start(|c| c.max_frame_bytes(100 * 1024)).await?;
    b.handle.dial(a.peer_id(), vec![a.addr.clone()]).await?;
    let too_big = Message {
        deliveries: vec![block(1, 200 * 1024)],
        ..Message::default()
    };
    b.handle.send(a.peer_id(), too_big).await?;
    let reason = b
        .expect("send failure", |e| match e {
            NetEvent::SendFailed { reason, .. } => Some(reason),
            _ => None,
        })
        .await?;
    assert!(
        matches!(reason, codex_actors::network::net::SendFailure::TooLarge(n) if n > 200 * 1024)
    );
    Ok(())
}

#[actix_rt::test]
async fn a_peer_without_block_exchange_is_reported_unsupported() -> TestResult {
    let mut a = start(|c| c).await?;
    // The raw peer dials in but never registers /codex/blockexc/1.0.0.
    let _raw = raw_peer(a.peer_id(), a.addr.clone()).await?;
    let raw_id = a
        .expect("raw peer connects", |e| match e {
            NetEvent::PeerConnected { peer, .. } => Some(peer),
            _ => None,
        })
        .await?;
    a.handle.send(raw_id, Message::default()).await?;
    let reason = a
        .expect("send failure", |e| match e {
            NetEvent::SendFailed { peer, reason } if peer == raw_id => Some(reason),
            _ => None,
        })
        .await?;
    assert_eq!(reason, codex_actors::network::net::SendFailure::Unsupported);
    Ok(())
}

/// Streams that arrive together are all taken: 8 peers each open 4 streams at once (the most a
/// peer may have) and write one message on each; every message arrives. libp2p-stream's own
/// acceptor has room for one waiting stream and dropped the rest of such a burst.
#[actix_rt::test]
async fn a_burst_of_inbound_streams_loses_none() -> TestResult {
    let mut a = start(|c| c).await?;
    let (to, addr) = (a.peer_id(), a.addr.clone());
    let mut peers = Vec::new();
    for _ in 0..8 {
        peers.push(raw_peer(to, addr.clone()).await?);
    }
    let mut connected = 0;
    while connected < peers.len() {
        a.expect("peers connect", |e| {
            matches!(e, NetEvent::PeerConnected { .. }).then_some(())
        })
        .await?;
        connected += 1;
    }
    let cid = block(7, 100).cid;
    let frame = framing::encode_frame(&want(cid).encode());
    let mut writers = Vec::new();
    for control in &peers {
        for _ in 0..4 {
            let (mut control, frame) = (control.clone(), frame.clone());
            writers.push(tokio::spawn(async move {
                let mut s = control
                    .open_stream(to, BLOCKEXC_PROTOCOL)
                    .await
                    .map_err(std::io::Error::other)?;
                s.write_all(&frame).await?;
                s.flush().await?;
                // Kept open until the node has read it.
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok::<_, std::io::Error>(s)
            }));
        }
    }
    let mut received = 0;
    while received < 32 {
        a.expect("every message of the burst", |e| {
            matches!(e, NetEvent::Message { .. }).then_some(())
        })
        .await?;
        received += 1;
    }
    for w in writers {
        w.await??;
    }
    Ok(())
}
