// Upload: a file from the picker or dropped on the zone, sent as Codex expects it (the body is
// the file, `Content-Type` its MIME type, `Content-Disposition: attachment; filename="…"`),
// through XMLHttpRequest because fetch() reports no upload progress.

import { BASE, bytes, copyText, percent, showError } from "./api.js";

const $ = (id) => document.getElementById(id);

/** Why an upload was refused, in words. */
function explain(status, text) {
  switch (status) {
    case 0: return "The node could not be reached; is it still running?";
    case 400: return `The node received no data or the upload was cut short (400: ${text}).`;
    case 403: return `The node refused the request (403: ${text}).`;
    case 413: return `The file is larger than the node accepts (its --max-upload-bytes) (413: ${text}).`;
    case 422: return `The node refused the file's name or type (422: ${text}). Codex accepts only the ` +
      `MIME types of its list and filenames without \\ : * ? " < > | ^ or device names such as CON.`;
    case 507: return `The file does not fit: the node's storage quota or disk is full (507: ${text}). ` +
      "Delete datasets, or start the node with a larger --storage-quota.";
    default: return `The upload failed (${status}: ${text}).`;
  }
}

/** A header value carrying `text` as UTF-8 bytes: headers are byte strings, and the node reads
 * the filename as UTF-8, as Codex does. */
function utf8Header(text) {
  return String.fromCharCode(...new TextEncoder().encode(text));
}

/** Sets up the picker, the drop zone and the copy button; `onStored` runs after each upload. */
export function setupUpload(onStored) {
  const input = $("file-input");
  const drop = $("drop");
  input.addEventListener("change", () => {
    if (input.files.length) upload(input.files[0], onStored).finally(() => { input.value = ""; });
  });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0], onStored);
  });
  $("copy-cid").addEventListener("click", async () => {
    const cid = $("upload-cid").value;
    try {
      await copyText(cid, $("upload-cid"));
      $("copy-status").textContent = "Copied to the clipboard.";
    } catch (e) {
      $("copy-status").textContent = "Could not copy: select the CID and copy it by hand.";
    }
  });
}

function upload(file, onStored) {
  const bar = $("upload-progress");
  const text = $("upload-text");
  $("upload-status").hidden = false;
  $("upload-result").hidden = true;
  $("copy-status").textContent = "";
  showError($("upload-error"), "");
  $("upload-name").textContent = `${file.name} (${bytes(file.size)})`;
  bar.value = 0;
  text.textContent = "Starting…";
  const started = performance.now();

  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${BASE}/data`);
    if (file.type) xhr.setRequestHeader("Content-Type", file.type);
    xhr.setRequestHeader("Content-Disposition", `attachment; filename="${utf8Header(file.name)}"`);
    xhr.upload.addEventListener("progress", (e) => {
      const total = e.lengthComputable ? e.total : file.size;
      const seconds = Math.max((performance.now() - started) / 1000, 0.001);
      bar.value = percent(e.loaded, total);
      text.textContent = `${bytes(e.loaded)} of ${bytes(total)} sent (${bar.value} %), ` +
        `${bytes(e.loaded / seconds)}/s`;
    });
    xhr.upload.addEventListener("load", () => {
      bar.value = 100;
      text.textContent = `${bytes(file.size)} sent; the node is storing it…`;
    });
    xhr.addEventListener("load", () => {
      const body = xhr.responseText.trim();
      if (xhr.status === 200) {
        const seconds = (performance.now() - started) / 1000;
        text.textContent = `Stored: ${bytes(file.size)} in ${seconds.toFixed(1)} s ` +
          `(${bytes(file.size / Math.max(seconds, 0.001))}/s).`;
        $("upload-cid").value = body;
        $("upload-result").hidden = false;
        onStored(body);
      } else {
        bar.value = 0;
        text.textContent = "Not stored.";
        showError($("upload-error"), explain(xhr.status, body));
      }
      resolve();
    });
    xhr.addEventListener("error", () => {
      bar.value = 0;
      text.textContent = "Not stored.";
      showError($("upload-error"), explain(0, ""));
      resolve();
    });
    xhr.send(file);
  });
}
