//! Interop with a real Codex node (v0.2.5, `../shared/codex/run-codex`, or `$CODEX_RUN`), over
//! loopback only. Each test starts its own Codex on free ports and skips, saying so, when the
//! binary is missing or cannot run here.

mod net_common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use codex_actors::format::blockexc::{
    BlockAddress, BlockDelivery, BlockPresence, Message, WantEntry, WantType, Wantlist,
};
use codex_actors::format::cid::{
    cid_from_digest, cid_text, digest_of, sha256, BLOCK_CODEC, ROOT_CODEC,
};
use codex_actors::format::merkle;
use codex_actors::network::net::NetEvent;
use codex_actors::{parse_cid, Manifest};
use net_common::codex::{codex_peer, get, pseudo_random, start_codex, upload};
use net_common::{start, TestResult};

fn wants(entries: Vec<WantEntry>) -> Message {
    Message {
        wantlist: Wantlist {
            entries,
            full: false,
        },
        ..Message::default()
    }
}

#[actix_rt::test]
async fn codex_serves_a_manifest_and_leaves_whose_proofs_verify() -> TestResult {
    let Some(codex) = start_codex().await? else {
        return Ok(());
    };
    let data = pseudo_random(300_000);
    let manifest_cid = parse_cid(&upload(&codex, data.clone()).await?)?;
    let (codex_id, codex_addr) = codex_peer(&codex).await?;

    let mut node = start(|c| c).await?;
    node.handle.dial(codex_id, vec![codex_addr]).await?;
    let agent = node
        .expect("Codex's identify", |e| match e {
            NetEvent::Identified {
                peer,
                agent_version,
            } if peer == codex_id => Some(agent_version),
            _ => None,
        })
        .await?;
    eprintln!("Codex identifies as {agent:?}");

    let want_manifest = WantEntry::new(BlockAddress::Cid(manifest_cid), WantType::Block);
    node.handle
        .send(codex_id, wants(vec![want_manifest]))
        .await?;
    let delivery = node
        .expect("the manifest block", |e| match e {
            NetEvent::Message { peer, message, .. } if peer == codex_id => message
                .deliveries
                .into_iter()
                .find(|d| d.cid == manifest_cid),
            _ => None,
        })
        .await?;
    assert!(delivery.is_authentic());
    assert_eq!(
        cid_from_digest(manifest_cid.codec(), &sha256(&delivery.data)),
        manifest_cid
    );
    let manifest = Manifest::decode(&delivery.data)?;
    assert_eq!(manifest.dataset_size, 300_000);
    assert_eq!(manifest.tree_cid.codec(), ROOT_CODEC);
    let n = manifest.blocks_count();
    assert_eq!(n, 5);

    let tree = manifest.tree_cid;
    let leaves = (0..n)
        .map(|index| WantEntry::new(BlockAddress::Leaf { tree, index }, WantType::Block))
        .collect();
    node.handle.send(codex_id, wants(leaves)).await?;
    let mut got: BTreeMap<u64, BlockDelivery> = BTreeMap::new();
    while (got.len() as u64) < n {
        let deliveries = node
            .expect("leaf deliveries", |e| match e {
                NetEvent::Message { peer, message, .. }
                    if peer == codex_id && !message.deliveries.is_empty() =>
                {
                    Some(message.deliveries)
                }
                _ => None,
            })
            .await?;
        for d in deliveries {
            if let BlockAddress::Leaf { index, .. } = d.address {
                got.insert(index, d);
            }
        }
    }

    let root = digest_of(&tree).ok_or("tree CID is not sha2-256")?;
    let mut reassembled = Vec::new();
    for (index, d) in &got {
        assert_eq!(d.cid.codec(), BLOCK_CODEC);
        assert!(d.is_authentic(), "leaf {index}");
        let proof = d.proof.clone().ok_or("leaf without proof")?;
        let leaf = digest_of(&d.cid).ok_or("block CID is not sha2-256")?;
        assert_eq!((proof.index, proof.nleaves), (*index, n));
        assert!(merkle::verify(&proof, &leaf, &root), "leaf {index}");

        let mut tampered = proof.clone();
        tampered.path[0][0] ^= 1;
        assert!(
            !merkle::verify(&tampered, &leaf, &root),
            "tampered sibling, leaf {index}"
        );
        let mut moved = proof.clone();
        moved.index = (index + 1) % n;
        assert!(
            !merkle::verify(&moved, &leaf, &root),
            "wrong index, leaf {index}"
        );
        assert!(
            !merkle::verify(&proof, &leaf, &sha256(b"other root")),
            "wrong root"
        );
        reassembled.extend_from_slice(&d.data);
    }
    assert_eq!(
        reassembled.len(),
        5 * 65_536,
        "blocks are zero-padded to the block size"
    );
    assert_eq!(&reassembled[..300_000], &data[..]);
    assert!(reassembled[300_000..].iter().all(|&b| b == 0));
    Ok(())
}

