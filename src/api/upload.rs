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

/// Longest name plus extension Codex accepts, in bytes (Nim `isValidFilename`'s `maxLen`).
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
            // UTF-8 is accepted as Codex does; other bytes cannot go into the manifest JSON.
            let text = std::str::from_utf8(v.as_bytes()).map_err(|_| ApiError::InvalidFilename)?;
            match disposition_filename(text) {
                None => None,
                Some(name) if is_valid_filename(name) => Some(name.to_owned()),
                Some(_) => return Err(ApiError::InvalidFilename),
            }
        }
    };
    Ok(UploadOptions { filename, mimetype })
}

/// Codex's reading of `Content-Disposition`: the text after the first `filename="`, trimmed
/// of ASCII whitespace, minus its last character (the closing quote). A bare `filename=x` gives
/// no filename.
fn disposition_filename(value: &str) -> Option<&str> {
    const MARK: &str = "filename=\"";
    let rest = value.get(value.find(MARK)? + MARK.len()..)?;
    let mut chars = rest.trim_matches(|c: char| c.is_ascii_whitespace()).chars();
    chars.next_back();
    Some(chars.as_str())
}

/// Codex's filename check (Nim's `isValidFilename`, as a live Codex v0.2.5 applies it): only
/// the part after the last `/` is checked, so directories are allowed. That part is split into
/// a name and an extension (see [`split_extension`]); the name must be non-empty, must not
/// start or end with a space or end with a dot, must hold none of `\ : * ? " < > | ^`, and must
/// not be a Windows device name (CON, NUL, COM0–9, …); name and extension together are at most
/// 259 bytes. The extension is not checked. On top of Codex's rules, control characters are
/// refused anywhere: the whole text is echoed in the `Content-Disposition` of downloads.
fn is_valid_filename(path: &str) -> bool {
    const DEVICES: [&str; 24] = [
        "CON", "PRN", "AUX", "NUL", "COM0", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7",
        "COM8", "COM9", "LPT0", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8",
        "LPT9",
    ];
    let last = path.rfind('/').map_or(path, |i| &path[i + 1..]);
    let (name, ext) = split_extension(last);
    !path.chars().any(char::is_control)
        && !name.is_empty()
        && name.len() + ext.len() <= MAX_FILENAME_BYTES
        && !name.starts_with(' ')
        && !name.ends_with([' ', '.'])
        && !name.contains(['\\', ':', '*', '?', '"', '<', '>', '|', '^'])
        && !DEVICES.iter().any(|d| d.eq_ignore_ascii_case(name))
}

/// Splits a file name (no `/` in it) at its extension dot, the way Nim's `splitFile` does: the
/// rightmost dot that is neither the first nor the last character and is not followed by
/// another dot. `"a.tar.gz"` is `("a.tar", ".gz")`, `".hidden"` and `"a."` have no extension,
/// `"x..txt"` is `("x.", ".txt")`.
fn split_extension(file: &str) -> (&str, &str) {
    let bytes = file.as_bytes();
    let dot = (1..bytes.len().saturating_sub(1))
        .rev()
        .find(|&i| bytes[i] == b'.' && bytes[i + 1] != b'.');
    match dot {
        Some(i) => file.split_at(i),
        None => (file, ""),
    }
}

/// The media types Codex accepts, one a line, taken from a live Codex node (see the file).
const CODEX_MIME_TYPES: &str = include_str!("codex_mime_types.txt");

/// True for a MIME type in Codex's table, compared as Codex does: the whole header value,
/// ASCII-lowercased, so `text/plain; charset=utf-8` is refused and `image/PNG` accepted.
fn is_known_mime(value: &str) -> bool {
    let lowered = value.to_ascii_lowercase();
    CODEX_MIME_TYPES
        .lines()
        .any(|line| !line.starts_with('#') && line == lowered)
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
        // Accepted by a live Codex node.
        for good in [
            "data.bin",
            "a/b",
            "../../etc/passwd",
            "/a",
            "a /b",
            r#"q"x/b"#,
            "é",
            ".hidden",
            "a.b.",
            "a.b:c",
            "COM1.tar.gz",
            "COM1/x",
            ".con",
            "con.txt.gz",
        ] {
            assert!(is_valid_filename(good), "{good:?}");
        }
        // Refused by it (and control characters, refused only here).
        for bad in [
            "",
            " a",
            "a ",
            "a.",
            "a/",
            "/",
            "..",
            "...",
            ".a.",
            "x..txt",
            "a .txt",
            "x/ a",
            "..\\x",
            "a:b",
            "a\\b",
            "con",
            "COM0",
            "COM1.txt",
            "x/lpt0.txt",
            "CON.txt.",
            "x\"y",
            "a^b",
            "a\u{1}b",
            "d/a\tb",
            "a\tb/c",
        ] {
            assert!(!is_valid_filename(bad), "{bad:?}");
        }
        let dirs = "d/".repeat(200);
        assert!(is_valid_filename(&format!("{dirs}{}.txt", "x".repeat(255))));
        assert!(!is_valid_filename(&format!(
            "{dirs}{}.txt",
            "x".repeat(256)
        )));
        assert!(is_valid_filename(&"é".repeat(129)), "258 bytes");
        assert!(!is_valid_filename(&"é".repeat(130)), "260 bytes");
    }

    #[test]
    fn extensions_split_as_nim_does() {
        for (file, want) in [
            ("a.tar.gz", ("a.tar", ".gz")),
            (".hidden", (".hidden", "")),
            ("a.", ("a.", "")),
            ("a.b.", ("a", ".b.")),
            ("x..txt", ("x.", ".txt")),
            ("noext", ("noext", "")),
            ("", ("", "")),
        ] {
            assert_eq!(split_extension(file), want, "{file}");
        }
    }

    #[test]
    fn mime_types_come_from_codex_table() {
        // Answers of a live Codex node (codex_live.rs checks the whole table against it).
        for good in [
            "application/octet-stream",
            "text/plain",
            "image/PNG",
            "application/json",
            "audio/x-wav",
            "application/ecmascript",
            "x-conference/x-cooltalk",
        ] {
            assert!(is_known_mime(good), "{good}");
        }
        for bad in [
            "text/plain; charset=utf-8",
            " text/plain",
            "nonsense",
            "foo/bar",
            "text/markdown",
            "application/gzip",
            "image/avif",
            "audio/wav",
            "",
            "# the",
        ] {
            assert!(!is_known_mime(bad), "{bad}");
        }
    }
}
