#!/usr/bin/env bash
# Compressed dumps (docs/DESIGN.md §14): the same week of a mongodump-archive series
# (tools/dumpgen) stored plain, as `gzip -6 -n` output, as Go's compress/gzip output (the
# code path of `mongodump --gzip`), and as `pg_dump -Fc` of a PostgreSQL database holding the
# same documents (table docs(coll text, doc jsonb), reloaded each day from that day's archive;
# a PostgreSQL server of its own is started on a private socket), both uncompressed (`-Z 0`,
# "pgplain", the baseline of "pgfc") and as pg_dump compresses by default ("pgfc"), each by `vaultctl put`,
# `restic backup --stdin` and `borg create`, in one run. Prints a Markdown table: bytes of the 7 inputs, repository size
# after the week, ingest time and throughput (of the input bytes), time to read the newest day
# back (to /dev/null, then checked against its sha256), and next to it `gzip -dc` of the newest
# day (the read goal) and the vault's peak RSS. Then, for the vault, a drill of the newest day
# (`vaultctl drill --path dump`: gzip files stored expanded are read as their stored content)
# and the same drill with `--original` (their gzip bytes recreated and inflated again), and for
# the gzip inputs `vaultctl cat --gunzip` of the newest day (its decompressed content, checked
# against `gzip -dc` of the file) next to `gzip -dc` itself.
#
# Environment (all optional):
#   BENCH_DOCS     documents per day (default 50000: a day is about 35 MB plain, 11 MB gzipped)
#   BENCH_DAYS     days (default 7)
#   BENCH_SEED     seed of the series (default 1)
#   BENCH_TOOLS    tools compared (default "vault restic borg")
#   BENCH_VARIANTS inputs (default "plain gzip6 gogzip pgplain pgfc")
#   BENCH_BUILD=0  use the binaries in target/release as they are
#   BENCH_KEEP=1   keep the working directory
set -euo pipefail

die() {
    echo "bench-compressed.sh: $*" >&2
    exit 1
}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DOCS="${BENCH_DOCS:-50000}"
DAYS="${BENCH_DAYS:-7}"
SEED="${BENCH_SEED:-1}"
TOOLS="${BENCH_TOOLS:-vault restic borg}"
VARIANTS="${BENCH_VARIANTS:-plain gzip6 gogzip pgplain pgfc}"
[[ "$DOCS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_DOCS must be a positive integer"
[[ "$DAYS" =~ ^[1-9][0-9]*$ ]] && ((DAYS <= 30)) || die "BENCH_DAYS must be 1..30"
for t in $TOOLS; do case "$t" in vault | restic | borg) ;; *) die "unknown tool $t" ;; esac; done
for v in $VARIANTS; do case "$v" in plain | gzip6 | gogzip | pgplain | pgfc) ;; *) die "unknown variant $v" ;; esac; done
for c in faketime gzip go /usr/bin/time; do command -v "$c" >/dev/null || die "$c is needed (scripts/install-deps.sh; VAULT_BENCH_DEPS=1 for restic and borg)"; done
for t in $TOOLS; do [[ "$t" == vault ]] || command -v "$t" >/dev/null || die "$t is not installed"; done
PGBIN=""
if [[ " $VARIANTS " == *" pgfc "* || " $VARIANTS " == *" pgplain "* ]]; then
    PGBIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)")"
    [[ -x "$PGBIN/initdb" && -x "$PGBIN/pg_dump" ]] || die "PostgreSQL is needed for pgfc (scripts/install-deps.sh)"
fi

