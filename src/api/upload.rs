//! `POST /api/codex/v1/data`: stream the request body into the engine.
//!
//! The body is never buffered: each piece actix-web delivers goes to the upload session, whose
//! `write` resolves only once storage has room, so a slow disk slows the client down instead of
//! filling memory. If the client disconnects, this future is dropped, the session with it, and
//! the engine releases the upload's blocks.

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use codex_actors::{cid_text, Error, Node, UploadOptions};
use futures_util::StreamExt;

use crate::{error::ApiError, HttpConfig};

/// Longest filename Codex accepts (Nim `isValidFilename`).
const MAX_FILENAME_BYTES: usize = 259;

pub(crate) async fn upload(
    req: HttpRequest,
    mut body: web::Payload,
    node: web::Data<Node>,
    http: web::Data<HttpConfig>,
) -> Result<HttpResponse, ApiError> {
    let options = upload_options(&req)?;
    let started = std::time::Instant::now();
    let mut session = node.upload(options);
    let mut received: u64 = 0;
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| Error::Stream(e.to_string()))?;
        received += piece.len() as u64;
        if received > http.max_upload_bytes {
            return Err(ApiError::TooLarge(http.max_upload_bytes));
        }
        session.write(piece).await?;
    }
    let cid = session.finish().await?;
    crate::metrics::upload_done(received, started.elapsed());
    Ok(HttpResponse::Ok()
        .content_type("text/plain")
        .body(cid_text(&cid)))
}

/// Filename and MIME type from the headers, validated the way Codex does (422 on failure).
fn upload_options(req: &HttpRequest) -> Result<UploadOptions, ApiError> {
    let mimetype = match req.headers().get(header::CONTENT_TYPE) {
        None => None,
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| ApiError::InvalidMime(String::from_utf8_lossy(v.as_bytes()).into()))?;
            if text.is_empty() {
                None
            } else if is_known_mime(text) {
                Some(text.to_owned())
            } else {
                return Err(ApiError::InvalidMime(text.to_owned()));
            }
        }
    };
    let filename = match req.headers().get(header::CONTENT_DISPOSITION) {
        None => None,
        Some(v) => {
            let text = v.to_str().map_err(|_| ApiError::InvalidFilename)?;
            match disposition_filename(text) {
                None => None,
                Some(name) if is_valid_filename(name) => Some(name.to_owned()),
                Some(_) => return Err(ApiError::InvalidFilename),
            }
        }
    };
    Ok(UploadOptions { filename, mimetype })
}

/// Codex's reading of `Content-Disposition`: the text after the first `filename="`, trimmed,
/// minus its last character (the closing quote). A bare `filename=x` gives no filename.
fn disposition_filename(value: &str) -> Option<&str> {
    const MARK: &str = "filename=\"";
    let rest = value.get(value.find(MARK)? + MARK.len()..)?.trim();
    let mut chars = rest.chars();
    chars.next_back();
    Some(chars.as_str())
}

/// Nim's `isValidFilename`, plus a refusal of control characters (Codex lets them through).
fn is_valid_filename(name: &str) -> bool {
    const RESERVED: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    let stem = name.split('.').next().unwrap_or(name).to_ascii_uppercase();
    !name.is_empty()
        && name.len() <= MAX_FILENAME_BYTES
        && !name.starts_with(' ')
        && !name.ends_with(' ')
        && !name.ends_with('.')
        && !name
            .chars()
            .any(|c| c.is_control() || "/\\:*?\"<>|^".contains(c))
        && !RESERVED.contains(&stem.as_str())
}

/// True for a MIME type from the well-known table (after lowercasing, without parameters:
/// `text/plain; charset=utf-8` is refused, as Codex does).
fn is_known_mime(value: &str) -> bool {
    // mime_guess looks only at the essence, so refuse parameters and odd characters first.
    let plain = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-/".contains(&b));
    plain && mime_guess::get_mime_extensions_str(&value.to_ascii_lowercase()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filename_follows_codex_rules() {
        assert_eq!(
            disposition_filename(r#"attachment; filename="a.txt""#),
            Some("a.txt")
        );
        assert_eq!(disposition_filename("attachment; filename=a.txt"), None);
        assert_eq!(disposition_filename("attachment"), None);
        assert!(is_valid_filename("data.bin"));
        for bad in [
            "", " a", "a ", "a.", "a/b", "..\\x", "a:b", "con", "COM1.txt", "a\u{1}b", "x\"y",
        ] {
            assert!(!is_valid_filename(bad), "{bad:?}");
        }
        assert!(!is_valid_filename(&"a".repeat(260)));
        assert!(is_valid_filename(&"a".repeat(259)));
    }

    #[test]
    fn mime_types_come_from_the_table() {
        for good in [
            "application/octet-stream",
            "text/plain",
            "image/PNG",
            "application/json",
        ] {
            assert!(is_known_mime(good), "{good}");
        }
        for bad in ["text/plain; charset=utf-8", "nonsense", "foo/bar"] {
            assert!(!is_known_mime(bad), "{bad}");
        }
    }
}
