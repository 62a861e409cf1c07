//! `codex-node upload` and `codex-node download`: a small HTTP client for a running node, with a
//! progress bar (bytes, rate, ETA) on a terminal and plain output when piped.
//!
//! Exit codes: 0 success; 1 the node refused (its message is printed); 2 a local problem (bad
//! arguments, unreadable file, unwritable output); 3 the node cannot be reached.

use std::{
    fs::File,
    io::{self, IsTerminal, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use indicatif::{ProgressBar, ProgressStyle};

/// Why a client command failed; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node answered with an error status.
    #[error("the node answered {status}: {message}")]
    Refused {
        /// HTTP status code.
        status: u16,
        /// The node's plain-text reason.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Local {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The node could not be reached or the transfer broke.
    #[error("cannot reach the node at {api}: {reason}")]
    Unreachable {
        /// The API base URL.
        api: String,
        /// The transport error.
        reason: String,
    },
}

impl ClientError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Refused { .. } => 1,
            ClientError::Local { .. } => 2,
            ClientError::Unreachable { .. } => 3,
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build(),
    )
}

fn bar(len: Option<u64>, verb: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = len.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
    let template = "{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_message(verb.to_owned());
    bar
}

fn unreachable(api: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Unreachable {
        api: api.to_owned(),
        reason: e.to_string(),
    }
}

fn refused(resp: ureq::http::Response<ureq::Body>) -> ClientError {
    let status = resp.status().as_u16();
    let message = resp.into_body().read_to_string().unwrap_or_default();
    ClientError::Refused { status, message }
}

/// Uploads `file` (streamed, never loaded whole) and returns the manifest CID.
///
/// # Errors
/// See [`ClientError`].
pub fn upload(
    api: &str,
    file: &Path,
    filename: Option<&str>,
    mime: Option<&str>,
) -> Result<String, ClientError> {
    let local = |source| ClientError::Local {
        path: file.to_path_buf(),
        source,
    };
    let input = File::open(file).map_err(local)?;
    let len = input.metadata().map_err(local)?.len();
    let progress = bar(Some(len), "upload");
    let mut reader = progress.wrap_read(input);
    let mut req = agent().post(format!("{api}/api/codex/v1/data"));
    if let Some(name) = filename {
        req = req.header(
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        );
    }
    if let Some(mime) = mime {
        req = req.header("Content-Type", mime);
    }
    let resp = req
        .send(ureq::SendBody::from_reader(&mut reader))
        .map_err(|e| unreachable(api, e))?;
    progress.finish_and_clear();
    if resp.status() != 200 {
        return Err(refused(resp));
    }
    resp.into_body()
        .read_to_string()
        .map_err(|e| unreachable(api, e))
}

/// Downloads `cid` into `output` (stdout when `None`); returns the bytes written.
///
/// # Errors
/// See [`ClientError`].
pub fn download(
    api: &str,
    cid: &str,
    output: Option<&Path>,
    network: bool,
) -> Result<u64, ClientError> {
    let route = if network { "/network/stream" } else { "" };
    let resp = agent()
        .get(format!("{api}/api/codex/v1/data/{cid}{route}"))
        .call()
        .map_err(|e| unreachable(api, e))?;
    if resp.status() != 200 {
        return Err(refused(resp));
    }
    let len = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let progress = bar(len, "download");
    let path = output.map_or_else(|| PathBuf::from("-"), Path::to_path_buf);
    let local = |source| ClientError::Local {
        path: path.clone(),
        source,
    };
    let mut sink: Box<dyn Write> = match output {
        Some(p) => Box::new(File::create(p).map_err(local)?),
        None => Box::new(io::stdout().lock()),
    };
    let mut body = resp.into_body().into_with_config().limit(u64::MAX).reader();
    let written = io::copy(&mut progress.wrap_read(&mut body), &mut sink).map_err(|e| {
        // A read error is the network; a write error is ours.
        if e.kind() == io::ErrorKind::Other || e.kind() == io::ErrorKind::UnexpectedEof {
            unreachable(api, e)
        } else {
            local(e)
        }
    })?;
    sink.flush().map_err(local)?;
    progress.finish_and_clear();
    if len.is_some_and(|l| l != written) {
        return Err(unreachable(
            api,
            format!("transfer cut short after {written} bytes"),
        ));
    }
    Ok(written)
}

/// `codex-node connect`: asks the node at `api` to dial `peer` at `addrs`. Returns the node's
/// answer.
///
/// # Errors
/// [`ClientError::Refused`] with the node's message (e.g. `400: Unable to dial peer`);
/// [`ClientError::Unreachable`].
pub fn connect(api: &str, peer: &str, addrs: &[String]) -> Result<String, ClientError> {
    let mut req = agent().get(format!("{api}/api/codex/v1/connect/{peer}"));
    for addr in addrs {
        req = req.query("addrs", addr);
    }
    let resp = req.call().map_err(|e| unreachable(api, e))?;
    if resp.status() != 200 {
        return Err(refused(resp));
    }
    resp.into_body()
        .read_to_string()
        .map_err(|e| unreachable(api, e))
}
