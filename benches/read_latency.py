#!/usr/bin/env python3
"""GET latency probe for benches/read_latency.sh.

    read_latency.py probe API_URL CID STOP_FILE [GAP_MS]   # prints "ENDPOINT MS" per request
    read_latency.py table RESULTS RUNS                     # summarizes "LABEL RUN ENDPOINT MS"

The probe cycles over three reads of a small dataset on one keep-alive connection (the
dataset's bytes, its /network/manifest, and /space) until STOP_FILE exists, pausing GAP_MS
between requests so that it measures latency without itself loading the two cores. A failed
request ends it with an error: a latency figure over failed requests would mean nothing.

The table pools the samples of all runs per condition (one run gives too few requests during
an upload for a p99 of its own) and shows the spread of the per-run p99 beside it.
"""

import http.client
import math
import os
import statistics
import sys
import time
import urllib.parse


def percentile(sorted_values, q):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def probe(api, cid, stop, gap):
    url = urllib.parse.urlsplit(api)
    paths = {
        "dataset": f"{url.path}/data/{cid}",
        "manifest": f"{url.path}/data/{cid}/network/manifest",
        "space": f"{url.path}/space",
    }
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    for path in paths.values():
        # Warm-up, not counted: the first read of the dataset comes from the disk.
        conn.request("GET", path)
        conn.getresponse().read()
    while not os.path.exists(stop):
        for name, path in paths.items():
            start = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            elapsed = time.perf_counter() - start
            if resp.status != 200 or not body:
                sys.exit(f"GET {path}: {resp.status}")
            print(f"{name} {elapsed * 1000:.3f}")
            time.sleep(gap)


def table(results, runs):
    samples = {}
    for line in open(results):
        label, run, name, ms = line.split()
        for key in (name, "all"):
            samples.setdefault((label, key), {}).setdefault(run, []).append(float(ms))
    labels = {"idle": "idle node", "busy": "during a 1 GiB upload"}
    print("| condition | GET | requests | p50 ms | p99 ms | max ms | p99 of single runs |")
    print("|---|---|---|---|---|---|---|")
    for label in ("idle", "busy"):
        for name in ("dataset", "manifest", "space", "all"):
            per_run = samples.get((label, name))
            if not per_run:
                continue
            pooled = sorted(v for vals in per_run.values() for v in vals)
            run_p99 = sorted(percentile(sorted(v), 0.99) for v in per_run.values())
            print(
                f"| {labels[label]} | {name} | {len(pooled)} | {percentile(pooled, 0.5):.2f} "
                f"| {percentile(pooled, 0.99):.2f} | {pooled[-1]:.2f} "
                f"| {run_p99[0]:.1f}–{run_p99[-1]:.1f} (median {statistics.median(run_p99):.1f}) |"
            )
    print(f"\n{runs} runs, fresh data directory each; samples pooled over the runs.")


def main():
    if sys.argv[1] == "probe":
        gap = float(sys.argv[5]) / 1000 if len(sys.argv) > 5 else 0.005
        probe(sys.argv[2], sys.argv[3], sys.argv[4], gap)
    else:
        table(sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    main()
