#!/usr/bin/env bash
# Compressed dumps (docs/DESIGN.md §14): the same week of a mongodump-archive series
# (tools/dumpgen) stored plain, as `gzip -6 -n` output and as Go's compress/gzip output (the
# code path of `mongodump --gzip`), each by `vaultctl put`, `restic backup --stdin` and
# `borg create`, in one run. Prints a Markdown table: bytes of the 7 inputs, repository size
# after the week, ingest time and throughput (of the input bytes), time to read the newest day
# back (to /dev/null, then checked against its sha256), and next to it `gzip -dc` of the newest
# day (the read goal) and the vault's peak RSS.
#
# Environment (all optional):
#   BENCH_DOCS     documents per day (default 50000: a day is about 35 MB plain, 11 MB gzipped)
#   BENCH_DAYS     days (default 7)
#   BENCH_SEED     seed of the series (default 1)
#   BENCH_TOOLS    tools compared (default "vault restic borg")
#   BENCH_VARIANTS inputs (default "plain gzip6 gogzip")
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
VARIANTS="${BENCH_VARIANTS:-plain gzip6 gogzip}"
[[ "$DOCS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_DOCS must be a positive integer"
[[ "$DAYS" =~ ^[1-9][0-9]*$ ]] && ((DAYS <= 30)) || die "BENCH_DAYS must be 1..30"
for t in $TOOLS; do case "$t" in vault | restic | borg) ;; *) die "unknown tool $t" ;; esac; done
for v in $VARIANTS; do case "$v" in plain | gzip6 | gogzip) ;; *) die "unknown variant $v" ;; esac; done
for c in faketime gzip go /usr/bin/time; do command -v "$c" >/dev/null || die "$c is needed (scripts/install-deps.sh; VAULT_BENCH_DEPS=1 for restic and borg)"; done
for t in $TOOLS; do [[ "$t" == vault ]] || command -v "$t" >/dev/null || die "$t is not installed"; done

if [[ "${BENCH_BUILD:-1}" != 0 ]]; then
    (cd "$ROOT" && cargo build --release --quiet -p vault -p dumpgen) || die "cargo build failed"
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK="$(mktemp -d /var/tmp/vault-bench-gz.XXXXXX)"
cleanup() { if [[ "${BENCH_KEEP:-0}" == 1 ]]; then echo "kept $WORK" >&2; else rm -rf -- "$WORK"; fi; }
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

echo "generating $DAYS days of $DOCS documents in $WORK" >&2
declare -A INPUT LAST_FILE
for ((d = 1; d <= DAYS; d++)); do
    p="$WORK/days/plain$d"
    "$BIN/dumpgen" --seed "$SEED" --docs "$DOCS" --day $((d - 1)) -o "$p" || die "dumpgen failed"
    gzip -6 -nc "$p" >"$WORK/days/gzip6$d"
    "$WORK/go/gogz" <"$p" >"$WORK/days/gogzip$d"
done
for v in $VARIANTS; do
    INPUT[$v]=0
    for ((d = 1; d <= DAYS; d++)); do INPUT[$v]=$((INPUT[$v] + $(stat -c %s "$WORK/days/$v$d"))); done
    LAST_FILE[$v]="$WORK/days/$v$DAYS"
done
day_date() { date -u -d "2026-01-01 + $(($1 - 1)) days" +%F; }

declare -A STORE_S STORED READ_S RSS
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
    [[ "$v" == plain ]] && continue
    t0="$(now)"
    gzip -dc "${LAST_FILE[$v]}" >/dev/null
    t1="$(now)"
    GZ_S[$v]="$(calc "$t1 - $t0" 6)"
done

mb() { calc "$1 / 1000000" 1; }
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
        echo "| $v | $t | $(mb "${INPUT[$v]}") | $(mb "${STORED[$t,$v]}") | $rel | $(calc "${STORE_S[$t,$v]}" 2) | $(calc "${INPUT[$v]} / ${STORE_S[$t,$v]} / 1000000" 1) | $(calc "${READ_S[$t,$v]}" 2) | $(calc "$last / ${READ_S[$t,$v]} / 1000000" 1) | ${GZ_S[$v]:--} | $(calc "${RSS[$t,$v]} / 1024" 0) |"
    done
done
if [[ " $TOOLS " == *" vault "* ]]; then
    for v in $VARIANTS; do
        echo
        echo "vault stats, $v:"
        grep -E "expan|stored bytes" "$WORK/logs/stats-$v.txt" | sed 's/^/    /'
    done
fi
