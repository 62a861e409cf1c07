//! The dashboard in a real browser: Debian's Chromium, headless, driven through chromedriver,
//! against the real binary. One test uploads a file through the page (a refused name first, a
//! dropped file last), copies its CID, downloads it back byte-exact, deletes it and sees it
//! gone; another fetches a CID from a second node, watches the progress reach 100 %, finds the
//! finished fetch again after a reload and dismisses it for good; a third cancels a fetch, which
//! a reload then drops; a fourth switches the system's colour scheme to light and to dark and
//! measures the contrast of every text in both. Screenshots of each state go to
//! `target/screenshots/`. One more test, with no browser, checks `--no-dashboard` and the
//! page's headers.
//!
//! Where no Chromium is installed the browser tests print `SKIP: … because …` and return, except
//! under CI (`CI` set), where a missing browser is a failure: `.ci/run` installs it (see
//! `common/webdriver.rs`).

mod common;

use common::{
    node_process::NodeProcess,
    peers::*,
    webdriver::{Browser, STEP},
    *,
};

/// A browser showing the dashboard of `node`, its figures loaded.
fn open(test: &str, node: &NodeProcess) -> TestResult<Option<Browser>> {
    let Some(browser) = Browser::start_or_skip(test)? else {
        return Ok(None);
    };
    show_dashboard(&browser, node)?;
    Ok(Some(browser))
}

/// Reloads the dashboard of `node` in `page` and waits for its figures.
fn show_dashboard(page: &Browser, node: &NodeProcess) -> TestResult {
    page.goto(&format!("http://{}/", node.addr))?;
    page.wait(
        "the storage figures",
        "$('storage-quota').textContent !== '–'",
    )
}

/// The controls a screen reader could not name (no label, ARIA name or text), as HTML.
fn unnamed_controls(page: &Browser) -> TestResult<String> {
    page.text(
        "[...document.querySelectorAll('input, button, a, progress, select, textarea')] \
         .filter((e) => !(e.labels?.length || e.getAttribute('aria-label') \
           || e.getAttribute('aria-labelledby') || e.textContent.trim())) \
         .map((e) => e.outerHTML).join('\\n')",
    )
}

/// Every visible text on the page whose colour has a contrast under 4.5:1 (WCAG's AA for body
/// text) against the background it sits on, one line each; disabled controls are exempt. The
/// background is the nearest opaque one among the element and its ancestors.
fn low_contrast(page: &Browser) -> TestResult<String> {
    page.text(
        "(() => { \
           const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number); \
           const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; \
             return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }) \
             .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0); \
           const bg = (e) => { for (; e; e = e.parentElement) { \
             const c = rgb(getComputedStyle(e).backgroundColor); \
             if (c.length === 3 || c[3] > 0.5) return c; } return [255, 255, 255]; }; \
           const out = []; \
           for (const e of document.querySelectorAll('body *')) { \
             const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim()); \
             if (!own || !e.getClientRects().length || e.disabled) continue; \
             const [a, b] = [lum(rgb(getComputedStyle(e).color)), lum(bg(e))]; \
             const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05); \
             if (ratio < 4.5) out.push(`${ratio.toFixed(2)} ${e.tagName} ${e.className} \
               ${e.textContent.trim().slice(0, 40)}`); } \
           return out.join('\\n'); })()",
    )
}

fn unhex(text: &str) -> TestResult<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| {
            Ok(u8::from_str_radix(
                text.get(i..i + 2).ok_or("odd hex")?,
                16,
            )?)
        })
        .collect()
}

