//! Our node and a live Codex node (v0.2.5, `../shared/codex`) side by side: the same requests
//! must get the same answers (CIDs, manifest JSON, `/space`, listings, status codes, bodies and
//! headers). Where this node differs on purpose, the test asserts our answer next to Codex's and
//! says why. Every test skips, printing `SKIP: … because …`, only when the Codex binary cannot
//! run on this machine.

mod common;

use common::{
    answer::{ask, ask_both, get, listing, post, same, Answer},
    codex::CodexNode,
    *,
};

/// A fresh Codex node and a fresh node of ours, or `None` (skip) without Codex.
fn pair(test: &str) -> TestResult<Option<(CodexNode, TestNode)>> {
    let Some(codex) = CodexNode::start_or_skip(test)? else {
        return Ok(None);
    };
    Ok(Some((codex, TestNode::start()?)))
}

#[test]
fn same_uploads_give_same_cids_manifests_space_and_listings() -> TestResult {
    let Some((codex, ours)) = pair("same_uploads_give_same_cids_manifests_space_and_listings")?
    else {
        return Ok(());
    };
    let variants: [(Option<&str>, Option<&str>); 4] = [
        (None, None),
        (Some("data.bin"), None),
        (None, Some("application/pdf")),
        (Some("dir/ünïcode.txt"), Some("TEXT/PLAIN")),
    ];
    let mut cids = Vec::new();
    for &size in INTERESTING_SIZES {
        let data = pattern(size);
        for (name, mime) in variants {
            let a = post(&codex, &data, name, mime)?;
            let b = post(&ours, &data, name, mime)?;
            assert_eq!(
                a.status, 200,
                "Codex refused {size} {name:?} {mime:?}: {a:?}"
            );
            assert_eq!(a, b, "upload of {size} bytes, {name:?}, {mime:?}");
            cids.push((a.text(), data.clone(), name, mime));
        }
    }
    let space = get(&codex, "/space")?;
    assert_eq!(space, get(&ours, "/space")?, "same figures, same JSON text");
    // Uploading the same inputs again stores nothing new on either node: the CIDs are the same
    // and Codex counts quota per stored block, not per upload.
    for (cid, data, name, mime) in &cids {
        assert_eq!(&post(&codex, data, *name, *mime)?.text(), cid);
        assert_eq!(&post(&ours, data, *name, *mime)?.text(), cid);
    }
    assert_eq!(get(&codex, "/space")?, space, "Codex: repeats are free");
    assert_eq!(get(&ours, "/space")?, space, "ours: repeats are free");

    for (cid, data, name, mime) in &cids {
        let path = format!("/data/{cid}/network/manifest");
        let manifest = get(&codex, &path)?;
        assert_eq!(manifest.status, 200);
        assert_eq!(manifest, get(&ours, &path)?, "manifest JSON of {cid}");
        let json: serde_json::Value = serde_json::from_str(&manifest.text())?;
        let tree = json["manifest"]["treeCid"].as_str().ok_or("no treeCid")?;
        for probe in [cid.as_str(), tree, BLOCK] {
            let path = format!("/data/{probe}/exists");
            assert_eq!(get(&codex, &path)?, get(&ours, &path)?, "{path}");
        }
        // Downloads: same bytes, same Content-Type, -Disposition and -Length. Ours adds
        // `Access-Control-Expose-Headers: Content-Disposition` here too (Codex sends it only on
        // /network/stream): harmless, it lets a browser read the filename under CORS.
        let a = get(&codex, &format!("/data/{cid}"))?;
        let mut b = get(&ours, &format!("/data/{cid}"))?;
        assert_eq!(a.expose, None);
        assert_eq!(b.expose.take().as_deref(), Some("Content-Disposition"));
        assert_eq!(a, b, "download of {cid}");
        assert!(a.status == 200 && a.body == *data, "content of {cid}");
        let want_type = mime.unwrap_or("application/octet-stream");
        assert_eq!(a.content_type.as_deref(), Some(want_type));
        let want_disposition = name.map_or("attachment".to_owned(), |n| {
            format!("attachment; filename=\"{n}\"")
        });
        assert_eq!(a.disposition.as_deref(), Some(want_disposition.as_str()));
    }

    // The listing: the same entries (entry texts are compared above, through /network/manifest).
    let list = listing(&codex)?;
    assert_eq!(list, listing(&ours)?);
    assert_eq!(list.len(), cids.len(), "one entry per dataset");

    // Deleting the named variants. They share their tree, and so their blocks, with the
    // unnamed ones. On purpose ours keeps those blocks: Codex's delete removes the leaves of
    // the tree (keyed by tree CID and index, the same for both datasets), and with them the
    // blocks of the datasets that remain (its /space drops them; their downloads break).
    for (cid, ..) in cids.iter().filter(|c| c.2.is_some()) {
        let a = ask(&codex, "DELETE", &format!("/data/{cid}"), &[], None)?;
        let b = ask(&ours, "DELETE", &format!("/data/{cid}"), &[], None)?;
        assert_eq!((a.status, b.status), (204, 204));
    }
    assert_eq!(listing(&codex)?, listing(&ours)?);
    let kept: Vec<_> = cids.iter().filter(|c| c.2.is_none()).collect();
    let fresh = TestNode::start()?;
    for (cid, data, name, mime) in &kept {
        assert_eq!(&post(&fresh, data, *name, *mime)?.text(), cid);
        assert_eq!(
            get(&ours, &format!("/data/{cid}"))?.body,
            *data,
            "{cid} intact"
        );
    }
    let space = get(&ours, "/space")?;
    assert_eq!(
        space,
        get(&fresh, "/space")?,
        "as if only the rest was uploaded"
    );
    let blocks = |a: &Answer| -> TestResult<u64> {
        let json: serde_json::Value = serde_json::from_str(&a.text())?;
        json["totalBlocks"]
            .as_u64()
            .ok_or_else(|| "no totalBlocks".into())
    };
    let codex_blocks = blocks(&get(&codex, "/space")?)?;
    assert_eq!(
        codex_blocks,
        kept.len() as u64,
        "Codex kept only the manifests"
    );
    assert!(blocks(&space)? > codex_blocks);
    Ok(())
}

