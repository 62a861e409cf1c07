// The node panel: identity and addresses, the storage gauge, peers, and the block-exchange and
// DHT figures, from `/space` and `/debug/info`. Figures are drawn from whatever keys the node
// reports, so fields a later version adds (reachability, per-peer connection kind and bytes)
// appear without a change here.

import { bytes, el, json, percent } from "./api.js";

const $ = (id) => document.getElementById(id);

/** Known keys in words; other keys are spelled out from their camelCase. */
const LABELS = {
  peerId: "Peer id", agent: "Agent", connection: "Connection", peers: "Connected peers", blocksSent: "Blocks sent", blocksReceived: "Blocks received",
  duplicateBlocks: "Duplicate blocks", badBlocks: "Bad blocks", violations: "Protocol violations",
  retries: "Retries", peerTimeouts: "Peer time-outs", failedWants: "Failed wants",
  pendingBlocks: "Blocks wanted", lookups: "Lookups", providersFound: "Providers found",
  dials: "Dials", announcements: "Announcements", providedKeys: "Keys provided",
  routingTablePeers: "Routing table peers",
};

function label(key) {
  if (LABELS[key]) return LABELS[key];
  const words = key.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function value(key, v) {
  if (typeof v === "number" && /bytes/i.test(key)) return bytes(v);
  if (typeof v === "number") return v.toLocaleString("en");
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (v === null || v === undefined || v === "") return "–";
  return String(v);
}

/** Keys in the order of LABELS, then any others in the order the node gave them. */
function ordered(keys) {
  const known = Object.keys(LABELS);
  const rank = (k) => (known.includes(k) ? known.indexOf(k) : known.length);
  return [...keys].sort((a, b) => rank(a) - rank(b));
}

/** Every scalar of `obj` as a <dt>/<dd> pair; without `obj`, says why there is none. */
function figures(node, obj) {
  if (!obj) {
    node.replaceChildren(el("dt", {}, "Not running"), el("dd", {}, "the node has no network"));
    return;
  }
  const items = [];
  for (const k of ordered(Object.keys(obj))) {
    const v = obj[k];
    if (v !== null && typeof v === "object") continue;
    items.push(el("dt", {}, label(k)), el("dd", { "data-key": k }, value(k, v)));
  }
  node.replaceChildren(...items);
}

function peersTable(list) {
  const all = [];
  for (const p of list) for (const k of Object.keys(p)) if (!all.includes(k)) all.push(k);
  const keys = ordered(all);
  const head = el("tr");
  for (const k of keys) head.append(el("th", { scope: "col", class: k === "peerId" || k === "agent" ? null : "num" }, label(k)));
  $("peer-head").replaceChildren(head);
  $("peer-rows").replaceChildren(...list.map((p) => {
    const tr = el("tr");
    for (const k of keys) {
      const cell = k === "peerId"
        ? el("td", { class: "mono nowrap", title: p[k] }, `${String(p[k]).slice(0, 6)}…${String(p[k]).slice(-4)}`)
        : el("td", { class: k === "agent" ? "nowrap" : "num" }, value(k, p[k]));
      tr.append(cell);
    }
    return tr;
  }));
  $("peers").hidden = list.length === 0;
  $("peers-empty").hidden = list.length !== 0;
}

function storage(space) {
  const quota = space.quotaMaxBytes;
  const used = space.quotaUsedBytes;
  const reserved = space.quotaReservedBytes || 0;
  $("gauge-used").style.width = `${percent(used, quota)}%`;
  $("gauge-reserved").style.width = `${percent(reserved, quota)}%`;
  $("storage-used").textContent = `${bytes(used)} (${percent(used, quota)} %)`;
  $("storage-reserved").textContent = `${bytes(reserved)} (${percent(reserved, quota)} %)`;
  $("storage-free").textContent = bytes(Math.max(quota - used - reserved, 0));
  $("storage-quota").textContent = bytes(quota);
  $("storage-blocks").textContent = space.totalBlocks.toLocaleString("en");
}

/** Reads the node's figures and redraws the panel; gives `/debug/info` for the others. */
export async function refreshNode() {
  let space, info;
  try {
    [space, info] = await Promise.all([json("/space"), json("/debug/info")]);
  } catch (e) {
    $("summary").textContent = `The node does not answer (${e.status ? e.status + ": " : ""}${e.text}).`;
    return null;
  }
  storage(space);
  $("peer-id").textContent = info.id || "no network (started with --no-network)";
  $("node-addrs").textContent = (info.addrs || []).join("\n") || "–";
  $("node-announce").textContent = (info.announceAddresses || []).join("\n") || "–";
  const reach = info.reachability ?? info.nat?.reachability;
  $("node-reachability").textContent = reach ? value("reachability", reach)
    : "not reported by this node yet";
  $("node-version").textContent = info.codex?.version || "–";
  const exchange = info.exchange || {};
  // Each peer's connection (direct, relayed or both) and bytes each way come from `nat.peers`.
  const nat = new Map((info.nat?.peers || []).map((p) => [p.peerId, p]));
  peersTable((exchange.peerList || []).map((p) => {
    const n = nat.get(p.peerId);
    return n ? { ...p, connection: n.connection, bytesSent: n.bytesSent, bytesReceived: n.bytesReceived } : p;
  }));
  figures($("exchange-figures"), info.exchange);
  figures($("dht-figures"), info.dht);
  const peers = typeof exchange.peers === "number" ? `${exchange.peers} peer${exchange.peers === 1 ? "" : "s"}` : "no network";
  $("summary").textContent = `${peers} · ${bytes(space.quotaUsedBytes)} of ${bytes(space.quotaMaxBytes)} used`;
  $("node-updated").textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
  return info;
}
