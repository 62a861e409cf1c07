// The datasets this node holds (`GET /data`): filename, size, CID, expiry (when a dataset has
// one), a download link and a delete button that asks first.

import { call, dataUrl, el, bytes, json, showError } from "./api.js";

const $ = (id) => document.getElementById(id);

/** Asks in the page's own dialog (keyboard and screen readers handle it like any dialog);
 * resolves true when the user confirms. */
export function confirmDialog(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

/** Why a delete was refused, in words. */
function explainDelete(status, text) {
  switch (status) {
    case 0: return "The node could not be reached.";
    case 400: return `This is not a CID (400: ${text}).`;
    case 409: return `The node kept it (409: ${text}). This CID names a block that a dataset still ` +
      "uses; delete that dataset (by its manifest CID) instead.";
    default: return `The delete failed (${status}: ${text}).`;
  }
}

/** The expiry `GET /data?expiry=true` gives (Unix seconds), shown as local time; the column hides when no dataset has one. */
function expiryOf(entry) {
  const at = entry.expiry ?? entry.manifest?.expiry;
  return typeof at === "number" ? new Date(at * 1000).toLocaleString() : null;
}

function row(entry, reload) {
  const m = entry.manifest || {};
  const name = m.filename || "(no name)";
  const tr = el("tr", { "data-cid": entry.cid });
  tr.append(el("td", { class: "name" }, name));
  tr.append(el("td", { class: "num", title: `${m.datasetSize} bytes` }, bytes(m.datasetSize)));
  const cidCell = el("td");
  cidCell.append(el("code", { class: "cid" }, entry.cid));
  tr.append(cidCell);
  const expiry = expiryOf(entry);
  tr.append(el("td", { class: "expiry", hidden: expiry ? null : "" }, expiry || "–"));
  const actions = el("td", { class: "actions" });
  const link = el("a", {
    class: "button secondary download", href: dataUrl(entry.cid),
    download: m.filename ? m.filename.split("/").pop() : entry.cid,
    "aria-label": `Download ${name}`,
  }, "Download");
  const del = el("button", { type: "button", class: "danger delete", "aria-label": `Delete ${name}` }, "Delete");
  del.addEventListener("click", async () => {
    const ok = await confirmDialog(`Delete ${name} (${bytes(m.datasetSize)}) from this node? ` +
      "Its blocks are removed unless another dataset uses them.");
    if (!ok) return;
    try {
      await call(`/data/${encodeURIComponent(entry.cid)}`, { method: "DELETE" });
      showError($("datasets-message"), "");
    } catch (e) {
      showError($("datasets-message"), explainDelete(e.status, e.text));
    }
    reload();
  });
  actions.append(link, del);
  tr.append(actions);
  return { tr, expiry };
}

/** The listing last drawn, as text: an unchanged listing is not redrawn, so a periodic refresh
 * never takes the keyboard focus away from a button. */
let drawn = null;

/** Loads the listing and redraws the table when it changed. */
export async function loadDatasets() {
  let listing;
  try {
    listing = await json("/data?expiry=true");
  } catch (e) {
    showError($("datasets-message"), `Could not list the datasets (${e.status}: ${e.text}).`);
    return;
  }
  const text = JSON.stringify(listing);
  if (text === drawn) return;
  drawn = text;
  const entries = (listing.content || []).slice()
    .sort((a, b) => (a.manifest?.filename || "").localeCompare(b.manifest?.filename || ""));
  const rows = entries.map((e) => row(e, loadDatasets));
  $("dataset-rows").replaceChildren(...rows.map((r) => r.tr));
  const anyExpiry = rows.some((r) => r.expiry);
  for (const cell of document.querySelectorAll("#datasets .expiry")) cell.hidden = !anyExpiry;
  $("datasets").hidden = entries.length === 0;
  $("datasets-empty").hidden = entries.length !== 0;
}