#[test]
fn the_page_uploads_lists_downloads_and_deletes_a_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::spawn(dir.path(), &["--no-network"])?;
    let test = "the_page_uploads_lists_downloads_and_deletes_a_file";
    let Some(page) = open(test, &node)? else {
        return Ok(());
    };
    page.wait("an empty list", "!$('datasets-empty').hidden")?;
    page.screenshot("dashboard-1-empty")?;
    assert_eq!(unnamed_controls(&page)?, "", "controls without a name");

    // A name Codex refuses: the 422 is explained in words, and nothing is stored.
    let files = tempfile::tempdir()?;
    let refused = files.path().join("a|b.txt");
    std::fs::write(&refused, b"refused")?;
    page.type_into("#file-input", refused.to_str().ok_or("path")?)?;
    page.wait("the refusal", "!$('upload-error').hidden")?;
    let said = page.text("$('upload-error').textContent")?;
    assert!(
        said.contains("refused the file's name or type (422"),
        "{said}"
    );
    page.screenshot("dashboard-1-refused")?;
    let (_, space) = get_json(&node, "/space")?;
    assert_eq!(space["totalBlocks"], 0, "{space}");

    // A name with a space and non-ASCII letters, and 3 blocks and a bit.
    let path = files.path().join("résumé 2026.txt");
    let data = pattern(200_000);
    std::fs::write(&path, &data)?;
    page.type_into("#file-input", path.to_str().ok_or("path")?)?;
    page.wait("the CID", "$('upload-cid').value.startsWith('z')")?;
    let cid = page.text("$('upload-cid').value")?;
    let row = format!("#dataset-rows tr[data-cid='{cid}']");
    let in_row = |css: &str| format!("document.querySelector(\"{row} {css}\")");
    page.wait("the dataset listed", &format!("{} !== null", in_row("")))?;
    let name = page.text(&format!("{}.textContent", in_row("td.name")))?;
    assert_eq!(name, "résumé 2026.txt");
    // Every dataset expires (the default TTL): its expiry is shown, as a date.
    let expiry = page.text(&format!("{}.textContent", in_row("td.expiry")))?;
    let hidden = page.eval(&format!("{}.hidden", in_row("td.expiry")))?;
    assert!(
        hidden == false && expiry.chars().any(|c| c.is_ascii_digit()),
        "the dataset's expiry is not shown: {expiry:?} (hidden: {hidden})"
    );
    let said = page.text("$('upload-text').textContent")?;
    assert!(said.starts_with("Stored: 195.3 KiB in"), "{said}");
    page.click("#copy-cid")?;
    page.wait(
        "the copy",
        "$('copy-status').textContent === 'Copied to the clipboard.'",
    )?;
    page.screenshot("dashboard-2-uploaded")?;
    assert_eq!(unnamed_controls(&page)?, "", "controls without a name");
    // The filename and MIME type went into the manifest, as Codex records them.
    let (_, list) = get_json(&node, "/data")?;
    let manifest = &list["content"][0]["manifest"];
    assert_eq!(manifest["filename"], "résumé 2026.txt", "{list}");
    assert_eq!(manifest["mimetype"], "text/plain", "{list}");
    assert_eq!(manifest["datasetSize"], 200_000, "{list}");

    // The row's download link, followed by the browser: the same bytes, under the file's name.
    let link = in_row("a.download");
    let got = page.text(&format!(
        "fetch({link}.href).then(async (r) => {{ \
           const bytes = new Uint8Array(await r.arrayBuffer()); \
           return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(''); }})"
    ))?;
    assert!(
        unhex(&got)? == data,
        "the page's download link gave other bytes"
    );
    assert_eq!(page.text(&format!("{link}.download"))?, "résumé 2026.txt");
    let href = page.text(&format!("{link}.href"))?;
    assert_eq!(href, node.url(&format!("/data/{cid}")));
    let (status, headers, body) = download(&node, &cid, None)?;
    assert!(status == 200 && body == data);
    assert!(headers.contains_key("content-disposition"));

    // Delete asks first; keeping it keeps it.
    page.click(&format!("{row} button.delete"))?;
    page.wait("the confirmation", "$('confirm').open")?;
    page.screenshot("dashboard-3-confirm-delete")?;
    page.click("#confirm-cancel")?;
    page.wait("the dialog closed", "!$('confirm').open")?;
    let (_, list) = get_json(&node, "/data")?;
    assert_eq!(list["content"].as_array().map(Vec::len), Some(1), "{list}");
    page.click(&format!("{row} button.delete"))?;
    page.wait("the confirmation", "$('confirm').open")?;
    page.click("#confirm-ok")?;
    let gone = format!("{} === null && !$('datasets-empty').hidden", in_row(""));
    page.wait("the dataset gone", &gone)?;
    page.screenshot("dashboard-4-deleted")?;
    let (_, list) = get_json(&node, "/data")?;
    assert_eq!(list["content"], serde_json::json!([]), "{list}");
    let (_, space) = get_json(&node, "/space")?;
    assert_eq!(space["totalBlocks"], 0, "{space}");

    // A file dropped on the zone is uploaded the same way.
    page.eval(
        "(() => { const files = new DataTransfer(); \
           files.items.add(new File(['dropped here'], 'dropped.txt', { type: 'text/plain' })); \
           $('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: files, bubbles: true, \
             cancelable: true })); return true; })()",
    )?;
    page.wait(
        "the dropped file listed",
        "$('dataset-rows').textContent.includes('dropped.txt')",
    )?;
    let (_, list) = get_json(&node, "/data")?;
    assert_eq!(
        list["content"][0]["manifest"]["filename"], "dropped.txt",
        "{list}"
    );
    Ok(())
}

