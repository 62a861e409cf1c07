//! The API refuses what a web page the user happens to open could send it: a foreign `Origin`
//! (cross-site requests, form posts), a `Host` that is not the node's (DNS rebinding), a
//! cross-site `Sec-Fetch-Site` without an allowed origin, and `/connect` with more than 8
//! addresses. Requests without `Origin` (curl, the CLI) keep working, and an origin allowed
//! with `--api-cors-origin` gets CORS answers. All against the real binary.
//!
//! Requests are written on a raw socket: HTTP clients set `Host` themselves, and these tests
//! need to choose it.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use common::{node_process::NodeProcess, *};

/// One reply: status, headers (names in lower case), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request to `addr` with exactly the headers given (plus
/// `Content-Length` and `Connection: close`) and reads the whole reply.
fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TestResult<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no end of headers")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .ok_or("no status line")?
        .parse()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// The node's `Host` as a browser on the same machine writes it.
fn host(node: &NodeProcess) -> String {
    format!("127.0.0.1:{}", node.addr.port())
}

fn start(extra: &[&str]) -> TestResult<(tempfile::TempDir, NodeProcess)> {
    let dir = tempfile::tempdir()?;
    let mut flags = vec!["--no-network"];
    flags.extend_from_slice(extra);
    let node = NodeProcess::spawn(dir.path(), &flags)?;
    Ok((dir, node))
}

#[test]
fn a_cross_origin_upload_is_refused_and_stores_nothing() -> TestResult {
    let (_dir, node) = start(&[])?;
    // What a form post or a `fetch(…, {mode: "no-cors"})` from another site sends.
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let reply = raw(
            node.addr,
            "POST",
            "/api/codex/v1/data",
            &[
                ("Host", &host(&node)),
                ("Origin", origin),
                ("Content-Type", "text/plain"),
            ],
            b"written by another site",
        )?;
        assert_eq!(reply.status, 403, "{origin}: {}", reply.body);
        assert!(reply.body.contains("origin"), "{}", reply.body);
    }
    let (_, space) = get_json(&node, "/space")?;
    assert_eq!(space["totalBlocks"], 0, "{space}");
    let (_, list) = get_json(&node, "/data")?;
    assert_eq!(list["content"], serde_json::json!([]), "{list}");
    Ok(())
}

#[test]
fn a_foreign_host_is_refused() -> TestResult {
    let (_dir, node) = start(&[])?;
    let port = node.addr.port();
    // A DNS name that resolves to 127.0.0.1 after a rebinding: the browser sends its own name.
    for foreign in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        format!("10.0.0.1:{port}"),
    ] {
        let reply = raw(
            node.addr,
            "GET",
            "/api/codex/v1/space",
            &[("Host", &foreign)],
            b"",
        )?;
        assert_eq!(reply.status, 403, "{foreign}: {}", reply.body);
        assert!(reply.body.contains("Host"), "{}", reply.body);
        let reply = raw(
            node.addr,
            "POST",
            "/api/codex/v1/data",
            &[("Host", &foreign)],
            b"rebound",
        )?;
        assert_eq!(reply.status, 403, "{foreign}: {}", reply.body);
    }
    let (_, space) = get_json(&node, "/space")?;
    assert_eq!(space["totalBlocks"], 0, "{space}");
    Ok(())
}

#[test]
fn connect_takes_at_most_8_addresses() -> TestResult {
    let (_dir, node) = start(&[])?;
    let peer = "16Uiu2HAmRuJyNXxcmdbs5D9nWJm7AjF5BKJFH9qW4C7aVPeTcgtv";
    let addrs = |n: u16| {
        (0..n)
            .map(|i| format!("addrs=/ip4/127.0.0.1/tcp/{}", 40_000 + i))
            .collect::<Vec<_>>()
            .join("&")
    };
    let (status, body) = text(
        agent()
            .get(node.url(&format!("/connect/{peer}?{}", addrs(9))))
            .call()?,
    )?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 8"), "{body}");
    // Eight pass the count (this node has no network, so the dial itself is refused).
    let (status, body) = text(
        agent()
            .get(node.url(&format!("/connect/{peer}?{}", addrs(8))))
            .call()?,
    )?;
    assert!(!body.contains("at most 8"), "{status} {body}");
    Ok(())
}