#[actix_rt::test]
async fn codex_connects_to_us_and_fetches_a_manifest_only_we_have() -> TestResult {
    let Some(codex) = start_codex().await? else {
        return Ok(());
    };
    let mut node = start(|c| c).await?;
    let (codex_id, _) = codex_peer(&codex).await?;

    // A one-block dataset that only this node has: Codex can get its manifest from us alone.
    let block = pseudo_random(65_536);
    let tree = cid_from_digest(ROOT_CODEC, &merkle::root(&[sha256(&block)]).ok_or("root")?);
    let manifest = Manifest::new(
        tree,
        40_000,
        65_536,
        Some("rust.bin".into()),
        Some("application/x-test".into()),
    );
    let manifest_bytes = Bytes::from(manifest.encode());
    let manifest_cid = manifest.cid();

    let connect = format!("/connect/{}?addrs={}", node.peer_id(), node.addr);
    let answer = get(&codex, &connect).await?;
    eprintln!("Codex /connect answered {answer:?}");
    let agent = node
        .expect("Codex's identify", |e| match e {
            NetEvent::Identified {
                peer,
                agent_version,
            } if peer == codex_id => Some(agent_version),
            _ => None,
        })
        .await?;
    eprintln!("Codex identifies as {agent:?}");
    // The connection stays up: nim accepted our identify (an unverifiable SPR would drop it).
    let dropped = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match node.events.recv().await {
                Some(NetEvent::PeerDisconnected { peer, .. }) if peer == codex_id => return,
                None => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(dropped.is_err(), "Codex dropped the connection");

    // Ask Codex for the manifest; answer its wants as a Codex peer would.
    let url = format!(
        "{}/data/{}/network/manifest",
        codex.api,
        cid_text(&manifest_cid)
    );
    let mut fetch = tokio::task::spawn_blocking(move || -> Result<String, ureq::Error> {
        ureq::get(&url).call()?.body_mut().read_to_string()
    });
    let mut seen = HashSet::new();
    let json = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            tokio::select! {
                done = &mut fetch => return done,
                event = node.events.recv() => {
                    let Some(NetEvent::Message { peer, message, .. }) = event else { continue };
                    if peer != codex_id {
                        continue;
                    }
                    let mut reply = Message::default();
                    for entry in message.wantlist.entries {
                        if entry.address != BlockAddress::Cid(manifest_cid) || entry.cancel {
                            continue;
                        }
                        seen.insert(entry.want_type);
                        match entry.want_type {
                            WantType::Have => reply.presences.push(BlockPresence::have(entry.address)),
                            WantType::Block => reply.deliveries.push(BlockDelivery {
                                cid: manifest_cid,
                                data: manifest_bytes.clone(),
                                address: entry.address,
                                proof: None,
                            }),
                        }
                    }
                    if reply != Message::default() {
                        node.handle.send(codex_id, reply).await.map_err(|e| e.to_string()).ok();
                    }
                }
            }
        }
    })
    .await
    .map_err(|_| "Codex did not return the manifest within 60 s")???;

    eprintln!("Codex asked with {seen:?} and returned {json}");
    assert!(seen.contains(&WantType::Have), "Codex sends wantHave first");
    assert!(seen.contains(&WantType::Block), "then wantBlock");
    let v: serde_json::Value = serde_json::from_str(&json)?;
    let m = if v["manifest"].is_object() {
        &v["manifest"]
    } else {
        &v
    };
    assert_eq!(m["treeCid"].as_str(), Some(cid_text(&tree).as_str()));
    assert_eq!(m["datasetSize"].as_u64(), Some(40_000));
    assert_eq!(m["filename"].as_str(), Some("rust.bin"));
    Ok(())
}

