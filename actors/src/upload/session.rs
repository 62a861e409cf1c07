//! The embedder's side of an upload: a session that owns the upload's [`Chunker`] and
//! [`Upload`] actor, feeds the first and finishes or aborts the second.

use actix::{Actor, Addr};
use bytes::Bytes;
use cid::Cid;

use super::{Abort, Finish, Pipeline, Upload, UploadOptions};
use crate::{
    chunker::{Chunker, Close, Feed},
    error::Result,
};

/// An upload in progress, for embedders: [`write`](Self::write) bytes, then
/// [`finish`](Self::finish). Dropping it unfinished aborts the upload and releases its blocks.
pub struct UploadSession {
    chunker: Addr<Chunker>,
    upload: Addr<Upload>,
    finished: bool,
}

impl UploadSession {
    pub(crate) fn start(pipeline: Pipeline, options: UploadOptions) -> Self {
        let block_size = pipeline.block_size;
        let upload = Upload::new(pipeline, options).start();
        let chunker = Chunker::new(block_size, upload.clone().recipient()).start();
        Self {
            chunker,
            upload,
            finished: false,
        }
    }

    /// Adds the next piece of the file. Resolves once the piece's complete blocks are admitted
    /// into the pipeline, so awaiting it applies backpressure.
    ///
    /// # Errors
    /// The upload's first failure (for example [`Error::QuotaExceeded`](crate::Error::QuotaExceeded)).
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        self.chunker.send(Feed(data)).await?
    }

    /// Ends the stream and commits the dataset. Returns the manifest CID once it is durable.
    ///
    /// # Errors
    /// [`Error::EmptyUpload`](crate::Error::EmptyUpload) for an upload without bytes, or the upload's first failure; the
    /// upload's blocks are released in both cases.
    pub async fn finish(mut self) -> Result<Cid> {
        self.finished = true;
        let size = match self.chunker.send(Close).await? {
            Ok(size) => size,
            Err(e) => {
                let _ = self.upload.send(Abort).await;
                return Err(e);
            }
        };
        self.upload.send(Finish { dataset_size: size }).await?
    }

    /// Abandons the upload and waits until its blocks are released.
    pub async fn abort(mut self) {
        self.finished = true;
        let _ = self.upload.send(Abort).await;
    }
}

impl Drop for UploadSession {
    fn drop(&mut self) {
        if !self.finished {
            // A fire-and-forget notice: the client is gone and nobody waits for the answer.
            self.upload.do_send(Abort);
        }
    }
}
