#!/usr/bin/env bash
# The mount at directory scale, in one run, on this machine's disk:
#   1. `tar -x` of an uploads tree (files of 1-64 KiB in 50 directories) into the mount and into
#      a plain directory on the same disk; objects in the vault directory per 1,000 files after
#      unmount; `ls -lR` of the result through a fresh mount and of the plain directory;
#      `vaultctl restore` of the tree next to `restic restore` of the same tree (when restic is
#      installed), each into a new directory, with peak RSS.
#   2. One 1 GiB dump written through the mount, then two at once (two files, two writers).
#   3. The latency of `stat` + `ls` of a sealed snapshot every 10 ms while a prune and a
#      1.5 GiB write run (p50, p99, max).
# Prints Markdown tables (the figures of docs/PERFORMANCE.md come from here).
#
# Environment (all optional):
#   BENCH_TREE_FILES   tree sizes, in files (default "5000 50000")
#   BENCH_DUMP_MIB     size of each dump of part 2 (default 1024)
#   BENCH_DIR          working directory (default: a new directory under /var/tmp), removed
#                      at the end unless BENCH_KEEP=1
#   BENCH_BUILD=0      use the release binaries already in target/release
#   BENCH_PARTS        which parts to run (default "1 2 3")
set -euo pipefail

die() {
    echo "bench-mount.sh: $*" >&2
    exit 1
}
trap 'rc=$?; echo "bench-mount.sh: failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2' ERR

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FILES="${BENCH_TREE_FILES:-5000 50000}"
DUMP_MIB="${BENCH_DUMP_MIB:-1024}"
BUILD="${BENCH_BUILD:-1}"
KEEP="${BENCH_KEEP:-0}"
PARTS="${BENCH_PARTS:-1 2 3}"
for n in $FILES; do [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "BENCH_TREE_FILES: '$n' is not a number"; done
[[ "$DUMP_MIB" =~ ^[1-9][0-9]*$ ]] || die "BENCH_DUMP_MIB must be a positive integer"
part() { [[ " $PARTS " == *" $1 "* ]]; }

command -v fusermount3 >/dev/null || die "fusermount3 missing: run scripts/install-deps.sh"
command -v faketime >/dev/null || die "faketime missing: run scripts/install-deps.sh"
[ -e /dev/fuse ] || die "/dev/fuse is missing"

# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
bench_setup mount
export VAULT_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export VAULT_CACHE_DIR="$W/cache"
export TZ=UTC

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.1f}')"; }

new_vault() {
    rm -rf "$W/vault" "$W/cache"
    "$BIN/vaultctl" --repo "$W/vault" init >/dev/null
}
mount_vault() { "$BIN/vaultfs" mount "$W/vault" "$MNT" "$@" >/dev/null; }
daemon_pid() { pgrep -f "vaultfs mount $W/vault $MNT" | head -1; }
unmount_vault() {
    local pid
    pid="$(daemon_pid || true)"
    for _ in $(seq 50); do fusermount3 -u "$MNT" 2>/dev/null && break; sleep 0.1; done
    [ -z "$pid" ] || while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}
objects() { find "$W/vault" -type f ! -name lock ! -name mount.lock | wc -l; }

# A tree of uploaded files: sizes 1 B - 64 KiB, incompressible (images, archives).
make_tree() {
    local n=$1 dir=$2
    python3 - "$n" "$dir" <<'EOF'
import os, random, sys
n, d = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(n)
blob = os.urandom(1 << 20)
for i in range(n):
    sub = os.path.join(d, f"dir{i % 50:02d}")
    os.makedirs(sub, exist_ok=True)
    size = rnd.randint(1024, 64 << 10)
    off = rnd.randint(0, len(blob) - size)
    with open(os.path.join(sub, f"upload{i:06d}.bin"), "wb") as f:
        f.write(i.to_bytes(8, "little") + blob[off:off + size - 8])
EOF
}

