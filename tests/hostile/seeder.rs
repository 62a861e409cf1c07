//! A seeder of ours on a hostile identity, for the attacks on a downloader: it serves a
//! [`Dataset`] honestly but for how it frames and times its deliveries ([`Serving`]).

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};
use std::time::Duration;

use codex_actors::format::blockexc::{BlockAddress, BlockPresence, Message, WantType};
use codex_actors::PeerId;

use super::{frame, messages, padded_frame, write, Dataset, Fallible, Identity};

/// How a seeder of ours serves: every leaf in a frame of its own, padded with an unknown field
/// to `pad` bytes, and `late`, if set, sent only after a delay the first time it is asked.
#[derive(Clone, Default)]
pub struct Serving {
    pub pad: usize,
    pub late: Option<(u64, Duration)>,
    /// Leaves sent so far.
    pub sent: Arc<AtomicUsize>,
    /// Cancels received so far.
    pub cancels: Arc<AtomicUsize>,
}

/// Serves `d` to `to` on `id` as `how` says (Have for what it holds, blocks as asked).
pub async fn seeder(id: &Identity, to: PeerId, d: Arc<Dataset>, how: Serving) -> Fallible {
    let mut inbox = messages(id)?;
    let out = Arc::new(tokio::sync::Mutex::new(id.open(to).await?));
    tokio::spawn(async move {
        let mut late = how.late;
        while let Some(m) = inbox.recv().await {
            let mut haves = Vec::new();
            let mut blocks = Vec::new();
            for e in m.wantlist.entries {
                if e.cancel {
                    how.cancels.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                if !d.holds(&e.address) {
                    continue;
                }
                match e.want_type {
                    WantType::Have => haves.push(BlockPresence::have(e.address)),
                    WantType::Block => blocks.push(e.address),
                }
            }
            if !haves.is_empty() {
                let reply = Message {
                    presences: haves,
                    ..Message::default()
                };
                if write(&mut *out.lock().await, &frame(&reply.to_wire()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            for a in blocks {
                let Some(block) = d.delivery(&a) else {
                    continue;
                };
                let index = match a {
                    BlockAddress::Leaf { index, .. } => Some(index),
                    BlockAddress::Cid(_) => None,
                };
                let one = Message {
                    deliveries: vec![block],
                    ..Message::default()
                };
                let bytes = padded_frame(&one, if index.is_some() { how.pad } else { 0 });
                if let Some((_, delay)) = late.filter(|(i, _)| Some(*i) == index) {
                    late = None;
                    let (out, sent) = (out.clone(), how.sent.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        if write(&mut *out.lock().await, &bytes).await.is_ok() {
                            sent.fetch_add(1, Ordering::SeqCst);
                        }
                    });
                    continue;
                }
                if write(&mut *out.lock().await, &bytes).await.is_err() {
                    return;
                }
                if index.is_some() {
                    how.sent.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });
    Ok(())
}