/// "some file contents": the Codex test vector, its manifest, tree and block CIDs.
const MANIFEST: &str = "zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy";
const TREE: &str = "zDzSvJTezk7bJNQqFq8k1iHXY84psNuUfZVusA5bBQQUSuyzDSVL";
const BLOCK: &str = "zDxWB8ED98hxJ51XwYaoQAwMdskCcmTaPR6Ce2wq88bjvjXRYuR9";
/// A manifest CID neither node holds (the 1-byte pattern's, from codex-vectors.json).
const UNKNOWN: &str = "zDvZRwzm6NNMXEw7g75VeGkB9NasXD3UPuFsdxsiTHgvrMDFZkFa";

#[test]
fn cid_answers_match_codex() -> TestResult {
    let Some((codex, ours)) = pair("cid_answers_match_codex")? else {
        return Ok(());
    };
    for node in [&codex as &dyn Api, &ours] {
        assert_eq!(
            post(&node, b"some file contents", None, None)?.text(),
            MANIFEST
        );
    }
    let bad_char = MANIFEST.replace('D', "0"); // '0' is not base58
    let long = format!("z{}", "2".repeat(299));
    const B32: &str = "bagazuaysebextc2bxmno5a4enyhzrqcdufthtgyagolydytmw4g7z5s3l3ypi";
    const B64URL: &str = "uAYGaAxIgSXmLQbsa7oOEbg-YwEOhZnmbADOXgeJstw389lte8PQ";
    // (CID text, what it is, held by both nodes)
    let cases: &[(&str, &str, bool)] = &[
        ("not-a-cid", "not a multibase text", false),
        (&MANIFEST[..40], "truncated", false),
        (&bad_char, "a character outside base58", false),
        (&long, "300 characters", false),
        (MANIFEST, "stored manifest", true),
        (B32, "the same in base32", true),
        (B64URL, "the same in base64url", true),
        (BLOCK, "data block, not a manifest", true),
        (TREE, "tree CID: never a stored block", false),
        (UNKNOWN, "manifest CID not stored", false),
        (
            "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n",
            "CIDv0",
            false,
        ),
        (
            "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
            "raw codec",
            false,
        ),
    ];
    for &(cid, what, held) in cases {
        eprintln!("{what}: {cid}");
        let status = same(&codex, &ours, "GET", &format!("/data/{cid}"))?;
        same(&codex, &ours, "GET", &format!("/data/{cid}/exists"))?;
        let manifest = format!("/data/{cid}/network/manifest");
        if held || status == 400 {
            same(&codex, &ours, "GET", &manifest)?;
        } else {
            // Codex looks a manifest it lacks up in the network and does not answer for
            // minutes; ours has no network and answers at once, as GET /data/{cid} does.
            let b = get(&ours, &manifest)?;
            let want = get(&ours, &format!("/data/{cid}"))?;
            assert_eq!((b.status, b.text()), (404, want.text()), "{what}");
        }
        if !held {
            let want = if status == 400 { 400 } else { 204 };
            assert_eq!(
                same(&codex, &ours, "DELETE", &format!("/data/{cid}"))?,
                want
            );
        }
    }
    // Deleting the dataset by another spelling of its CID.
    assert_eq!(same(&codex, &ours, "DELETE", &format!("/data/{B32}"))?, 204);
    same(&codex, &ours, "GET", &format!("/data/{MANIFEST}/exists"))?;
    assert_eq!(
        same(&codex, &ours, "GET", &format!("/data/{MANIFEST}"))?,
        404
    );
    for node in [&codex as &dyn Api, &ours] {
        assert_eq!(
            post(&node, b"some file contents", None, None)?.text(),
            MANIFEST
        );
    }
    // Spellings of the same CID that Codex refuses ("Incorrect Cid"): base16, base36, and
    // base64 with a raw '+' (it reads it percent-encoded). Ours accepts every multibase the
    // `cid` crate knows, on purpose: answering for a valid spelling of a CID breaks no client.
    for cid in [
        "f01819a03122049798b41bb1aee83846e0f98c043a166799b00339781e26cb70dfcf65b5ef0f4",
        "mAYGaAxIgSXmLQbsa7oOEbg+YwEOhZnmbADOXgeJstw389lte8PQ",
        "k3qug7esgh7c8qwpo7k889g6nhu0dna2wp6g9a8dgpuszrz2iphmqu2vdo4",
    ] {
        let path = format!("/data/{cid}/exists");
        let (a, b) = ask_both(&codex, &ours, "GET", &path, &[], None)?;
        assert_eq!(
            (a.status, a.text().as_str()),
            (400, "Incorrect Cid"),
            "{cid}"
        );
        assert_eq!(
            (b.status, b.text()),
            (200, format!("{{\"{MANIFEST}\":true}}")),
            "{cid}"
        );
    }
    Ok(())
}

