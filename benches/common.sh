# Shared by the bench scripts (sourced, not run).

# Incompressible, distinct content without waiting on /dev/urandom: gen SEED BYTES.
gen() { { openssl enc -aes-128-ctr -pass "pass:$1" -nosalt -pbkdf2 -in /dev/zero 2>/dev/null || true; } | head -c "$2"; }

# The flag that keeps a node off the network (benches measure one node on loopback; by default
# the node would listen for peers on 0.0.0.0:8070). Builds older than the network had no such
# flag and need none: no_network BIN.
no_network() { if "$1" --help 2>/dev/null | grep -q -- '--no-network'; then echo --no-network; fi; }
