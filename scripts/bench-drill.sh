#!/usr/bin/env bash
# Restore-drill benchmark: documents restored per second and RTO of `vaultctl drill --mongo-uri`
# for one large mongodump archive (tools/dumpgen, about 1 GB by default) stored in a fresh vault,
# restored into a SecantusDB server (MongoDB wire-compatible, from the test venv) on loopback.
# Next to it, for reference, the same archive restored by a plain pymongo loader (read the
# archive, unordered insert_many of the raw documents in batches of 1000 from 4 threads, then
# count), which measures what the server itself can take. Prints a Markdown table.
#
# SecantusDB's own `secantus-restore-archive` is not comparable: it unpacks a SecantusDB native
# backup (a .tar.gz of a WiredTiger home), not a mongodump archive, so it is not run.
#
# Environment (all optional):
#   BENCH_DOCS         documents in the archive (default 1500000: about 1 GB)
#   BENCH_COLLECTIONS  collections, interleaved (default 4)
#   BENCH_SEED         seed of the archive (default 1)
#   BENCH_GZIP=1       store the archive gzip-compressed (as mongodump --gzip --archive)
#   BENCH_BASELINE=0   skip the pymongo reference
#   BENCH_DIR          working directory (default: a new mktemp directory under /var/tmp);
#                      removed at the end unless BENCH_KEEP=1
#   BENCH_BUILD=0      use the binaries already in target/release
#   BENCH_SERVER_CACHE SecantusDB's --cache-size (default 1G); its data lives on disk in BENCH_DIR
#
# Needs the venv made by scripts/install-deps.sh (.venv with SecantusDB and pymongo).
set -euo pipefail

