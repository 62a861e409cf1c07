// The node's REST API, the same routes curl uses; the page is served by the node itself, so
// every request is same-origin and passes the API's Origin/Host checks.

export const BASE = "/api/codex/v1";

/** A failed request: the HTTP status (0 when the node could not be reached) and its text. */
export class ApiError extends Error {
  constructor(status, text) {
    super(text || `HTTP ${status}`);
    this.status = status;
    this.text = text;
  }
}

/** Calls an API path and gives the Response, or throws an ApiError for any status >= 400. */
export async function call(path, options = {}) {
  let resp;
  try {
    resp = await fetch(BASE + path, options);
  } catch (e) {
    throw new ApiError(0, "the node could not be reached");
  }
  if (!resp.ok) {
    throw new ApiError(resp.status, (await resp.text()).trim());
  }
  return resp;
}

/** Calls an API path that answers JSON. */
export async function json(path, options) {
  return (await call(path, options)).json();
}

/** The URL of a dataset's bytes in the node's local store. */
export function dataUrl(cid) {
  return `${BASE}/data/${encodeURIComponent(cid)}`;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** 1536 → "1.5 KiB". */
export function bytes(n) {
  if (typeof n !== "number" || !isFinite(n)) return "–";
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)} ${UNITS[i]}`;
}

/** Percent with at most one decimal, 0 when the total is 0. */
export function percent(part, total) {
  if (!total) return 0;
  return Math.floor((part / total) * 1000) / 10;
}

/** Creates an element with text and attributes. */
export function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Shows `text` in an error paragraph, or hides it when `text` is empty. */
export function showError(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

/** Copies text to the clipboard. The clipboard API needs a secure context (127.0.0.1 is one,
 * a LAN address is not) and may be refused, so fall back to selecting the text of `input` and
 * the copy command. */
export async function copyText(text, input) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch (e) {
      // refused (no permission, page not focused): the old way below
    }
  }
  input.select();
  if (!document.execCommand("copy")) throw new Error("copy refused");
}
