//! Who may talk to the API. It binds loopback, but every web page the user opens runs on the
//! same machine: a page can send "simple" cross-site requests (a form post uploads, an `<img>`
//! makes the node dial an address), and a DNS name rebound to 127.0.0.1 gives it full, same-origin
//! access. Browsers always say where a request comes from, so the guard refuses (403):
//! - a `Host` that is not this node's address: `127.0.0.1`, `localhost`, `[::1]` or the bound
//!   address, with the bound port. Bound to every interface (`0.0.0.0` or `::`), any IP literal
//!   with the port is accepted: rebinding needs a DNS name, and the node cannot know every
//!   address the machine has. Names given with `--api-allowed-host` pass on any port (a reverse
//!   proxy, a Prometheus scraping the machine by name): only their owner's DNS can point them here;
//! - an `Origin` other than the page's own (`http://` or `https://` + the accepted `Host`) or
//!   one allowed with `--api-cors-origin`;
//! - `Sec-Fetch-Site: cross-site` or `same-site` (another port of the same host) without such an
//!   origin: the requests that carry no `Origin`, such as an `<img>` or a link.
//!
//! Clients other than browsers (curl, the CLI) send neither `Origin` nor `Sec-Fetch-Site`, and
//! their `Host` is the address they connect to, so they pass. For an allowed origin the guard
//! answers preflights itself and adds the CORS headers to the reply.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use actix_web::{
    http::{
        header::{self, HeaderMap, HeaderValue},
        Method, StatusCode,
    },
    HttpRequest, HttpResponse,
};

/// What a browser may read of a reply to an allowed origin, beyond the CORS-safelisted headers.
const EXPOSED: &str = "Content-Disposition, Content-Length, Content-Range, Accept-Ranges";
/// Methods the API has (for preflights).
const METHODS: &str = "GET, POST, DELETE, OPTIONS";
/// Request headers an allowed web app may send (for preflights): the upload's two, and `Range`.
const HEADERS: &str = "Content-Type, Content-Disposition, Range";

/// The checks of one API server, built once from its address and flags.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    bound: SocketAddr,
    /// Origins allowed by `--api-cors-origin`, normalized by [`parse_origin`].
    cors: Vec<String>,
    /// Host names allowed by `--api-allowed-host`, normalized by [`parse_host_name`].
    names: Vec<String>,
}

/// What to do with a request.
pub(crate) enum Verdict {
    /// Serve it; with an allowed cross-origin `Origin`, add CORS headers for it to the reply.
    Pass(Option<HeaderValue>),
    /// Answer with this instead of serving (a refusal, or a preflight answered here).
    Answer(HttpResponse),
}

impl Guard {
    pub(crate) fn new(bound: SocketAddr, cors: Vec<String>, names: Vec<String>) -> Self {
        Self { bound, cors, names }
    }

    pub(crate) fn check(&self, req: &HttpRequest) -> Verdict {
        let headers = req.headers();
        // A Host that is not visible ASCII becomes one that no check accepts.
        let host = headers
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or_default());
        // HTTP/1.0 clients may omit Host; browsers never do.
        if let Some(host) = host {
            if !self.host_allowed(host) {
                return refuse(format!(
                    "Refused: Host '{host}' is not this node's address (use 127.0.0.1:{port}, \
                     localhost:{port} or [::1]:{port}, or start the node with \
                     --api-allowed-host NAME)",
                    port = self.bound.port()
                ));
            }
        }
        let origin = headers.get(header::ORIGIN);
        let allowed = origin.filter(|o| self.cors_allowed(o));
        if let Some(origin) = origin {
            let same = host.is_some_and(|h| same_origin(origin, h));
            if !same && allowed.is_none() {
                let text = String::from_utf8_lossy(origin.as_bytes());
                return refuse(format!(
                    "Refused: a page of another origin ({text}) may not use this node's API; \
                     start the node with --api-cors-origin {text} to allow a web app of your own"
                ));
            }
        }
        if allowed.is_none() && cross_site(headers) {
            return refuse(
                "Refused: a cross-site request (Sec-Fetch-Site) without an allowed origin".into(),
            );
        }
        match allowed {
            Some(origin) if is_preflight(req) => Verdict::Answer(preflight(origin)),
            allowed => Verdict::Pass(allowed.cloned()),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        if self.names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return true;
        }
        if port != self.bound.port() {
            return false;
        }
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        let Ok(ip) = name.parse::<IpAddr>() else {
            return false; // a DNS name: what a rebinding attack sends
        };
        ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
            || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
            || ip == self.bound.ip()
            || self.bound.ip().is_unspecified()
    }

    fn cors_allowed(&self, origin: &HeaderValue) -> bool {
        let Ok(text) = origin.to_str() else {
            return false;
        };
        self.cors.iter().any(|o| o.eq_ignore_ascii_case(text))
    }
}

