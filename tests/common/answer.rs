//! One request and what a client sees of its reply (status, body, the headers the Codex API
//! sets), so answers of two nodes can be compared with `==`; and comparisons of a Codex node
//! with ours.

use super::{agent, Api, TestResult};

/// What a client sees of one reply.
#[derive(PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub disposition: Option<String>,
    pub length: Option<String>,
    /// `Access-Control-Expose-Headers`.
    pub expose: Option<String>,
}

impl Answer {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl std::fmt::Debug for Answer {
    // Bodies can be megabytes: show their start.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        let mut short: String = text.chars().take(300).collect();
        if short.len() < text.len() {
            short.push_str(&format!("… ({} bytes)", self.body.len()));
        }
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("body", &short)
            .field("content_type", &self.content_type)
            .field("disposition", &self.disposition)
            .field("length", &self.length)
            .field("expose", &self.expose)
            .finish()
    }
}

/// Sends one request; `headers` are added as given, `body` only when `Some`.
pub fn ask(
    node: &impl Api,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> TestResult<Answer> {
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(node.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = match body {
        Some(b) => agent().run(req.body(b)?)?,
        None => agent().run(req.body(())?)?,
    };
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let (content_type, disposition) = (header("content-type"), header("content-disposition"));
    let (length, expose) = (
        header("content-length"),
        header("access-control-expose-headers"),
    );
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()?;
    Ok(Answer {
        status,
        body: bytes,
        content_type,
        disposition,
        length,
        expose,
    })
}

/// `GET path`.
pub fn get(node: &impl Api, path: &str) -> TestResult<Answer> {
    ask(node, "GET", path, &[], None)
}

/// Uploads with an optional `Content-Disposition` filename and `Content-Type`.
pub fn post(
    node: &impl Api,
    data: &[u8],
    name: Option<&str>,
    mime: Option<&str>,
) -> TestResult<Answer> {
    let disposition = name.map(|n| format!("attachment; filename=\"{n}\""));
    let mut headers = Vec::new();
    if let Some(d) = &disposition {
        headers.push(("Content-Disposition", d.as_str()));
    }
    if let Some(m) = mime {
        headers.push(("Content-Type", m));
    }
    ask(node, "POST", "/data", &headers, Some(data))
}

/// The same request to a Codex node and ours: (Codex's answer, ours).
pub fn ask_both(
    codex: &impl Api,
    ours: &impl Api,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> TestResult<(Answer, Answer)> {
    Ok((
        ask(codex, method, path, headers, body)?,
        ask(ours, method, path, headers, body)?,
    ))
}

/// Asserts both nodes answer a request with the same status and body, and returns the status.
pub fn same(codex: &impl Api, ours: &impl Api, method: &str, path: &str) -> TestResult<u16> {
    let (a, b) = ask_both(codex, ours, method, path, &[], None)?;
    assert_eq!(
        (a.status, a.text()),
        (b.status, b.text()),
        "{method} {path}"
    );
    if a.status >= 400 {
        assert_error_types(&a, &b);
    }
    Ok(a.status)
}

/// Plain text for errors is deliberate (Codex answers `text/html`, though its bodies are not
/// HTML): assert both, so a change on either side shows.
pub fn assert_error_types(codex: &Answer, ours: &Answer) {
    let ct = codex.content_type.as_deref().unwrap_or("");
    assert!(ct.starts_with("text/html"), "Codex error type {ct}");
    assert_eq!(
        ours.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
}

/// The entries of `GET /data`, sorted by CID. Codex lists in the order its repository directory
/// gives (arbitrary), ours by CID: the order is not part of the API.
pub fn listing(node: &impl Api) -> TestResult<Vec<serde_json::Value>> {
    let answer = get(node, "/data")?;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    let mut json: serde_json::Value = serde_json::from_str(&answer.text())?;
    let mut entries = json["content"]
        .take()
        .as_array()
        .cloned()
        .ok_or("no content")?;
    entries.sort_by_key(|e| e["cid"].as_str().unwrap_or_default().to_owned());
    Ok(entries)
}
