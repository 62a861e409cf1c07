// The dashboard's entry point: wires the four parts together and refreshes the node's figures
// and the datasets every few seconds.

import { setupUpload } from "./upload.js";
import { loadDatasets } from "./datasets.js";
import { setupFetch, showPartial } from "./fetch.js";
import { refreshNode } from "./node.js";

const REFRESH_MS = 3000;

async function refresh() {
  const info = await refreshNode();
  if (info) showPartial(info.partialDatasets);
  loadDatasets(); // datasets added or removed elsewhere (curl, expiry) appear too
}

setupUpload(() => { loadDatasets(); refresh(); });
setupFetch(() => { loadDatasets(); refresh(); });
document.getElementById("refresh-datasets").addEventListener("click", loadDatasets);
loadDatasets();
refresh();
setInterval(refresh, REFRESH_MS);