/// Adds the CORS headers for an allowed `origin` to a reply.
pub(crate) fn add_cors(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
}

/// Checks an `--api-cors-origin` value and gives it as browsers write an `Origin`:
/// `scheme://host[:port]`, no path, no trailing slash.
///
/// # Errors
/// A text saying what is wrong, for the command line.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let origin = text.trim().trim_end_matches('/').to_ascii_lowercase();
    if origin == "*" {
        return Err("'*' would let every web page use the node; name the origin".into());
    }
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(|| format!("'{text}' is not an origin (http://host[:port])"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '@']) {
        return Err(format!(
            "'{text}' is not an origin: scheme, host and port only"
        ));
    }
    Ok(origin)
}

/// Checks an `--api-allowed-host` value: a DNS name, without port, scheme or path.
///
/// # Errors
/// A text saying what is wrong, for the command line.
pub(crate) fn parse_host_name(text: &str) -> Result<String, String> {
    let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid {
        return Err(format!(
            "'{text}' is not a host name (letters, digits, '-' and '.'; no port)"
        ));
    }
    Ok(name)
}

/// A `Host` value split into name and port (80 when absent); `None` when malformed.
fn split_host(host: &str) -> Option<(&str, u16)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        (name, after.strip_prefix(':'))
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse().ok()?,
    };
    (!name.is_empty()).then_some((name, port))
}

/// Whether `origin` is the origin of a page served by this node under `host`: over HTTP, or
/// over HTTPS through a proxy in front of it.
fn same_origin(origin: &HeaderValue, host: &str) -> bool {
    origin
        .to_str()
        .ok()
        .and_then(|o| {
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
        })
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v == "cross-site" || v == "same-site")
}

fn is_preflight(req: &HttpRequest) -> bool {
    req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn preflight(origin: &HeaderValue) -> HttpResponse {
    let mut resp = HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, METHODS))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, HEADERS))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish();
    add_cors(resp.headers_mut(), origin.clone());
    resp
}

fn refuse(text: String) -> Verdict {
    tracing::debug!(%text, "request refused");
    Verdict::Answer(
        HttpResponse::build(StatusCode::FORBIDDEN)
            .content_type("text/plain; charset=utf-8")
            .body(text),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_split_into_name_and_port() {
        assert_eq!(split_host("127.0.0.1:8080"), Some(("127.0.0.1", 8080)));
        assert_eq!(split_host("[::1]:8080"), Some(("::1", 8080)));
        assert_eq!(split_host("[::1]"), Some(("::1", 80)));
        assert_eq!(split_host("localhost"), Some(("localhost", 80)));
        assert_eq!(split_host("::1:8080"), None, "IPv6 needs brackets");
        assert_eq!(split_host(":8080"), None);
        assert_eq!(split_host("a:b"), None);
    }

    #[test]
    fn origins_are_checked_and_normalized() {
        assert_eq!(
            parse_origin("HTTPS://App.Example:3000/").as_deref(),
            Ok("https://app.example:3000")
        );
        assert!(parse_origin("*").is_err());
        assert!(parse_origin("http://a.example/path").is_err());
        assert!(parse_origin("a.example").is_err());
        assert_eq!(
            parse_host_name("NAS.Example.").as_deref(),
            Ok("nas.example")
        );
        for bad in ["", "nas.example:80", "http://nas.example", "a b"] {
            assert!(parse_host_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_loopback_node_accepts_its_own_names_only() {
        let guard = Guard::new(([127, 0, 0, 1], 8080).into(), Vec::new(), Vec::new());
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(guard.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1:8081",
            "127.0.0.1",
            "10.0.0.1:8080",
        ] {
            assert!(!guard.host_allowed(bad), "{bad}");
        }
        let everywhere = Guard::new(([0, 0, 0, 0], 80).into(), Vec::new(), Vec::new());
        assert!(everywhere.host_allowed("192.168.1.2"));
        assert!(!everywhere.host_allowed("nas.example"));
        let named = Guard::new(
            ([0, 0, 0, 0], 80).into(),
            Vec::new(),
            vec!["nas.example".into()],
        );
        assert!(named.host_allowed("NAS.example:8443"));
        assert!(!named.host_allowed("nas.example.evil.example"));
    }
}