if [[ "${BENCH_BUILD:-1}" != 0 ]]; then
    (cd "$ROOT" && cargo build --release --quiet -p vault -p dumpgen) || die "cargo build failed"
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK="$(mktemp -d /var/tmp/vault-bench-gz.XXXXXX)"
cleanup() {
    [[ -z "$PGBIN" || ! -d "$WORK/pg/data" ]] || as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then echo "kept $WORK" >&2; else rm -rf -- "$WORK"; fi
}
# PostgreSQL refuses to run as root: as root, its programs run as the postgres user.
as_pg() { if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
trap cleanup EXIT
mkdir -p "$WORK/days" "$WORK/logs" "$WORK/go"
now() { date +%s.%N; }
calc() { python3 -c "print(f'{$1:.${2:-2}f}')"; }

while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(VAULT_|RESTIC_|BORG_)' || true)
export VAULT_PASSPHRASE="bench passphrase" TZ=UTC
export RESTIC_PASSWORD="$VAULT_PASSPHRASE" RESTIC_CACHE_DIR="$WORK/cache/restic"
export BORG_PASSPHRASE="$VAULT_PASSPHRASE" BORG_BASE_DIR="$WORK/cache/borg" BORG_DISPLAY_PASSPHRASE=no

# Go's gzip writer as mongodump --gzip uses it.
cat >"$WORK/go/gogz.go" <<'EOF'
package main

import (
	"compress/gzip"
	"io"
	"os"
)

func main() {
	w := gzip.NewWriter(os.Stdout)
	if _, err := io.Copy(w, os.Stdin); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
}
EOF
(cd "$WORK/go" && GOCACHE="$WORK/go/cache" GO111MODULE=off go build -o gogz gogz.go) || die "go build failed"

# The documents of a mongodump archive as COPY rows (collection, JSON of the document).
cat >"$WORK/arch2copy.py" <<'EOF'
import json, struct, sys

def doc(b, p):
    n = struct.unpack_from('<i', b, p)[0]
    end = p + n - 1
    p += 4
    out = {}
    while p < end:
        t = b[p]
        k = b.index(0, p + 1)
        name = b[p + 1:k].decode()
        out[name], p = val(b, k + 1, t)
    return out, end + 1

def val(b, p, t):
    if t == 0x01: return struct.unpack_from('<d', b, p)[0], p + 8
    if t == 0x02:
        n = struct.unpack_from('<i', b, p)[0]
        return b[p + 4:p + 3 + n].decode(), p + 4 + n
    if t == 0x03: return doc(b, p)
    if t == 0x04:
        d, q = doc(b, p)
        return list(d.values()), q
    if t == 0x07: return b[p:p + 12].hex(), p + 12
    if t == 0x08: return b[p] != 0, p + 1
    if t == 0x09: return {"$date": struct.unpack_from('<q', b, p)[0]}, p + 8
    if t == 0x0A: return None, p
    if t == 0x10: return struct.unpack_from('<i', b, p)[0], p + 4
    if t == 0x12: return struct.unpack_from('<q', b, p)[0], p + 8
    sys.exit(f"arch2copy: BSON type {t:#x} not handled")

b = open(sys.argv[1], 'rb').read()
if b[:4] != b'\x6d\xe2\x99\x81':
    sys.exit("arch2copy: not a mongodump archive")
p, header, prelude, coll = 4, True, True, None
out = sys.stdout
while p < len(b):
    if struct.unpack_from('<I', b, p)[0] == 0xFFFFFFFF:
        p, header, prelude = p + 4, True, False
        continue
    if header:
        d, p = doc(b, p)
        header, coll = False, (None if prelude else d.get('collection'))
        continue
    d, p = doc(b, p)
    if not prelude:
        out.write(coll + '\t' + json.dumps(d, separators=(',', ':')).replace('\\', '\\\\') + '\n')
EOF

PGSOCK="$WORK/pg/sock"
if [[ -n "$PGBIN" ]]; then
    chmod 755 "$WORK"
    mkdir -p "$PGSOCK"
    [[ "$(id -u)" != 0 ]] || chown -R postgres:postgres "$WORK/pg"
    as_pg "$PGBIN/initdb" --auth-local=trust -U postgres -D "$WORK/pg/data" >"$WORK/logs/initdb.log" 2>&1 || die "initdb failed"
    as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -o "-k $PGSOCK -c listen_addresses='' -c fsync=off" -w -t 60 \
        -l "$WORK/pg/server.log" start >/dev/null || die "PostgreSQL did not start: $(tail -n 5 "$WORK/pg/server.log")"
    psql_() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGSOCK" -U postgres "$@"; }
    for _ in $(seq 300); do [[ "$(psql_ -At -d postgres -c 'SELECT 42' 2>/dev/null)" == 42 ]] && break; sleep 0.2; done
    [[ "$(psql_ -At -d postgres -c 'SELECT 42')" == 42 ]] || die "PostgreSQL does not answer"
    psql_ -d postgres -c "CREATE DATABASE bench" && psql_ -d bench -c "CREATE TABLE docs (coll text, doc jsonb)" || die "psql failed"
fi

echo "generating $DAYS days of $DOCS documents in $WORK" >&2
declare -A INPUT LAST_FILE
for ((d = 1; d <= DAYS; d++)); do
    p="$WORK/days/plain$d"
    "$BIN/dumpgen" --seed "$SEED" --docs "$DOCS" --day $((d - 1)) -o "$p" || die "dumpgen failed"
    gzip -6 -nc "$p" >"$WORK/days/gzip6$d"
    "$WORK/go/gogz" <"$p" >"$WORK/days/gogzip$d"
    if [[ -n "$PGBIN" ]]; then
        python3 "$WORK/arch2copy.py" "$p" >"$WORK/rows" || die "converting day $d for PostgreSQL failed"
        psql_ -d bench -c "TRUNCATE docs" -c "\\copy docs FROM '$WORK/rows'" || die "loading day $d failed"
        "$PGBIN/pg_dump" -Fc -h "$PGSOCK" -U postgres -f "$WORK/days/pgfc$d" bench || die "pg_dump failed"
        "$PGBIN/pg_dump" -Fc -Z 0 -h "$PGSOCK" -U postgres -f "$WORK/days/pgplain$d" bench || die "pg_dump failed"
    fi
done
rm -f "$WORK/rows"
for v in $VARIANTS; do
    INPUT[$v]=0
    for ((d = 1; d <= DAYS; d++)); do INPUT[$v]=$((INPUT[$v] + $(stat -c %s "$WORK/days/$v$d"))); done
    LAST_FILE[$v]="$WORK/days/$v$DAYS"
done
day_date() { date -u -d "2026-01-01 + $(($1 - 1)) days" +%F; }

declare -A STORE_S STORED READ_S RSS DRILL_S DRILL_O GUNZIP_S
run_tool() { # TOOL VARIANT
    local tool="$1" v="$2" repo="$WORK/repo-$1-$2" t0 t1 kib=0 k d sha
    local log="$WORK/logs/$tool-$v.log"
    case "$tool" in
    vault) "$BIN/vaultctl" --repo "$repo" init >>"$log" 2>&1 ;;
    restic) restic --repo "$repo" init >>"$log" 2>&1 ;;
    borg) borg init -e repokey "$repo" >>"$log" 2>&1 ;;
    esac
    STORE_S[$tool,$v]=0
    for ((d = 1; d <= DAYS; d++)); do
        local f="$WORK/days/$v$d"
        t0="$(now)"
        case "$tool" in
        vault) /usr/bin/time -f %M -o "$WORK/rss" faketime "$(day_date "$d") 12:00:00" "$BIN/vaultctl" --repo "$repo" put dump "$f" >>"$log" 2>&1 ;;
        restic) /usr/bin/time -f %M -o "$WORK/rss" restic --repo "$repo" backup --quiet --stdin --stdin-filename dump <"$f" >>"$log" 2>&1 ;;
        borg) /usr/bin/time -f %M -o "$WORK/rss" borg create --stdin-name dump "$repo::day$d" - <"$f" >>"$log" 2>&1 ;;
        esac || {
            tail -n 20 "$log" >&2
            die "$tool failed to store $v day $d"
        }
        t1="$(now)"
        STORE_S[$tool,$v]="$(calc "${STORE_S[$tool,$v]} + $t1 - $t0" 6)"
        k="$(tail -n 1 "$WORK/rss")"
        ((k > kib)) && kib="$k"
    done
    RSS[$tool,$v]="$kib"
    STORED[$tool,$v]="$(du -sb "$repo" | cut -f1)"
    local read_cmd
    case "$tool" in
    vault) read_cmd=(faketime "$(day_date "$DAYS") 13:00:00" "$BIN/vaultctl" --repo "$repo" cat current/dump) ;;
    restic) read_cmd=(restic --repo "$repo" dump latest dump) ;;
    borg) read_cmd=(borg extract --stdout "$repo::day$DAYS" dump) ;;
    esac
    t0="$(now)"
    "${read_cmd[@]}" >/dev/null 2>>"$log" || die "$tool failed to read $v"
    t1="$(now)"
    READ_S[$tool,$v]="$(calc "$t1 - $t0" 6)"
    sha="$("${read_cmd[@]}" 2>>"$log" | sha256sum | cut -d' ' -f1)"
    [[ "$sha" == "$(sha256sum <"${LAST_FILE[$v]}" | cut -d' ' -f1)" ]] || die "$tool read back $v day $DAYS wrong"
    if [[ "$tool" == vault ]]; then
        faketime "$(day_date "$DAYS") 13:05:00" "$BIN/vaultctl" --repo "$repo" stats >"$WORK/logs/stats-$v.txt" 2>&1
        if [[ "$v" == gzip6 || "$v" == gogzip ]]; then
            # The decompressed content, read as stored: what `gzip -dc` of the file gives.
            local gunzip=(faketime "$(day_date "$DAYS") 13:06:00" "$BIN/vaultctl" --repo "$repo" cat --gunzip current/dump)
            t0="$(now)"
            "${gunzip[@]}" >/dev/null 2>>"$log" || die "cat --gunzip of $v failed"
            t1="$(now)"
            GUNZIP_S[$v]="$(calc "$t1 - $t0" 6)"
            [[ "$("${gunzip[@]}" 2>>"$log" | sha256sum)" == "$(gzip -dc "${LAST_FILE[$v]}" | sha256sum)" ]] ||
                die "cat --gunzip of $v gave other bytes than gzip -dc"
        fi
        local how
        for how in content original; do
            local extra=()
            [[ "$how" == original ]] && extra=(--original)
            t0="$(now)"
            faketime "$(day_date "$DAYS") 13:10:00" "$BIN/vaultctl" --repo "$repo" drill --snapshot current --path dump \
                "${extra[@]}" >>"$log" 2>&1 || die "the drill of $v ($how) failed"
            t1="$(now)"
            if [[ "$how" == content ]]; then DRILL_S[$v]="$(calc "$t1 - $t0" 6)"; else DRILL_O[$v]="$(calc "$t1 - $t0" 6)"; fi
        done
    fi
}