#[actix_rt::test]
async fn codex_spr_and_key_file_read_as_ours() -> TestResult {
    let Some(codex) = start_codex().await? else {
        return Ok(());
    };
    let (codex_id, _) = codex_peer(&codex).await?;
    let v: serde_json::Value = serde_json::from_str(&get(&codex, "/spr").await?)?;
    let text = v["spr"].as_str().ok_or("no spr")?;
    let (peer, addrs) = codex_actors::network::net::spr::decode(text)?;
    assert_eq!(peer, codex_id);
    // Codex's /spr is its DHT record: the UDP discovery port, not the TCP listen port.
    assert!(
        addrs.iter().all(|a| a.to_string().contains("/udp/")),
        "{addrs:?}"
    );

    // Codex's `key` file is libp2p's protobuf private key, as ours: loading it gives its id.
    let key_file = codex._dir.path().join("data").join("key");
    let key = codex_actors::network::net::identity::load_or_create(&key_file)?;
    assert_eq!(key.public().to_peer_id(), codex_id);
    Ok(())
}

/// A bare peer for reading Codex's frames byte for byte: mplex only, identify, raw streams.
#[derive(libp2p::swarm::NetworkBehaviour)]
struct RawBehaviour {
    identify: libp2p::identify::Behaviour,
    stream: libp2p_stream::Behaviour,
}

#[actix_rt::test]
async fn codex_frames_carry_nims_default_fields_and_decode() -> TestResult {
    use codex_actors::network::net::{framing, BLOCKEXC_PROTOCOL};
    use futures::StreamExt as _;
    use libp2p::{identify, identity::Keypair, noise, swarm::dial_opts::DialOpts, tcp};

    let Some(codex) = start_codex().await? else {
        return Ok(());
    };
    let manifest_cid = parse_cid(&upload(&codex, pseudo_random(1000)).await?)?;
    let (codex_id, codex_addr) = codex_peer(&codex).await?;

    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(Keypair::generate_secp256k1())
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            libp2p_mplex::Config::new,
        )?
        .with_behaviour(|k| RawBehaviour {
            identify: identify::Behaviour::new(identify::Config::new(
                "ipfs/0.1.0".into(),
                k.public(),
            )),
            stream: libp2p_stream::Behaviour::new(),
        })?
        .build();
    let mut control = swarm.behaviour().stream.new_control();
    let mut incoming = control.accept(BLOCKEXC_PROTOCOL)?;
    swarm.dial(
        DialOpts::peer_id(codex_id)
            .addresses(vec![codex_addr])
            .build(),
    )?;
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let mut out = control.open_stream(codex_id, BLOCKEXC_PROTOCOL).await?;
    let have = WantEntry::new(BlockAddress::Cid(manifest_cid), WantType::Have);
    framing::write_frame(&mut out, &wants(vec![have]).encode()).await?;

    // Codex answers on a stream of its own.
    let wait = Duration::from_secs(20);
    let (peer, mut inbound) = tokio::time::timeout(wait, incoming.next())
        .await?
        .ok_or("no stream")?;
    assert_eq!(peer, codex_id);
    let frame = tokio::time::timeout(wait, framing::read_frame(&mut inbound, 4 << 20)).await??;
    eprintln!("Codex presence frame: {}", hex(&frame));
    // minprotobuf writes defaults: an empty want list first, then pendingBytes = 0 and the
    // empty account / payment submessages last.
    assert_eq!(&frame[..4], &[0x0a, 0x02, 0x10, 0x00]);
    assert!(frame.ends_with(&[0x28, 0x00, 0x32, 0x02, 0x0a, 0x00, 0x3a, 0x02, 0x0a, 0x00]));
    let msg = Message::decode(frame)?;
    assert_eq!(
        msg.presences,
        vec![BlockPresence::have(BlockAddress::Cid(manifest_cid))]
    );

    let block = WantEntry::new(BlockAddress::Cid(manifest_cid), WantType::Block);
    framing::write_frame(&mut out, &wants(vec![block]).encode()).await?;
    let frame = tokio::time::timeout(wait, framing::read_frame(&mut inbound, 4 << 20)).await??;
    eprintln!("Codex delivery frame: {}", hex(&frame));
    let msg = Message::decode(frame)?;
    assert_eq!(msg.deliveries.len(), 1);
    assert!(msg.deliveries[0].is_authentic());
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