#[test]
fn the_page_fetches_a_cid_from_another_node_to_100_percent() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let a = NodeProcess::spawn(dirs[0].path(), &[])?;
    let b = NodeProcess::spawn(dirs[1].path(), &[])?;
    let data = pattern(3 * 1024 * 1024 + 12_345); // 49 blocks
    let (status, cid) = upload(&a, &data, Some("holiday.mkv"), Some("video/x-matroska"))?;
    assert_eq!(status, 200, "{cid}");
    connect_to(&b, &a)?;

    let test = "the_page_fetches_a_cid_from_another_node_to_100_percent";
    let Some(page) = open(test, &b)? else {
        return Ok(());
    };
    let b_id = peer_id(&b)?;
    page.wait(
        "B's peer id",
        &format!("$('peer-id').textContent === '{b_id}'"),
    )?;
    page.type_into("#fetch-cid", &cid)?;
    page.click("#fetch-form button[type=submit]")?;
    let item =
        |css: &str| format!("document.querySelector(\"#fetches li[data-cid='{cid}'] {css}\")");
    let done = format!(
        "{}?.textContent === '49 of 49 blocks (100 %): complete'",
        item(".progress-text")
    );
    page.wait("the fetch at 100 %", &done)?;
    page.wait(
        "the download link",
        &format!("!{}.hidden", item("a.download")),
    )?;
    let listed = format!("document.querySelector(\"#dataset-rows tr[data-cid='{cid}']\") !== null");
    page.wait("the fetched dataset listed", &listed)?;
    // The panel shows the peer the blocks came from, and the count, once it refreshes.
    page.wait("a peer", "$('peer-rows').children.length > 0")?;
    // The 49 leaves and the manifest, as `/debug/info` counts them.
    let received = "$('exchange-figures').querySelector('[data-key=blocksReceived]')?.textContent";
    let counted = exchange_counter(&b, "blocksReceived")?;
    assert!(counted >= 50, "{counted}");
    page.wait(
        "the blocks received",
        &format!("{received} === '{counted}'"),
    )?;
    page.screenshot("dashboard-5-fetched")?;
    // After a reload the finished fetch is still shown, named by its file, although
    // `/debug/info` lists only running ones: the browser remembers it until it is dismissed.
    page.goto(&format!("http://{}/", b.addr))?;
    page.wait("the finished fetch after a reload", &done)?;
    page.wait(
        "its file name",
        &format!("{}.textContent === 'holiday.mkv: {cid}'", item(".cid")),
    )?;
    page.click(&format!("#fetches li[data-cid='{cid}'] button.dismiss"))?;
    show_dashboard(&page, &b)?;
    let items = page.eval("document.querySelectorAll('#fetches li').length")?;
    assert_eq!(items, 0, "a dismissed fetch came back after a reload");
    let (_, p) = progress(&b, &cid)?;
    assert_eq!(p["complete"], true, "{p}");
    let (status, _, body) = download(&b, &cid, None)?;
    assert!(status == 200 && body == data, "B holds other bytes");
    Ok(())
}

