//! Bad input gets a clear 4xx with a plain-text reason, and leaves the store as it was.

mod common;

use codex_actors::Config;
use common::*;

fn space(node: &TestNode) -> TestResult<serde_json::Value> {
    Ok(get_json(node, "/space")?.1)
}

#[test]
fn invalid_mime_and_filename_get_422_and_store_nothing() -> TestResult {
    let node = TestNode::start()?;
    let before = space(&node)?;
    let (status, body) = upload(&node, b"abc", None, Some("nonsense/type"))?;
    assert_eq!(
        (status, body.as_str()),
        (422, "The MIME type 'nonsense/type' is not valid.")
    );
    let (status, _) = upload(&node, b"abc", None, Some("text/plain; charset=utf-8"))?;
    assert_eq!(status, 422, "parameters are refused, as Codex does");
    // Codex's rules apply to the part after the last '/' (checked against a live node in
    // codex_live.rs): a name, then an extension after the last usable dot.
    for bad in [
        "CON",
        "x/COM1.txt",
        "trailing.",
        "x..txt",
        "a .txt",
        "dir/",
        &"x".repeat(10_000),
    ] {
        let (status, body) = upload(&node, b"abc", Some(bad), None)?;
        assert_eq!(
            (status, body.as_str()),
            (422, "The filename is not valid."),
            "{bad}"
        );
    }
    assert_eq!(space(&node)?, before);
    Ok(())
}

#[test]
fn filenames_with_directories_are_kept_and_echoed_well_formed() -> TestResult {
    // As on Codex, a name with directories is only a label: stored in the manifest, echoed in
    // Content-Disposition, never used as a path (so the upload gets Codex's CID).
    let node = TestNode::start()?;
    for (name, header) in [
        (
            "../../etc/passwd",
            r#"attachment; filename="../../etc/passwd""#,
        ),
        (
            "dir/ünïcode.txt",
            "attachment; filename=\"dir/ünïcode.txt\"",
        ),
        ("COM1.tar.gz", r#"attachment; filename="COM1.tar.gz""#),
        // A quote or backslash can only be in the directory part; escaped on the way out.
        (r#"q"u\d/b.txt"#, r#"attachment; filename="q\"u\\d/b.txt""#),
    ] {
        let (status, cid) = upload(&node, b"abc", Some(name), None)?;
        assert_eq!(status, 200, "{name}: {cid}");
        let (_, m) = get_json(&node, &format!("/data/{cid}/network/manifest"))?;
        assert_eq!(m["manifest"]["filename"], name);
        let (status, headers, body) = download(&node, &cid, None)?;
        assert_eq!((status, body.as_slice()), (200, &b"abc"[..]));
        let got = headers.get("content-disposition").map(|v| v.as_bytes());
        assert_eq!(got, Some(header.as_bytes()), "{name}");
    }
    Ok(())
}

#[test]
fn empty_body_is_a_400_not_codex_500() -> TestResult {
    let node = TestNode::start()?;
    let before = space(&node)?;
    let (status, body) = upload(&node, b"", None, None)?;
    assert_eq!(status, 400);
    assert!(body.contains("empty"), "{body}");
    assert_eq!(space(&node)?, before);
    // The node still serves.
    upload_ok(&node, b"x")?;
    Ok(())
}

#[test]
fn bad_and_unknown_cids() -> TestResult {
    let node = TestNode::start()?;
    let (status, _, body) = download(&node, "not-a-cid", None)?;
    assert_eq!((status, body.as_slice()), (400, &b"Incorrect Cid"[..]));
    // A CIDv0 or a raw-codec CID is a CID, just not one this node can hold: absent, as
    // Codex answers (404, false, 204), not a malformed request.
    for other in [
        "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n",
        "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
    ] {
        let (status, _, body) = download(&node, other, None)?;
        assert_eq!(status, 404, "{other}: {}", String::from_utf8_lossy(&body));
        let (status, exists) = get_json(&node, &format!("/data/{other}/exists"))?;
        assert_eq!(status, 200);
        // Codex's key: base58btc for CIDv1 (whatever base was asked), "Qm…" for CIDv0.
        let key = if other.starts_with('Q') {
            other
        } else {
            "zb2rhk6GMPQF3hfzwXTaNYFLKomMeC6UXdUt6jZKPpeVirLtV"
        };
        assert_eq!(exists, serde_json::json!({ key: false }));
        let (status, _) = text(agent().delete(node.url(&format!("/data/{other}"))).call()?)?;
        assert_eq!(status, 204);
        let (status, _) = get_json(&node, &format!("/data/{other}/network/manifest"))?;
        assert_eq!(status, 404);
    }
    // A well-formed manifest CID that is not stored.
    let (status, _, body) = download(
        &node,
        "zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy",
        None,
    )?;
    assert_eq!(status, 404);
    assert_eq!(
        String::from_utf8(body)?,
        "The requested CID could not be retrieved (Block not found in local store)."
    );
    // A stored data block is not a manifest.
    upload_ok(&node, b"some file contents")?;
    let (status, _, body) = download(
        &node,
        "zDxWB8ED98hxJ51XwYaoQAwMdskCcmTaPR6Ce2wq88bjvjXRYuR9",
        None,
    )?;
    // Codex v0.2.5's answer (not the `{$cid}` text of older versions).
    assert_eq!(
        (status, body.as_slice()),
        (404, &b"Unable to decode as manifest"[..])
    );
    let (status, _) = get_json(&node, "/data/zzz/network/manifest")?;
    assert_eq!(status, 400);
    let (status, exists) = get_json(
        &node,
        "/data/zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy/exists",
    )?;
    assert_eq!(status, 200);
    assert_eq!(
        exists["zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy"],
        true
    );
    Ok(())
}

#[test]
fn unknown_routes_are_404() -> TestResult {
    let node = TestNode::start()?;
    let (status, _) = text(agent().get(node.url("/nope")).call()?)?;
    assert_eq!(status, 404);
    Ok(())
}

#[test]
fn cors_preflight_on_data_routes_is_204() -> TestResult {
    // As Codex answers (with or without a CID that parses): 204, empty body.
    let node = TestNode::start()?;
    for path in [
        "/data",
        "/data/not-a-cid",
        "/data/zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy",
    ] {
        let (status, body) = text(agent().options(node.url(path)).call()?)?;
        assert_eq!((status, body.as_str()), (204, ""), "{path}");
    }
    let (status, _) = text(agent().options(node.url("/space")).call()?)?;
    assert_eq!(status, 404, "as on Codex, only the data routes");
    Ok(())
}

#[test]
fn quota_overflow_is_507_and_rolls_back() -> TestResult {
    // Room for three padded blocks and a manifest, not for five blocks.
    let node = TestNode::start_with(|c| Config {
        quota_max_bytes: 3 * 65536 + 100,
        ..c
    })?;
    let (status, body) = upload(&node, &pattern(5 * 65536), None, None)?;
    assert_eq!(status, 507, "{body}");
    assert!(
        body.starts_with("Quota usage would exceed the limit"),
        "{body}"
    );
    let s = space(&node)?;
    assert_eq!(
        s["quotaUsedBytes"], 0,
        "a failed upload leaves nothing behind"
    );
    assert_eq!(s["totalBlocks"], 0);
    // A fitting upload still works afterwards.
    upload_ok(&node, &pattern(2 * 65536))?;
    assert_eq!(space(&node)?["totalBlocks"], 3);
    Ok(())
}
