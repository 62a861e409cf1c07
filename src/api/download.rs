//! `GET /api/codex/v1/data/{cid}`: stream a dataset back, whole or as one byte range.
//!
//! Only the blocks covering the range are read. The first piece is awaited before the status
//! line goes out, so a missing or corrupted first block is a clean error reply; a failure
//! later can only cut the body short (the status is already sent), and is logged.

use std::ops::Range;

use actix_web::{
    http::header::{self, HeaderValue},
    web, HttpRequest, HttpResponse,
};
use codex_actors::{ByteStream, Cid, Error, Manifest, Node};
use futures_util::{stream, StreamExt};

use super::PathCid;
use crate::error::ApiError;

pub(crate) async fn download(
    path: web::Path<String>,
    req: HttpRequest,
    node: web::Data<Node>,
) -> Result<HttpResponse, ApiError> {
    let cid = PathCid::parse(&path)?.held()?;
    let manifest = node.manifest(cid).await?;
    let range = requested_range(&req, manifest.dataset_size)?;
    let body = node.read(&manifest, range.clone())?;
    respond(cid, &manifest, range, body).await
}

/// `GET /api/codex/v1/data/{cid}/network/stream`: the same answer, for a dataset that may have
/// to come from peers (fetched into the store while it streams).
pub(crate) async fn network_stream(
    path: web::Path<String>,
    req: HttpRequest,
    node: web::Data<Node>,
) -> Result<HttpResponse, ApiError> {
    let cid = PathCid::parse(&path)?.held()?;
    // The fetch starts where the reader does (the range is checked against the size later).
    let first = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| {
            v.to_str()
                .ok()?
                .trim()
                .strip_prefix("bytes=")?
                .split('-')
                .next()?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    let network = node.network()?;
    let fetching = network.fetch_from(cid, Some(first / 65536)).await?;
    let range = requested_range(&req, fetching.manifest.dataset_size)?;
    let body = network.read_fetching(cid, &fetching, range.clone())?;
    respond(cid, &fetching.manifest, range, body).await
}

/// The `Range` a request asks for, if it asks for one this node serves.
fn requested_range(req: &HttpRequest, size: u64) -> Result<Option<Range<u64>>, ApiError> {
    match req.headers().get(header::RANGE) {
        Some(value) => parse_range(value, size),
        None => Ok(None),
    }
}

/// Streams `body` (bytes `range` of the dataset, or all of it) with Codex's headers. The first
/// piece is awaited before the status line goes out.
async fn respond(
    cid: Cid,
    manifest: &Manifest,
    range: Option<Range<u64>>,
    mut body: ByteStream,
) -> Result<HttpResponse, ApiError> {
    let size = manifest.dataset_size;
    let first = match body.next().await {
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => return Err(e.into()),
        None => return Err(Error::NotFound(cid).into()),
    };
    let mut resp = match &range {
        Some(r) => {
            let mut resp = HttpResponse::PartialContent();
            resp.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end - 1),
            ));
            resp
        }
        None => HttpResponse::Ok(),
    };
    resp.content_type(
        manifest
            .mimetype
            .as_deref()
            .unwrap_or("application/octet-stream"),
    );
    resp.insert_header((
        header::CONTENT_DISPOSITION,
        content_disposition(manifest.filename.as_deref()),
    ));
    resp.insert_header((header::ACCEPT_RANGES, "bytes"));
    resp.insert_header((header::ACCESS_CONTROL_EXPOSE_HEADERS, "Content-Disposition"));
    let length = range.as_ref().map_or(size, |r| r.end - r.start);
    let full = range.is_none();
    let mut sent = 0u64;
    let rest = stream::once(async move { Ok(first) }).chain(body).map(move |item| {
        match &item {
            Ok(bytes) => {
                sent += bytes.len() as u64;
                if sent == length && full {
                    crate::metrics::download_done(length);
                }
            }
            Err(e) => tracing::error!(cid = %codex_actors::cid_text(&cid), error = %e, "download cut short"),
        }
        item
    });
    Ok(resp.no_chunking(length).streaming(rest))
}

