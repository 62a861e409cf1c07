//! The maintenance actor: every `maintenance_interval` it asks the metadata actor to expire up
//! to `maintenance_batch` block records, resuming where the previous pass stopped and starting
//! over once it reaches the end (Codex's BlockMaintainer, without its #1291 and #508 bugs: the
//! metadata actor never removes what a live dataset needs, and a zero TTL never expires).
//!
//! It owns only its cursor. Stops with the actix system.

use std::time::Duration;

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, WrapFuture};

use crate::{
    meta_store::{ExpireBlocks, MetaStore},
    node::unix_now,
};

/// The maintenance actor; see the module docs.
pub struct Maintenance {
    meta: Addr<MetaStore>,
    interval: Duration,
    batch: usize,
    /// Key after which the next pass resumes.
    cursor: Option<Vec<u8>>,
    /// A pass is in flight; a slow pass is not overlapped by the next tick.
    busy: bool,
}

impl Maintenance {
    /// A maintainer sending passes of `batch` records to `meta` every `interval`.
    pub fn new(meta: Addr<MetaStore>, interval: Duration, batch: usize) -> Self {
        Self {
            meta,
            interval,
            batch,
            cursor: None,
            busy: false,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let msg = ExpireBlocks {
            now: unix_now(),
            after: self.cursor.take(),
            limit: self.batch,
        };
        let meta = self.meta.clone();
        ctx.spawn(
            async move { meta.send(msg).await }
                .into_actor(self)
                .map(|result, act, _| {
                    act.busy = false;
                    match result {
                        Ok(Ok(expired)) => {
                            if expired.removed.blocks > 0 {
                                tracing::info!(
                                    datasets = expired.datasets,
                                    blocks = expired.removed.blocks,
                                    bytes = expired.removed.bytes,
                                    "expired blocks removed"
                                );
                            }
                            act.cursor = expired.next;
                        }
                        Ok(Err(e)) => tracing::warn!(error = %e, "maintenance pass failed"),
                        Err(_) => tracing::debug!("metadata actor gone; maintenance idle"),
                    }
                }),
        );
    }
}

impl Actor for Maintenance {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, ctx| act.tick(ctx));
    }
}
