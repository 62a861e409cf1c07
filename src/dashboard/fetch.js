// Fetch by CID: `POST /data/{cid}/network` starts a background fetch, `/network/progress` is
// polled for its figures, `DELETE /data/{cid}` cancels it (and frees what it stored), and the
// local download link appears once it is complete. Fetches the node reports in `/debug/info`
// (`partialDatasets`) are shown as well. The browser remembers the fetches that started until they
// are dismissed (localStorage, which is per origin and so per node), so that a reload finds
// the finished and stopped ones again too, which `/debug/info` no longer lists; one whose
// dataset the node no longer has at all is dropped.

import { bytes, call, dataUrl, el, json, percent, showError } from "./api.js";

const $ = (id) => document.getElementById(id);
/** Codex's block size, for the rate. */
const BLOCK = 64 * 1024;
/** CID → its list item and poll timer. */
const shown = new Map();
/** Runs when a fetch completes or is cancelled, to redraw what depends on it. */
let onChange = () => {};
/** The localStorage key of the remembered fetches: `[{cid, name}]`, newest first. */
const REMEMBERED = "codex-dashboard-fetches";
/** Fetches remembered at most; the oldest are forgotten first. */
const MAX_REMEMBERED = 50;

function remembered() {
  try {
    const list = JSON.parse(localStorage.getItem(REMEMBERED) || "[]");
    return Array.isArray(list) ? list.filter((f) => typeof f?.cid === "string") : [];
  } catch {
    return []; // no storage (a private window) or a damaged entry: nothing remembered
  }
}

function save(list) {
  try {
    localStorage.setItem(REMEMBERED, JSON.stringify(list.slice(0, MAX_REMEMBERED)));
  } catch {
    // No storage: the page works, and forgets on reload as it did before.
  }
}

/** Remembers a fetch shown, with its file name once known. */
function remember(cid, name) {
  const list = remembered();
  const known = list.find((f) => f.cid === cid);
  save([{ cid, name: name ?? known?.name }, ...list.filter((f) => f.cid !== cid)]);
}

function forget(cid) {
  save(remembered().filter((f) => f.cid !== cid));
}

function label(entry, cid, name) {
  if (name) entry.li.querySelector(".cid").textContent = `${name}: ${cid}`;
}

function explainFetch(status, text) {
  switch (status) {
    case 0: return "The node could not be reached.";
    case 400: return `This is not a CID (400: ${text}).`;
    case 404: return `No peer has this dataset (404: ${text}). The node asked the peers it knows ` +
      "and the DHT; connect it to a node that holds the dataset and try again.";
    case 503: return `The node cannot fetch now: it runs without network, or too many fetches ` +
      `are running (503: ${text}).`;
    case 507: return `The dataset does not fit this node's storage quota (507: ${text}).`;
    default: return `The fetch failed (${status}: ${text}).`;
  }
}

function item(cid) {
  const li = el("li", { "data-cid": cid });
  const name = el("p", { class: "cid" }, cid);
  const bar = el("progress", { max: "100", value: "0", "aria-label": `Progress of ${cid}` });
  const text = el("p", { class: "progress-text", role: "status" }, "Asking the network…");
  const buttons = el("div", { class: "row" });
  const cancel = el("button", { type: "button", class: "danger cancel" }, "Cancel");
  const link = el("a", { class: "button download", href: dataUrl(cid), hidden: "" }, "Download");
  const dismiss = el("button", { type: "button", class: "secondary dismiss", hidden: "" }, "Dismiss");
  buttons.append(cancel, link, dismiss);
  li.append(name, bar, text, buttons);
  const entry = { li, bar, text, cancel, link, dismiss, timer: null };
  cancel.addEventListener("click", async () => {
    clearInterval(entry.timer);
    try {
      await call(`/data/${encodeURIComponent(cid)}`, { method: "DELETE" });
      text.textContent = "Cancelled; what it had stored is freed.";
      onChange(cid);
    } catch (e) {
      text.textContent = `Could not cancel (${e.status}: ${e.text}).`;
    }
    cancel.hidden = true;
    dismiss.hidden = false;
  });
  dismiss.addEventListener("click", () => {
    shown.delete(cid);
    forget(cid);
    li.remove();
    $("fetch-cid").focus();
  });
  $("fetches").prepend(li);
  shown.set(cid, entry);
  return entry;
}

