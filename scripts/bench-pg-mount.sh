#!/usr/bin/env bash
# `pg_dump -Fc -f` straight into the mount (docs/SEMANTICS.md, "Compressed files"): a table of
# BENCH_ROWS rows of hex text (about 45 bytes of zlib output per row), dumped on day 1, then
# again after an update of 1 % of its rows (one id range) on day 2, each time into the mount
# and into a plain file. pg_dump rewrites its table of contents at the start once the data is
# written; the mount keeps the archive expanded. Prints per day: pg_dump into a plain file and
# into the mount (s), the daemon's peak RSS, `cat` of the archive back from the mount (s), the
# vault's new stored bytes, and for comparison the new stored bytes of the same archives
# stored as bytes (`vaultctl put` of them with their first byte changed, so that nothing
# recognises them: what the mount stored before it expanded pg_dump archives).
#
# Environment (all optional):
#   BENCH_ROWS     rows of the table (default 1000000: an archive of about 45 MB)
#   BENCH_BUILD=0  use the binaries in target/release as they are
#   BENCH_KEEP=1   keep the working directory
set -euo pipefail

die() {
    echo "bench-pg-mount.sh: $*" >&2
    exit 1
}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROWS="${BENCH_ROWS:-1000000}"
[[ "$ROWS" =~ ^[1-9][0-9]*$ ]] && ((ROWS >= 1000)) || die "BENCH_ROWS must be an integer of at least 1000"
for c in fusermount3 /usr/bin/time cmp; do command -v "$c" >/dev/null || die "$c is needed (scripts/install-deps.sh)"; done
PGBIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)")"
[[ -x "$PGBIN/initdb" && -x "$PGBIN/pg_dump" ]] || die "PostgreSQL is needed (scripts/install-deps.sh)"
if [[ "${BENCH_BUILD:-1}" != 0 ]]; then
    (cd "$ROOT" && cargo build --release --quiet -p vault -p vaultfs) || die "cargo build failed"
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK="$(mktemp -d /var/tmp/vault-bench-pgm.XXXXXX)"
MNT="$WORK/mnt"
as_pg() { if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    fusermount3 -u "$MNT" 2>/dev/null || true
    [[ ! -d "$WORK/pg/data" ]] || as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then echo "kept $WORK" >&2; else rm -rf -- "$WORK"; fi
}
trap cleanup EXIT
chmod 755 "$WORK"
mkdir -p "$MNT" "$WORK/pg" "$WORK/plain"
for v in $(env | grep -o '^VAULT_[A-Z_]*' || true); do unset "$v"; done
export VAULT_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export VAULT_CACHE_DIR="$WORK/cache"

PGSOCK="$WORK/pg"
[[ "$(id -u)" != 0 ]] || chown -R postgres:postgres "$WORK/pg"
as_pg "$PGBIN/initdb" --auth-local=trust -U postgres -D "$WORK/pg/data" >"$WORK/initdb.log" 2>&1 || die "initdb failed"
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -o "-k $PGSOCK -c listen_addresses='' -c fsync=off" -w -t 60 \
    -l "$WORK/pg/log" start >/dev/null || die "PostgreSQL did not start"
psql_() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGSOCK" -U postgres "$@"; }
for _ in $(seq 300); do [[ "$(psql_ -At -d postgres -c 'SELECT 42' 2>/dev/null)" == 42 ]] && break; sleep 0.2; done
[[ "$(psql_ -At -d postgres -c 'SELECT 42')" == 42 ]] || die "PostgreSQL does not answer"
psql_ -d postgres -c "CREATE DATABASE app"
psql_ -d app -c "CREATE TABLE notes(id int primary key, body text);
    INSERT INTO notes SELECT g, md5(g::text) || ' ' || md5((g * 7)::text) || ' note ' || (g % 977)
    FROM generate_series(1, $ROWS) g;"

"$BIN/vaultctl" --repo "$WORK/vault" init >/dev/null
"$BIN/vaultctl" --repo "$WORK/raw" init >/dev/null
stored() { "$BIN/vaultctl" --repo "$1" stats | awk '/^stored bytes/ {print $3}'; }
secs() { cut -d' ' -f1 "$1"; }
pg_dump_() { "$PGBIN/pg_dump" -Fc -h "$PGSOCK" -U postgres -f "$1" app; }

echo "pg_dump -Fc of $ROWS rows into the mount, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| day | archive MB | pg_dump to a file s | pg_dump into the mount s | daemon peak RSS MiB | cat from the mount s | vault new stored MB | stored as bytes: new MB |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for day in 1 2; do
    if [[ "$day" == 2 ]]; then
        lo=$((ROWS / 2))
        psql_ -d app -c "UPDATE notes SET body = body || ' changed' WHERE id BETWEEN $lo AND $((lo + ROWS / 100 - 1));"
    fi
    /usr/bin/time -f "%e" -o "$WORK/t.plain" "$PGBIN/pg_dump" -Fc -h "$PGSOCK" -U postgres -f "$WORK/plain/day$day" app
    s0=$(stored "$WORK/vault")
    "$BIN/vaultfs" mount "$WORK/vault" "$MNT" >/dev/null
    pid="$(pgrep -f "vaultfs mount $WORK/vault" | head -n 1)"
    /usr/bin/time -f "%e" -o "$WORK/t.mount" "$PGBIN/pg_dump" -Fc -h "$PGSOCK" -U postgres -f "$MNT/day$day" app
    hwm=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$pid/status")
    /usr/bin/time -f "%e" -o "$WORK/t.read" cat "$MNT/day$day" >/dev/null
    # Two runs of pg_dump differ in the time in their header only.
    cmp -s <(tail -c +64 "$MNT/day$day") <(tail -c +64 "$WORK/plain/day$day") || die "day $day read back from the mount differs"
    "$PGBIN/pg_restore" -l "$MNT/day$day" | grep -q "TABLE DATA public notes" || die "pg_restore -l of day $day failed"
    fusermount3 -u "$MNT"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    s1=$(stored "$WORK/vault")
    r0=$(stored "$WORK/raw")
    (printf X; tail -c +2 "$WORK/plain/day$day") >"$WORK/raw$day"
    "$BIN/vaultctl" --repo "$WORK/raw" put -q "day$day" "$WORK/raw$day" >/dev/null
    r1=$(stored "$WORK/raw")
    size=$(stat -c %s "$WORK/plain/day$day")
    mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
    echo "| $day | $(mb "$size") | $(secs "$WORK/t.plain") | $(secs "$WORK/t.mount") | $hwm | $(secs "$WORK/t.read") | $(mb $((s1 - s0))) | $(mb $((r1 - r0))) |"
done
echo
"$BIN/vaultctl" --repo "$WORK/vault" stats | grep -E "^(stored bytes|expanded files|expansion saved)"