die() {
    echo "bench-drill.sh: $*" >&2
    exit 1
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCS="${BENCH_DOCS:-1500000}"
COLLECTIONS="${BENCH_COLLECTIONS:-4}"
SEED="${BENCH_SEED:-1}"
GZIP="${BENCH_GZIP:-0}"
BASELINE="${BENCH_BASELINE:-1}"
BUILD="${BENCH_BUILD:-1}"
KEEP="${BENCH_KEEP:-0}"
SERVER_CACHE="${BENCH_SERVER_CACHE:-1G}"
[[ "$DOCS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_DOCS must be a positive integer, got '$DOCS'"
[[ "$COLLECTIONS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_COLLECTIONS must be a positive integer"

VENV="$ROOT/.venv"
[ -x "$VENV/bin/secantusd-py" ] || die "$VENV/bin/secantusd-py is missing: run scripts/install-deps.sh"
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --locked -p vault -p dumpgen)
fi
VAULTCTL="$ROOT/target/release/vaultctl"
DUMPGEN="$ROOT/target/release/dumpgen"
[ -x "$VAULTCTL" ] && [ -x "$DUMPGEN" ] || die "release binaries missing: run with BENCH_BUILD=1"

if [ -n "${BENCH_DIR:-}" ]; then
    WORK="$BENCH_DIR"
    mkdir -p "$WORK"
    [ -z "$(ls -A "$WORK")" ] || die "BENCH_DIR $WORK is not empty"
else
    WORK="$(mktemp -d /var/tmp/vault-bench-drill.XXXXXX)"
fi
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
    if [ "$KEEP" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Settings of the caller must not leak into the benchmark.
for v in $(env | awk -F= '/^VAULT_/ {print $1}'); do unset "$v"; done
export VAULT_REPO="$WORK/vault" VAULT_CACHE_DIR="$WORK/cache" VAULT_PASSPHRASE="bench drill passphrase"

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

ARCHIVE="$WORK/dump.archive"
gz_flag=()
[ "$GZIP" = 1 ] && gz_flag=(--gzip) && ARCHIVE="$WORK/dump.archive.gz"
echo "generating $DOCS documents in $COLLECTIONS collections ..." >&2
"$DUMPGEN" --seed "$SEED" --docs "$DOCS" --collections "$COLLECTIONS" "${gz_flag[@]}" --summary "$WORK/summary.json" -o "$ARCHIVE"
ARCHIVE_BYTES=$(stat -c %s "$ARCHIVE")
RAW_BYTES=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes"])' "$WORK/summary.json")

"$VAULTCTL" init >/dev/null
t0=$(now)
"$VAULTCTL" put mongo/today "$ARCHIVE" >/dev/null
"$VAULTCTL" seal >/dev/null
STORE_S=$(calc "$(now) - $t0")

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# On disk, not `:memory:`: an in-memory SecantusDB refuses inserts once the data outgrows its
# WiredTiger cache (WT_CACHE_FULL), and 1 GB of documents does.
"$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$PORT" --storage-path "$WORK/secantus-data" \
    --cache-size "$SERVER_CACHE" --standalone >"$WORK/secantus.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "SecantusDB exited: $(cat "$WORK/secantus.log")"
    sleep 0.1
done
URI="mongodb://127.0.0.1:$PORT"
SERVER_RSS() { awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status"; }

echo "drill with restore ..." >&2
/usr/bin/time -f "%M" -o "$WORK/drill.rss" "$VAULTCTL" drill --json --mongo-uri "$URI" --restore-db bench_drill \
    >"$WORK/drill.json" || die "the drill failed: $(cat "$WORK/drill.json")"
read -r DRILL_RTO DRILL_DOCS DRILL_DPS P_FETCH P_PARSE P_INSERT P_VERIFY < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert j["ok"], j["errors"]
p = j["phases"]
print(j["rto_seconds"], j["restore"]["documents"], j["restore"]["docs_per_second"],
      p["fetch_decrypt"], p["parse"], p["insert"], p["verify"])' "$WORK/drill.json")
DRILL_RSS=$(cat "$WORK/drill.rss")

echo "drill without restore (read, decrypt, verify only) ..." >&2
t0=$(now)
"$VAULTCTL" drill >/dev/null
VERIFY_ONLY_S=$(calc "$(now) - $t0")

BASE_S="" BASE_DOCS=""
if [ "$BASELINE" = 1 ]; then
    echo "pymongo reference ..." >&2
    cat >"$WORK/baseline.py" <<'EOF'
# Reference loader: reads a mongodump archive (plain or gzip) and inserts the raw documents,
# unordered, in batches of 1000 from 4 threads; then counts. No CRC checks, no vault.
import gzip, struct, sys, time
from concurrent.futures import ThreadPoolExecutor
from pymongo import MongoClient
from bson.raw_bson import RawBSONDocument
import bson

path, uri = sys.argv[1], sys.argv[2]
t0 = time.time()
f = open(path, "rb")
if f.read(2) == b"\x1f\x8b":
    f.close()
    f = gzip.open(path, "rb")
else:
    f.seek(0)
assert f.read(4) == b"\x6d\xe2\x99\x81"
client = MongoClient(uri)
db = client["bench_baseline"]

def items():
    while True:
        h = f.read(4)
        if len(h) < 4:
            return
        (n,) = struct.unpack("<i", h)
        if n == -1:
            yield None
            continue
        yield h + f.read(n - 4)

it = items()
for d in it:  # prelude: header and metadata documents up to the terminator
    if d is None:
        break
pool = ThreadPoolExecutor(4)
futures, batches, ns, in_segment, total = [], {}, None, False, 0
def send(coll, docs):
    db[coll].insert_many(docs, ordered=False)
for d in it:
    if d is None:
        in_segment = False
        continue
    if not in_segment:
        h = bson.decode(d)
        in_segment = not h.get("EOF", False)
        ns = h["collection"] if in_segment and h["db"] and not h["collection"].startswith("system.") else None
        continue
    if ns is None:
        continue
    b = batches.setdefault(ns, [])
    b.append(RawBSONDocument(d))
    total += 1
    if len(b) >= 1000:
        futures.append(pool.submit(send, ns, b))
        batches[ns] = []
        if len(futures) > 8:
            futures.pop(0).result()
for ns, b in batches.items():
    if b:
        futures.append(pool.submit(send, ns, b))
for fu in futures:
    fu.result()
counted = sum(db[c].count_documents({}) for c in db.list_collection_names())
assert counted == total, (counted, total)
elapsed = time.time() - t0
client.drop_database("bench_baseline")
print(elapsed, total)
EOF
    read -r BASE_S BASE_DOCS < <("$VENV/bin/python" "$WORK/baseline.py" "$ARCHIVE" "$URI")
fi
SERVER_HWM=$(SERVER_RSS)

echo
echo "### Restore drill: $DOCS documents, $COLLECTIONS collections, archive $(calc "$RAW_BYTES / 1e9" 2) GB$([ "$GZIP" = 1 ] && echo " ($(calc "$ARCHIVE_BYTES / 1e9" 2) GB gzip)")"
echo
echo "| | documents | time (s) | documents/s | notes |"
echo "|---|---:|---:|---:|---|"
echo "| vaultctl drill --mongo-uri (RTO) | $DRILL_DOCS | $(calc "$DRILL_RTO") | $(calc "$DRILL_DPS" 0) | fetch+decrypt $(calc "$P_FETCH") s, parse $(calc "$P_PARSE") s, insert $(calc "$P_INSERT") s, verify $(calc "$P_VERIFY") s; peak RSS $(calc "$DRILL_RSS / 1024" 0) MiB |"
echo "| vaultctl drill (no restore) | | $VERIFY_ONLY_S | | every byte read, decrypted, CRCs checked |"
if [ -n "$BASE_S" ]; then
    echo "| pymongo loader (reference) | $BASE_DOCS | $(calc "$BASE_S") | $(calc "$BASE_DOCS / $BASE_S" 0) | plain file, no vault, no CRC checks |"
fi
echo
echo "Store (put + seal): $STORE_S s. SecantusDB peak RSS: $(calc "${SERVER_HWM:-0} / 1024" 0) MiB. $(nproc) cores."