#[test]
fn upload_answers_match_codex() -> TestResult {
    let Some((codex, ours)) = pair("upload_answers_match_codex")? else {
        return Ok(());
    };
    let both = |name: Option<&str>, mime: Option<&str>| -> TestResult<(Answer, Answer)> {
        Ok((
            post(&codex, b"abc", name, mime)?,
            post(&ours, b"abc", name, mime)?,
        ))
    };
    for mime in [
        "nonsense/type",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "TEXT/PLAIN",
        "audio/x-wav",
        "text/markdown",
    ] {
        let (a, b) = both(None, Some(mime))?;
        assert_eq!((a.status, a.text()), (b.status, b.text()), "{mime}");
    }
    // Codex checks the name with Nim's isValidFilename on the last path component only:
    // directories, '/', non-ASCII text and anything in the extension pass.
    let long_ok = format!("{}{}.txt", "d/".repeat(200), "x".repeat(255));
    let long_bad = format!("{}.txt", "x".repeat(256));
    let names = [
        "data.bin",
        "a/b.txt",
        "../../etc/passwd",
        "/a",
        "a /b",
        "a\\x/b",
        "a\"x/b.txt",
        "ünïcode.txt",
        "é",
        ".hidden",
        "a.b.",
        "a/.b",
        "COM1.tar.gz",
        "COM1/x",
        "a.b:c",
        "a.b?",
        &long_ok, // 255 + 4 bytes after the last '/': the limit, whatever the directories
        // refused by both
        "a/",
        "/",
        "..",
        "...",
        "a.",
        "x..txt",
        "a .txt",
        "x/ a",
        "con",
        "COM0",
        "LPT0.txt",
        "x/CON.txt",
        "CON.txt.",
        "a:b",
        "a\\b",
        "a*b",
        "a?b",
        "a<b",
        "a>b",
        "a|b",
        "a^b",
        &long_bad,
    ];
    for name in names {
        let (a, b) = both(Some(name), None)?;
        assert_eq!((a.status, a.text()), (b.status, b.text()), "{name}");
    }
    // On purpose: control characters in a filename are refused (Codex stores them and echoes
    // them into the Content-Disposition header of downloads).
    let (a, b) = both(Some("a\tb"), None)?;
    assert_eq!((a.status, b.status), (200, 422));
    // On purpose: a filename that is not UTF-8 is refused (Codex stores the bytes, and its
    // manifest JSON then is not valid UTF-8).
    let raw_name = ureq::http::HeaderValue::from_bytes(b"attachment; filename=\"\xff.bin\"")?;
    let mut statuses = Vec::new();
    for node in [&codex as &dyn Api, &ours] {
        let req = agent().post(node.url("/data"));
        let resp = req
            .header("Content-Disposition", raw_name.clone())
            .send(&b"abc"[..])?;
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 422]);
    // On purpose: an empty upload is a client error, 400 with a reason (Codex: 500).
    let (a, b) = ask_both(&codex, &ours, "POST", "/data", &[], Some(b""))?;
    assert_eq!(
        (a.status, a.text().as_str()),
        (500, "Request do not have body available")
    );
    assert_eq!(b.status, 400, "{b:?}");
    Ok(())
}

