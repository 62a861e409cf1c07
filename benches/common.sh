# Shared by the bench scripts (sourced, not run).

# Incompressible, distinct content without waiting on /dev/urandom: gen SEED BYTES.
gen() { { openssl enc -aes-128-ctr -pass "pass:$1" -nosalt -pbkdf2 -in /dev/zero 2>/dev/null || true; } | head -c "$2"; }

# The flag that keeps a node off the network (benches measure one node on loopback; by default
# the node would listen for peers on 0.0.0.0:8070). Builds older than the network had no such
# flag and need none: no_network BIN.
no_network() { if "$1" --help 2>/dev/null | grep -q -- '--no-network'; then echo --no-network; fi; }

now() { date +%s.%N; }
# The smallest of the numbers on standard input, one per line: the best of several runs.
best() { sort -g | head -1; }
# Seconds `openssl dgst -sha256` takes over FILE: the baseline every speed ratio divides by.
openssl_s() { local s e; s=$(now); openssl dgst -sha256 "$1" >/dev/null; e=$(now); echo "$e - $s" | bc; }

# One node on 127.0.0.1:$PORT (API at $URL), pid in node_pid: start_node BIN DATA_DIR LOG.
node_pid=
start_node() {
  ! curl -s "$URL/space" >/dev/null || { echo "port $PORT is taken: set PORT" >&2; exit 1; }
  "$1" $(no_network "$1") --data-dir "$2" --api-port "$PORT" 2>"$3" & node_pid=$!
  for _ in $(seq 100); do
    kill -0 "$node_pid" 2>/dev/null || { echo "node exited (port $PORT taken?), see $3" >&2; exit 1; }
    curl -sf "$URL/space" >/dev/null && return; sleep 0.05
  done
  echo "node did not start" >&2; exit 1
}
stop_node() { kill -INT "$node_pid"; wait "$node_pid" || true; }
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$node_pid/stat"; } # user + system seconds so far

# Waits until the fetch whose progress URL is given reports `"complete":true`; fails on an
# error or after TIMEOUT seconds (default 300): wait_complete PROGRESS_URL [TIMEOUT].
# One Python process asking every 20 ms over one kept-alive connection: a `curl` process per
# poll (with `grep` and `sleep`) cost about 15 ms of CPU each, 0.4 of a core at 50 polls a
# second, taken from the two nodes being measured on the same two cores.
wait_complete() {
  python3 - "$1" "${2:-300}" <<'PY'
import http.client, json, sys, time, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
deadline = time.monotonic() + float(sys.argv[2])
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
while True:
    conn.request("GET", url.path)
    response = conn.getresponse()
    body = response.read()
    progress = json.loads(body) if response.status == 200 else {}
    if progress.get("complete"):
        break
    if response.status != 200 or "error" in progress or time.monotonic() > deadline:
        sys.exit(f"fetch did not complete: {response.status} {body.decode(errors='replace')}")
    time.sleep(0.02)
PY
}