#[test]
fn an_allowed_cors_origin_gets_cors_answers() -> TestResult {
    let app = "http://127.0.0.1:5173";
    let (_dir, node) = start(&[
        "--api-cors-origin",
        app,
        "--api-cors-origin",
        "https://my.example",
    ])?;
    // The browser's preflight for an upload with a filename.
    let reply = raw(
        node.addr,
        "OPTIONS",
        "/api/codex/v1/data",
        &[
            ("Host", &host(&node)),
            ("Origin", app),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "content-type,content-disposition",
            ),
        ],
        b"",
    )?;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(reply.header("access-control-allow-origin"), Some(app));
    let methods = reply.header("access-control-allow-methods").unwrap_or("");
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed = reply
        .header("access-control-allow-headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(allowed.contains("content-disposition"), "{allowed}");

    let reply = raw(
        node.addr,
        "POST",
        "/api/codex/v1/data",
        &[
            ("Host", &host(&node)),
            ("Origin", app),
            ("Content-Type", "text/plain"),
            ("Content-Disposition", "attachment; filename=\"a.txt\""),
        ],
        b"from my own app",
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("access-control-allow-origin"), Some(app));
    let cid = reply.body.clone();
    let reply = raw(
        node.addr,
        "GET",
        &format!("/api/codex/v1/data/{cid}"),
        &[("Host", &host(&node)), ("Origin", "https://my.example")],
        b"",
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("https://my.example")
    );
    let exposed = reply.header("access-control-expose-headers").unwrap_or("");
    assert!(exposed.contains("Content-Disposition"), "{exposed}");

    // Any other origin is still refused, preflight or not.
    let reply = raw(
        node.addr,
        "OPTIONS",
        "/api/codex/v1/data",
        &[
            ("Host", &host(&node)),
            ("Origin", "http://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    )?;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.header("access-control-allow-origin"), None);
    Ok(())
}

#[test]
fn requests_without_origin_still_work() -> TestResult {
    let (_dir, node) = start(&[])?;
    let port = node.addr.port();
    // curl and the CLI: no Origin, Host as they write it.
    let cid = upload_ok(&node, b"sent by curl")?;
    let (status, _, body) = download(&node, &cid, None)?;
    assert_eq!((status, &body[..]), (200, &b"sent by curl"[..]));
    for name in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let reply = raw(
            node.addr,
            "GET",
            "/api/codex/v1/space",
            &[("Host", &name)],
            b"",
        )?;
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
    }
    // HTTP/1.0 clients may send no Host at all.
    let mut stream = TcpStream::connect(node.addr)?;
    stream.write_all(b"GET /api/codex/v1/space HTTP/1.0\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    // The node's own pages: same origin, as a browser sends it.
    let reply = raw(
        node.addr,
        "DELETE",
        &format!("/api/codex/v1/data/{cid}"),
        &[
            ("Host", &host(&node)),
            ("Origin", &format!("http://{}", host(&node))),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        b"",
    )?;
    assert_eq!(reply.status, 204, "{}", reply.body);
    Ok(())
}

#[test]
fn a_cross_site_request_without_origin_is_refused() -> TestResult {
    let (_dir, node) = start(&[])?;
    // `<img src="http://127.0.0.1:8080/api/codex/v1/connect/…">` on another site: a GET with no
    // Origin, which browsers mark with `Sec-Fetch-Site: cross-site`.
    for site in ["cross-site", "same-site"] {
        let reply = raw(
            node.addr,
            "GET",
            "/api/codex/v1/space",
            &[("Host", &host(&node)), ("Sec-Fetch-Site", site)],
            b"",
        )?;
        assert_eq!(reply.status, 403, "{site}: {}", reply.body);
    }
    // Typed into the address bar or opened from a bookmark.
    let reply = raw(
        node.addr,
        "GET",
        "/api/codex/v1/space",
        &[("Host", &host(&node)), ("Sec-Fetch-Site", "none")],
        b"",
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    Ok(())
}

#[test]
fn bound_to_every_interface_ip_hosts_pass_and_names_do_not() -> TestResult {
    let (_dir, node) = start(&["--api-bindaddr", "0.0.0.0"])?;
    let port = node.addr.port();
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    for (name, status) in [
        (format!("127.0.0.1:{port}"), 200),
        (format!("localhost:{port}"), 200),
        (format!("192.168.1.20:{port}"), 200),
        (format!("[fe80::1]:{port}"), 200),
        (format!("nas.example:{port}"), 403),
        (format!("192.168.1.20:{}", port.wrapping_add(1)), 403),
    ] {
        let reply = raw(local, "GET", "/api/codex/v1/space", &[("Host", &name)], b"")?;
        assert_eq!(reply.status, status, "{name}: {}", reply.body);
    }
    Ok(())
}

#[test]
fn an_allowed_host_name_passes_on_any_port() -> TestResult {
    // Behind a reverse proxy, or scraped by Prometheus under the machine's name.
    let (_dir, node) = start(&[
        "--api-bindaddr",
        "0.0.0.0",
        "--api-allowed-host",
        "NAS.example",
    ])?;
    let port = node.addr.port();
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    for (name, status) in [
        (format!("nas.example:{port}"), 200),
        ("nas.example".to_string(), 200),
        ("NAS.EXAMPLE:443".to_string(), 200),
        (format!("other.example:{port}"), 403),
        (format!("nas.example.evil.example:{port}"), 403),
    ] {
        let reply = raw(local, "GET", "/api/codex/v1/space", &[("Host", &name)], b"")?;
        assert_eq!(reply.status, status, "{name}: {}", reply.body);
    }
    // The node's own page under that name, served over HTTPS by the proxy.
    let reply = raw(
        local,
        "POST",
        "/api/codex/v1/data",
        &[("Host", "nas.example"), ("Origin", "https://nas.example")],
        b"through the proxy",
    )?;
    assert_eq!(reply.status, 200, "{}", reply.body);
    Ok(())
}
