# Shared by the bench scripts (sourced, not run).

# Incompressible, distinct content without waiting on /dev/urandom: gen SEED BYTES.
gen() { { openssl enc -aes-128-ctr -pass "pass:$1" -nosalt -pbkdf2 -in /dev/zero 2>/dev/null || true; } | head -c "$2"; }

# The flag that keeps a node off the network (benches measure one node on loopback; by default
# the node would listen for peers on 0.0.0.0:8070). Builds older than the network had no such
# flag and need none: no_network BIN.
no_network() { if "$1" --help 2>/dev/null | grep -q -- '--no-network'; then echo --no-network; fi; }

now() { date +%s.%N; }
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