#[test]
fn mime_table_is_codex_table() -> TestResult {
    let Some((codex, ours)) = pair("mime_table_is_codex_table")? else {
        return Ok(());
    };
    let table = include_str!("../src/api/codex_mime_types.txt");
    let types: Vec<&str> = table.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(types.len() > 700, "{}", types.len());
    for mime in types {
        let (a, b) = (
            post(&codex, b"m", None, Some(mime))?,
            post(&ours, b"m", None, Some(mime))?,
        );
        assert_eq!((a.status, a.text()), (b.status, b.text()), "{mime}");
        assert_eq!(a.status, 200, "{mime} is in Codex's table");
    }
    // Common types missing from Codex's table (some in other tables, like mime_guess's).
    for mime in [
        "text/markdown",
        "text/xml",
        "application/gzip",
        "application/javascript",
        "image/avif",
        "audio/wav",
        "audio/flac",
        "application/ld+json",
        "image/jpg",
        "application/yaml",
    ] {
        let (a, b) = (
            post(&codex, b"m", None, Some(mime))?,
            post(&ours, b"m", None, Some(mime))?,
        );
        assert_eq!((a.status, a.text()), (b.status, b.text()), "{mime}");
        assert_eq!(a.status, 422, "{mime}");
    }
    Ok(())
}