async function poll(cid, entry) {
  let p;
  try {
    p = await json(`/data/${encodeURIComponent(cid)}/network/progress`);
  } catch (e) {
    if ((e.status === 404 || e.status === 400) && entry.restored) {
      // Remembered from an earlier visit, and nothing of it is on the node any more (deleted,
      // expired, or another data directory), or not a CID at all: drop it.
      clearInterval(entry.timer);
      shown.delete(cid);
      forget(cid);
      entry.li.remove();
      return;
    }
    if (e.status === 404) return; // not started yet
    entry.text.textContent = `Progress unknown (${e.status}: ${e.text}).`;
    return;
  }
  const pct = p.complete ? 100 : percent(p.blocksStored, p.blocksTotal);
  entry.bar.value = pct;
  const state = p.complete
    ? "complete"
    : p.fetching
      ? "fetching"
      : p.error
        ? `stopped: ${p.error} (fetch it again to retry)`
        : "paused (fetch it again to resume)";
  // The rate over the last poll, in bytes of 64 KiB blocks.
  const now = performance.now();
  let rate = "";
  if (!p.complete && p.fetching && entry.last && now > entry.last.at) {
    const perSecond = ((p.blocksStored - entry.last.stored) * BLOCK) / ((now - entry.last.at) / 1000);
    rate = `, ${bytes(Math.max(perSecond, 0))}/s`;
  }
  entry.last = { at: now, stored: p.blocksStored };
  entry.text.textContent = `${p.blocksStored} of ${p.blocksTotal} blocks (${pct} %): ${state}${rate}`;
  if (p.complete) {
    clearInterval(entry.timer);
    entry.text.classList.add("done");
    entry.cancel.hidden = true;
    entry.link.hidden = false;
    entry.dismiss.hidden = false;
    onChange(cid);
  }
}

/** Polls a fetch that started (here, elsewhere or before a reload), and remembers it. */
function watch(cid, name) {
  const entry = shown.get(cid) || item(cid);
  label(entry, cid, name);
  remember(cid, name);
  clearInterval(entry.timer);
  entry.timer = setInterval(() => poll(cid, entry), 500);
  poll(cid, entry);
}

async function start(cid) {
  showError($("fetch-error"), "");
  const entry = shown.get(cid) || item(cid);
  entry.restored = false;
  entry.text.textContent = "Asking the network…";
  entry.cancel.hidden = false;
  entry.dismiss.hidden = true;
  try {
    const answer = await json(`/data/${encodeURIComponent(cid)}/network`, { method: "POST" });
    watch(cid, answer.manifest?.filename);
  } catch (e) {
    entry.text.textContent = "Not started.";
    entry.cancel.hidden = true;
    entry.dismiss.hidden = false;
    showError($("fetch-error"), explainFetch(e.status, e.text));
  }
}

/** Sets up the form; `changed` runs once a fetch has everything, or is cancelled. */
export function setupFetch(changed) {
  onChange = changed;
  $("fetch-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const cid = $("fetch-cid").value.trim();
    if (cid) start(cid);
  });
  // Oldest first, as each new item goes on top.
  for (const { cid, name } of remembered().reverse()) {
    if (shown.has(cid)) continue;
    item(cid).restored = true;
    watch(cid, name);
  }
}

/** Shows the fetches the node reports (`partialDatasets` of `/debug/info`) not yet shown. */
export function showPartial(partial) {
  for (const p of partial || []) {
    if (!shown.has(p.cid)) watch(p.cid);
  }
}
