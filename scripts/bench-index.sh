#!/usr/bin/env bash
# The local index cache at real sizes, in one run: GIB GB of random bytes (every chunk new)
#   1. `vaultctl put` into a fresh vault: time and peak RSS;
#   2. the vault opened with an empty cache directory (`vaultctl snapshots`: every index file
#      loaded into a new cache, as on a new machine): time and peak RSS;
#   3. `vaultctl cat` of the file with its cache: time and peak RSS (and compared with the input);
#   4. the same bytes written through a fresh mount of a fresh vault (`dd bs=1M conv=fsync`):
#      time and the daemon's peak RSS (VmHWM).
# Prints a Markdown table (figures of docs/PERFORMANCE.md, "the index cache at real sizes").
#
# Environment (all optional):
#   BENCH_GIB       gigabytes (10^9 bytes) of random bytes (default 3)
#   BENCH_DIR       working directory (default: a new directory under /var/tmp), removed at the
#                   end unless BENCH_KEEP=1
#   BENCH_BUILD=0   use the release binaries already in target/release
#   BENCH_MOUNT=0   skip part 4
set -euo pipefail

die() {
    echo "bench-index.sh: $*" >&2
    exit 1
}
trap 'rc=$?; echo "bench-index.sh: failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2' ERR

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GIB="${BENCH_GIB:-3}"
BUILD="${BENCH_BUILD:-1}"
KEEP="${BENCH_KEEP:-0}"
MOUNT="${BENCH_MOUNT:-1}"
[[ "$GIB" =~ ^[1-9][0-9]*$ ]] || die "BENCH_GIB must be a positive integer"
[ -x /usr/bin/time ] || die "/usr/bin/time missing (package time)"
if [ "$MOUNT" = 1 ]; then
    command -v fusermount3 >/dev/null || die "fusermount3 missing: run scripts/install-deps.sh"
    [ -e /dev/fuse ] || die "/dev/fuse is missing"
fi

# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
bench_setup index
export VAULT_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

echo "writing $GIB GB of random bytes to $W/input" >&2
head -c "$((GIB * 1000000000))" /dev/urandom >"$W/input"
sync

# measured NAME CMD...: runs CMD with stdout to /dev/null; prints "seconds peak-MiB".
measured() {
    local out="$W/time.$1"
    shift
    /usr/bin/time -f "%e %M" -o "$out" "$@" >/dev/null || die "failed: $*"
    awk '{printf "%s %d", $1, $2 / 1024}' "$out"
}

export VAULT_CACHE_DIR="$W/cache"
"$BIN/vaultctl" --repo "$W/vault" init >/dev/null
read -r put_s put_mib <<<"$(measured put "$BIN/vaultctl" --repo "$W/vault" put input "$W/input")"
entries=$(find "$W/vault/index" -type f | wc -l)
export VAULT_CACHE_DIR="$W/cache-new"
read -r open_s open_mib <<<"$(measured open "$BIN/vaultctl" --repo "$W/vault" snapshots)"
read -r cat_s cat_mib <<<"$(measured cat "$BIN/vaultctl" --repo "$W/vault" cat "$(date +%F)/input")"
"$BIN/vaultctl" --repo "$W/vault" cat "$(date +%F)/input" | cmp - "$W/input" || die "cat gave other bytes"

echo
echo "## The index cache at $GIB GB of new data"
echo
echo "| step | s | peak RSS MiB |"
echo "|---|---:|---:|"
echo "| \`put\` into a fresh vault ($entries index files) | $put_s | $put_mib |"
echo "| open with an empty cache (\`snapshots\`) | $open_s | $open_mib |"
echo "| \`cat\` of the file | $cat_s | $cat_mib |"

if [ "$MOUNT" = 1 ]; then
    export VAULT_CACHE_DIR="$W/cache-mount"
    mkdir -p "$MNT"
    "$BIN/vaultctl" --repo "$W/vault2" init >/dev/null
    "$BIN/vaultfs" mount "$W/vault2" "$MNT" >/dev/null
    pid="$(pgrep -f "vaultfs mount $W/vault2 $MNT" | head -1)"
    t0=$(date +%s.%N)
    dd if="$W/input" of="$MNT/today" bs=1M conv=fsync status=none
    t1=$(date +%s.%N)
    hwm=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status")
    for _ in $(seq 50); do fusermount3 -u "$MNT" 2>/dev/null && break; sleep 0.1; done
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    echo "| written through a fresh mount (\`dd bs=1M conv=fsync\`) | $(python3 -c "print(f'{$t1 - $t0:.2f}')") | $hwm (daemon VmHWM) |"
fi