for v in $VARIANTS; do
    for t in $TOOLS; do
        echo "storing $v with $t" >&2
        run_tool "$t" "$v"
    done
done
declare -A GZ_S
for v in $VARIANTS; do
    [[ "$v" == gzip6 || "$v" == gogzip ]] || continue
    t0="$(now)"
    gzip -dc "${LAST_FILE[$v]}" >/dev/null
    t1="$(now)"
    GZ_S[$v]="$(calc "$t1 - $t0" 6)"
done

mb() { calc "$1 / 1000000" 1; }
gz_s() { if [[ -n "${GZ_S[$1]:-}" ]]; then calc "${GZ_S[$1]}" 2; else echo -; fi; }
echo
echo "Compressed week: $DAYS days of $DOCS documents (dumpgen seed $SEED), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| input | tool | input MB | stored MB | stored / vault plain week | ingest s | ingest MB/s | read newest s | read MB/s | gzip -dc s | peak RSS MiB |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for v in $VARIANTS; do
    for t in $TOOLS; do
        base="${STORED[vault,plain]:-}"
        rel="-"
        [[ -n "$base" ]] && rel="$(calc "${STORED[$t,$v]} / $base" 2)"
        last="$(stat -c %s "${LAST_FILE[$v]}")"
        echo "| $v | $t | $(mb "${INPUT[$v]}") | $(mb "${STORED[$t,$v]}") | $rel | $(calc "${STORE_S[$t,$v]}" 2) | $(calc "${INPUT[$v]} / ${STORE_S[$t,$v]} / 1000000" 1) | $(calc "${READ_S[$t,$v]}" 2) | $(calc "$last / ${READ_S[$t,$v]} / 1000000" 1) | $(gz_s "$v") | $(calc "${RSS[$t,$v]} / 1024" 0) |"
    done
done
if [[ " $TOOLS " == *" vault "* ]]; then
    echo
    echo "| input | vault drill of the newest day s | drill --original s | ratio | vault cat --gunzip s | gzip -dc s |"
    echo "|---|---:|---:|---:|---:|---:|"
    for v in $VARIANTS; do
        g="-"
        [[ -n "${GUNZIP_S[$v]:-}" ]] && g="$(calc "${GUNZIP_S[$v]}" 2)"
        echo "| $v | $(calc "${DRILL_S[$v]}" 2) | $(calc "${DRILL_O[$v]}" 2) | $(calc "${DRILL_O[$v]} / ${DRILL_S[$v]}" 1) | $g | $(gz_s "$v") |"
    done
    for v in $VARIANTS; do
        echo
        echo "vault stats, $v:"
        grep -E "expan|stored bytes" "$WORK/logs/stats-$v.txt" | sed 's/^/    /'
    done
fi