restore_rows=()
if part 1; then
    echo "## tar -x of an uploads tree: into the mount and into a plain directory (same disk)"
    echo
    echo "| files | MB | plain tar -x s | mount tar -x s | ratio | objects after unmount | per 1,000 files | plain ls -lR s | mount ls -lR s |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for n in $FILES; do
        rm -rf "$W/src" "$W/plain"
        make_tree "$n" "$W/src"
        tar -C "$W/src" -cf "$W/uploads.tar" .
        mb=$(du -sm --apparent-size "$W/src" | cut -f1)
        rm -rf "$W/src"
        sync
        mkdir -p "$W/plain"
        t0=$(now); tar -C "$W/plain" -xf "$W/uploads.tar"; sync; t1=$(now)
        plain=$(secs "$t0" "$t1")
        new_vault
        mount_vault
        t0=$(now); tar -C "$MNT" -xf "$W/uploads.tar"; t1=$(now)
        vt=$(secs "$t0" "$t1")
        unmount_vault
        obj=$(objects)
        per=$(python3 -c "print(f'{$obj * 1000 / $n:.1f}')")
        t0=$(now); ls -lR "$W/plain" >/dev/null; t1=$(now)
        pls=$(secs "$t0" "$t1")
        mount_vault --read-only
        t0=$(now); ls -lR "$MNT" >/dev/null; t1=$(now)
        vls=$(secs "$t0" "$t1")
        # Every file back, byte for byte.
        diff -r "$W/plain" "$MNT/$(ls "$MNT" | grep '^20' | head -1)" >/dev/null || die "the tree read back differs"
        unmount_vault
        echo "| $n | $mb | $plain | $vt | $(ratio "$vt" "$plain") | $obj | $per | $pls | $vls |"
        # Restores of the same tree, each into a new directory (written durably: the vault
        # syncs at its end, restic's is followed by a `sync`).
        period=$("$BIN/vaultctl" --repo "$W/vault" ls | head -1 | cut -c1-10)
        sync
        t0=$(now)
        /usr/bin/time -f %M -o "$W/rss" "$BIN/vaultctl" --repo "$W/vault" restore "$period" "$W/restored" >/dev/null
        t1=$(now)
        restore_rows+=("| $n | vault | $(secs "$t0" "$t1") | $(( $(cat "$W/rss") / 1024 )) |")
        diff -r "$W/plain" "$W/restored" >/dev/null || die "the restored tree differs"
        rm -rf "$W/restored"
        if command -v restic >/dev/null; then
            export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="$W/restic"
            restic init -q >/dev/null
            (cd "$W/plain" && restic backup -q . >/dev/null)
            sync
            t0=$(now)
            /usr/bin/time -f %M -o "$W/rss" restic restore -q latest --target "$W/restored" >/dev/null
            sync
            t1=$(now)
            restore_rows+=("| $n | restic $(restic version | cut -d' ' -f2) | $(secs "$t0" "$t1") | $(( $(cat "$W/rss") / 1024 )) |")
            rm -rf "$W/restored" "$W/restic"
        fi
        rm -rf "$W/plain" "$W/uploads.tar"
    done
    echo
    echo "(tar -x into the mount returns once every file is closed, i.e. durable; the plain"
    echo "directory is timed up to a following \`sync\`.)"
    echo
    echo "## Restore of the tree"
    echo
    echo "| files | tool | s | peak RSS MiB |"
    echo "|---:|---|---:|---:|"
    printf '%s\n' "${restore_rows[@]}"
    echo
fi

if part 2; then
    echo "## Dumps written through the mount: one writer, then two at once"
    echo
    for k in 1 2; do
        head -c $((DUMP_MIB << 20)) /dev/urandom >"$W/dump$k"
    done
    new_vault
    mount_vault
    t0=$(now); cat "$W/dump1" >"$MNT/one"; t1=$(now)
    one=$(secs "$t0" "$t1")
    hwm1=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$(daemon_pid)/status")
    unmount_vault
    new_vault
    mount_vault
    t0=$(now)
    cat "$W/dump1" >"$MNT/a" &
    p1=$!
    cat "$W/dump2" >"$MNT/b" &
    p2=$!
    wait $p1 $p2
    t1=$(now)
    two=$(secs "$t0" "$t1")
    pid=$(daemon_pid)
    hwm=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status")
    unmount_vault
    mbs1=$(python3 -c "print(f'{$DUMP_MIB * 1.048576 / $one:.1f}')")
    mbs2=$(python3 -c "print(f'{2 * $DUMP_MIB * 1.048576 / $two:.1f}')")
    echo "| writers | MiB written | s | MB/s | daemon peak RSS MiB |"
    echo "|---:|---:|---:|---:|---:|"
    echo "| 1 | $DUMP_MIB | $one | $mbs1 | $hwm1 |"
    echo "| 2 at once | $((2 * DUMP_MIB)) | $two | $mbs2 | $hwm |"
    echo
    echo "Two writers / one: $(python3 -c "print(f'{$mbs2 / $mbs1:.2f}')") x the throughput."
    echo
    rm -f "$W/dump1" "$W/dump2"
fi

if part 3; then
    echo "## stat + ls of a sealed snapshot every 10 ms while a prune and a 1.5 GiB write run"
    echo
    new_vault
    # Two sealed days: the prune forgets the first (and deletes its packs); the second is read.
    for d in 01 02; do
        head -c $((256 << 20)) /dev/urandom >"$W/old"
        faketime -f "2026-01-$d 10:00:00" "$BIN/vaultctl" --repo "$W/vault" put old "$W/old" >/dev/null
    done
    rm -f "$W/old"
    mount_vault
    python3 - "$MNT/2026-01-02" "$W/lat" <<'EOF' &
import os, sys, time
d, out = sys.argv[1], sys.argv[2]
lat = []
end = time.time() + 3600
stop = out + ".stop"
while not os.path.exists(stop) and time.time() < end:
    t = time.perf_counter()
    os.stat(os.path.join(d, "old"))
    os.listdir(d)
    lat.append(time.perf_counter() - t)
    time.sleep(0.01)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
with open(out, "w") as f:
    f.write(f"{len(lat)} {q(0.5):.2f} {q(0.99):.2f} {lat[-1] * 1000:.2f}\n")
EOF
    lat_pid=$!
    sleep 1
    "$BIN/vaultctl" --repo "$W/vault" prune --keep-last 1 --lock-wait 600 >/dev/null 2>&1 &
    prune_pid=$!
    head -c $((1536 << 20)) /dev/urandom >"$MNT/big"
    wait $prune_pid
    sleep 1
    touch "$W/lat.stop"
    wait $lat_pid
    read -r count p50 p99 max <"$W/lat"
    unmount_vault
    echo "| samples | p50 ms | p99 ms | max ms |"
    echo "|---:|---:|---:|---:|"
    echo "| $count | $p50 | $p99 | $max |"
    echo
fi