#[test]
fn the_page_cancels_a_fetch_and_frees_what_it_stored() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let a = NodeProcess::spawn(dirs[0].path(), &[])?;
    let b = NodeProcess::spawn(dirs[1].path(), &[])?;
    let data = pattern(64 * 1024 * 1024); // 1024 blocks
    let cid = upload_ok(&a, &data)?;
    connect_to(&b, &a)?;
    let empty = space(&b)?;
    let test = "the_page_cancels_a_fetch_and_frees_what_it_stored";
    let Some(page) = open(test, &b)? else {
        return Ok(());
    };
    // A fetch started elsewhere (curl), its seeder frozen at once so that it stays partial.
    assert_eq!(start_fetch(&b, &cid)?.0, 200);
    std::process::Command::new("kill")
        .args(["-STOP", &a.pid().to_string()])
        .status()?;
    let (_, p) = progress(&b, &cid)?;
    if p["complete"] == true {
        return Err("the fetch ended before its seeder could be stopped: nothing to cancel".into());
    }
    // The page finds it in /debug/info and shows its progress with a Cancel button.
    let item =
        |css: &str| format!("document.querySelector(\"#fetches li[data-cid='{cid}'] {css}\")");
    let cancel = item("button.cancel");
    page.wait(
        "the running fetch",
        &format!("{cancel} !== null && !{cancel}.hidden"),
    )?;
    page.wait(
        "its progress",
        &format!(
            "/of 1024 blocks/.test({}.textContent)",
            item(".progress-text")
        ),
    )?;
    page.screenshot("dashboard-6-fetching")?;
    page.click(&format!("#fetches li[data-cid='{cid}'] button.cancel"))?;
    page.wait(
        "the cancellation",
        &format!(
            "{}.textContent.startsWith('Cancelled')",
            item(".progress-text")
        ),
    )?;
    let freed = eventually(STEP, || Ok(space(&b)? == empty))?;
    assert!(freed, "space {} vs {empty}", space(&b)?);
    assert_eq!(progress(&b, &cid)?.0, 404);
    let reserved = "$('storage-reserved').textContent.startsWith('0 B')";
    page.wait("the reservation given back", reserved)?;
    page.screenshot("dashboard-7-cancelled")?;
    // Remembered, but nothing of it is on the node any more: a reload drops it.
    show_dashboard(&page, &b)?;
    page.wait(
        "the cancelled fetch dropped after a reload",
        &format!("{} === null", item("")),
    )?;
    Ok(())
}

/// The page follows the system's colour scheme, and in both schemes every text keeps its
/// contrast: with datasets listed, a fetch refused and its error said.
#[test]
fn the_page_is_light_or_dark_as_the_system_asks_and_stays_legible() -> TestResult {
    let dir = tempfile::tempdir()?;
    let node = NodeProcess::spawn(dir.path(), &[])?;
    let (status, cid) = upload(&node, &pattern(100_000), Some("notes.txt"), None)?;
    assert_eq!(status, 200, "{cid}");
    let test = "the_page_is_light_or_dark_as_the_system_asks_and_stays_legible";
    let Some(page) = open(test, &node)? else {
        return Ok(());
    };
    page.wait(
        "the dataset listed",
        &format!("document.querySelector(\"#dataset-rows tr[data-cid='{cid}']\") !== null"),
    )?;
    page.type_into("#fetch-cid", "not-a-cid")?;
    page.click("#fetch-form button[type=submit]")?;
    page.wait("the refusal", "!$('fetch-error').hidden")?;
    let background = "getComputedStyle(document.documentElement).backgroundColor";
    for (scheme, expected) in [("light", "rgb(244, 245, 247)"), ("dark", "rgb(18, 21, 28)")] {
        page.prefer_color_scheme(scheme)?;
        page.wait(
            &format!("the {scheme} background"),
            &format!("{background} === '{expected}'"),
        )?;
        page.screenshot(&format!("dashboard-8-{scheme}"))?;
        assert_eq!(low_contrast(&page)?, "", "{scheme}: texts below 4.5:1");
    }
    Ok(())
}

#[test]
fn no_dashboard_leaves_slash_a_404_and_the_page_keeps_to_itself() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let off = NodeProcess::spawn(dirs[0].path(), &["--no-network", "--no-dashboard"])?;
    let root = format!("http://{}/", off.addr);
    let (status, body) = text(agent().get(&root).call()?)?;
    assert_eq!((status, body.as_str()), (404, "No such endpoint"));
    let (status, _) = text(agent().get(format!("{root}dashboard/app.js")).call()?)?;
    assert_eq!(status, 404);

    let on = NodeProcess::spawn(dirs[1].path(), &["--no-network"])?;
    let resp = agent().get(format!("http://{}/", on.addr)).call()?;
    assert_eq!(resp.status(), 200);
    let csp = resp
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let page = resp.into_body().read_to_string()?;
    assert!(page.contains("<script type=\"module\" src=\"/dashboard/app.js\">"));
    let (status, _) = text(
        agent()
            .get(format!("http://{}/dashboard/../Cargo.toml", on.addr))
            .call()?,
    )?;
    assert_eq!(status, 404);
    Ok(())
}