/// `attachment; filename="<name>"` as Codex sends it, with `"` and `\` escaped so the
/// quoted-string stays well-formed (RFC 9110 §5.6.4; Codex writes the name raw). UTF-8 goes out
/// as is, as on Codex. Just `attachment` without a name, or for a name no header can carry
/// (control characters, refused at upload since).
fn content_disposition(filename: Option<&str>) -> HeaderValue {
    let attachment = HeaderValue::from_static("attachment");
    let Some(name) = filename else {
        return attachment;
    };
    let mut value = String::with_capacity(name.len() + 24);
    value.push_str("attachment; filename=\"");
    for c in name.chars() {
        if c == '"' || c == '\\' {
            value.push('\\');
        }
        value.push(c);
    }
    value.push('"');
    HeaderValue::from_str(&value).unwrap_or(attachment)
}

/// Parses one `bytes=` range against a dataset of `size` bytes into a half-open range.
/// `None` means "send the whole dataset": a header in another unit must be ignored, and one that
/// is malformed or names several ranges may be (RFC 9110 §14.2); Codex ignores every `Range`.
/// A well-formed range that starts at or past the end is 416.
fn parse_range(value: &HeaderValue, size: u64) -> Result<Option<Range<u64>>, ApiError> {
    let unsatisfiable = ApiError::Engine(Error::RangeNotSatisfiable { size });
    let Some(spec) = value
        .to_str()
        .ok()
        .and_then(|t| t.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    let Some((a, b)) = spec.split_once('-').filter(|_| !spec.contains(',')) else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| s.parse::<u64>().ok();
    let range = match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ok(None),
        (true, false) => match num(b) {
            None => return Ok(None),
            Some(0) => return Err(unsatisfiable),
            Some(n) => size.saturating_sub(n)..size,
        },
        (false, true) => match num(a) {
            None => return Ok(None),
            Some(start) => start..size,
        },
        (false, false) => match (num(a), num(b)) {
            (Some(start), Some(end)) if start <= end => start..end.saturating_add(1).min(size),
            _ => return Ok(None),
        },
    };
    if range.start >= size {
        return Err(unsatisfiable);
    }
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str, size: u64) -> Result<Option<Range<u64>>, ApiError> {
        parse_range(&HeaderValue::from_str(v).expect("header"), size)
    }

    #[test]
    fn disposition_is_a_well_formed_quoted_string() {
        let value = |name| content_disposition(name).as_bytes().to_vec();
        assert_eq!(value(None), b"attachment");
        assert_eq!(value(Some("a b.txt")), br#"attachment; filename="a b.txt""#);
        assert_eq!(
            value(Some(r#"q"u\d/x"#)),
            br#"attachment; filename="q\"u\\d/x""#
        );
        assert_eq!(value(Some("é")), "attachment; filename=\"é\"".as_bytes());
        assert_eq!(value(Some("a\nb")), b"attachment");
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse("bytes=0-0", 10).ok().flatten(), Some(0..1));
        assert_eq!(parse("bytes=2-", 10).ok().flatten(), Some(2..10));
        assert_eq!(parse("bytes=-3", 10).ok().flatten(), Some(7..10));
        assert_eq!(parse("bytes=-30", 10).ok().flatten(), Some(0..10));
        assert_eq!(parse("bytes=5-100", 10).ok().flatten(), Some(5..10));
        assert_eq!(parse("bytes=0-1,4-5", 10).ok(), Some(None));
        assert!(matches!(
            parse("bytes=10-", 10),
            Err(ApiError::Engine(Error::RangeNotSatisfiable { size: 10 }))
        ));
        assert!(matches!(
            parse("bytes=-0", 10),
            Err(ApiError::Engine(Error::RangeNotSatisfiable { .. }))
        ));
        for unusable in [
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "items=0-1",
            "bytes=5-2",
            "0-1",
            "bytes=1-2-3",
        ] {
            assert_eq!(parse(unusable, 10).ok(), Some(None), "{unusable}");
        }
    }
}