#[test]
fn deletes_match_codex() -> TestResult {
    let Some((codex, ours)) = pair("deletes_match_codex")? else {
        return Ok(());
    };
    let data = pattern(3 * 65536 + 5);
    let cid = post(&codex, &data, None, None)?.text();
    assert_eq!(post(&ours, &data, None, None)?.text(), cid);
    // A block of the dataset: the first block of the pattern is the 65536-byte vector's.
    let block = "zDxWB8ED8W2DLHFAUcs8RzXC3xZHFpQ83z8zMyF4EHzZVGuSwMoY";
    same(&codex, &ours, "GET", &format!("/data/{block}/exists"))?;
    // On purpose: deleting a block a dataset uses is 409 Conflict (Codex: 500), same text.
    let (a, b) = ask_both(
        &codex,
        &ours,
        "DELETE",
        &format!("/data/{block}"),
        &[],
        None,
    )?;
    assert_eq!((a.status, b.status), (500, 409));
    assert_eq!(a.text(), b.text());
    assert_eq!(
        a.text(),
        "Directly deleting a block that is part of a dataset is not allowed."
    );
    assert_eq!(same(&codex, &ours, "DELETE", &format!("/data/{cid}"))?, 204);
    assert_eq!(get(&codex, "/space")?, get(&ours, "/space")?);
    same(&codex, &ours, "GET", &format!("/data/{cid}/exists"))?;
    same(&codex, &ours, "GET", &format!("/data/{block}/exists"))?;
    assert!(get(&ours, &format!("/data/{block}/exists"))?
        .text()
        .ends_with(":false}"));
    assert_eq!(
        same(&codex, &ours, "DELETE", &format!("/data/{cid}"))?,
        204,
        "again"
    );
    assert_eq!(same(&codex, &ours, "GET", &format!("/data/{cid}"))?, 404);
    assert_eq!(listing(&codex)?, listing(&ours)?);
    // The harness stops Codex on drop: its API no longer answers.
    let url = codex.url("/space");
    drop(codex);
    assert!(agent().get(&url).call().is_err(), "Codex still answers");
    Ok(())
}

#[test]
fn download_headers_ranges_and_preflight_match_codex() -> TestResult {
    let Some((codex, ours)) = pair("download_headers_ranges_and_preflight_match_codex")? else {
        return Ok(());
    };
    let data = pattern(1000);
    // A name whose directory part holds a quote and a backslash (the name part cannot).
    let name = "q\"u\\d/b.txt";
    let cid = post(&codex, &data, Some(name), Some("text/csv"))?.text();
    assert_eq!(
        post(&ours, &data, Some(name), Some("text/csv"))?.text(),
        cid
    );
    let path = format!("/data/{cid}");
    let (a, b) = ask_both(&codex, &ours, "GET", &path, &[], None)?;
    assert_eq!(
        (a.status, &a.body, &a.content_type),
        (b.status, &b.body, &b.content_type)
    );
    assert_eq!(a.length, b.length);
    // On purpose: the name is escaped as a quoted-string (RFC 9110), so a client reads back the
    // stored name; Codex writes it raw, which here ends the quoted string early.
    assert_eq!(
        a.disposition.as_deref(),
        Some(r#"attachment; filename="q"u\d/b.txt""#)
    );
    assert_eq!(
        b.disposition.as_deref(),
        Some(r#"attachment; filename="q\"u\\d/b.txt""#)
    );

    // Range: Codex ignores it (200, whole body). On purpose ours serves a valid range (206) and
    // refuses one that starts past the end (416), as RFC 9110 says.
    let range = |r: &str| ask_both(&codex, &ours, "GET", &path, &[("Range", r)], None);
    let (a, b) = range("bytes=10-19")?;
    assert_eq!((a.status, a.body.len()), (200, 1000));
    assert_eq!((b.status, b.body.as_slice()), (206, &data[10..20]));
    let (a, b) = range("bytes=1000-")?;
    assert_eq!((a.status, b.status), (200, 416));
    // A Range header we cannot use (other unit, bad syntax, several ranges) is ignored by both.
    for r in [
        "bytes=x-y",
        "lines=1-2",
        "bytes=9-3",
        "bytes=0-1,5-6",
        "bytes",
    ] {
        let (a, b) = range(r)?;
        assert_eq!((a.status, &a.body), (200, &data), "{r}");
        assert_eq!((b.status, &b.body), (200, &data), "{r}");
    }

    // CORS preflight on the data routes: 204 with an empty body on both, whatever the CID.
    for p in ["/data", path.as_str(), "/data/not-a-cid"] {
        assert_eq!(same(&codex, &ours, "OPTIONS", p)?, 204, "{p}");
    }
    // Methods and routes neither serves.
    for (m, p) in [
        ("PUT", "/data"),
        ("POST", "/space"),
        ("HEAD", path.as_str()),
        ("OPTIONS", "/space"),
    ] {
        let (a, b) = ask_both(&codex, &ours, m, p, &[], None)?;
        assert_eq!((a.status, b.status), (404, 404), "{m} {p}");
    }
    Ok(())
}
