#!/usr/bin/env bash
# Compares `vaultctl put` with `restic backup --stdin` and `borg create` on the same week of a
# mongodump-archive series (tools/dumpgen: scattered daily churn), in one run, and prints a
# Markdown table: store time and throughput, repository size after the week, time to read
# the newest day back (timed to /dev/null, then checked against the source's sha256), and peak RSS of the stores.
#
# Environment (all optional):
#   BENCH_DOCS         documents per day (default 380000: a day is about 256 MiB)
#   BENCH_DAYS         days stored (default 7; at most 30)
#   BENCH_CHURN        share of documents updated in place per day (default 0.01)
#   BENCH_SEED         seed of the series (default 1)
#   BENCH_COLLECTIONS  collections in the dump (default 2)
#   BENCH_TOOLS        tools compared (default "vault restic borg")
#   BENCH_CHUNK_AVG    passed as `vaultctl init --chunk-avg` (default: the vault's own)
#   BENCH_SWEEP=1      also run vault alone with --chunk-avg 4KiB, 8KiB, 16KiB, 32KiB, 64KiB
#   BENCH_DIR          working directory (default: a new mktemp directory under /var/tmp);
#                      must be absent or empty; removed at the end unless BENCH_KEEP=1
#   BENCH_KEEP=1       keep the working directory (day files, repositories, logs)
#   BENCH_BUILD=0      do not run `cargo build --release -p vault -p dumpgen`; use the
#                      binaries already in target/release
#
# Reads are measured right after the stores, with a warm page cache for every tool alike.
set -euo pipefail

die() {
    echo "bench.sh: $*" >&2
    exit 1
}
trap 'rc=$?; echo "bench.sh: failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2' ERR

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

DOCS="${BENCH_DOCS:-380000}"
DAYS="${BENCH_DAYS:-7}"
CHURN="${BENCH_CHURN:-0.01}"
SEED="${BENCH_SEED:-1}"
COLLECTIONS="${BENCH_COLLECTIONS:-2}"
TOOLS="${BENCH_TOOLS:-vault restic borg}"
CHUNK_AVG="${BENCH_CHUNK_AVG:-}"
SWEEP="${BENCH_SWEEP:-0}"
KEEP="${BENCH_KEEP:-0}"
BUILD="${BENCH_BUILD:-1}"

[[ "$DOCS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_DOCS must be a positive integer, got '$DOCS'"
[[ "$DAYS" =~ ^[1-9][0-9]*$ ]] && ((DAYS <= 30)) || die "BENCH_DAYS must be 1..30, got '$DAYS'"
[[ "$SEED" =~ ^[0-9]+$ ]] || die "BENCH_SEED must be a non-negative integer, got '$SEED'"
[[ "$COLLECTIONS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_COLLECTIONS must be a positive integer"
for t in $TOOLS; do
    case "$t" in vault | restic | borg) ;; *) die "unknown tool '$t' in BENCH_TOOLS (use vault, restic, borg)" ;; esac
done
want() { [[ " $TOOLS " == *" $1 "* ]]; }
NEED_VAULT=0
if want vault || [[ "$SWEEP" == 1 ]]; then NEED_VAULT=1; fi

# --- dependencies -----------------------------------------------------------------------
missing=()
[[ -x /usr/bin/time ]] || missing+=(time)
want restic && ! command -v restic >/dev/null && missing+=(restic)
want borg && ! command -v borg >/dev/null && missing+=(borgbackup)
[[ "$NEED_VAULT" == 1 ]] && ! command -v faketime >/dev/null && missing+=(faketime)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}" >&2
    SUDO=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || die "need root or sudo to install ${missing[*]}"
        SUDO=(sudo)
    fi
    "${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
fi

packages=(-p dumpgen)
[[ "$NEED_VAULT" == 1 ]] && packages+=(-p vault)
if [[ "$BUILD" != 0 ]]; then
    echo "building ${packages[*]} (release)" >&2
    (cd "$ROOT" && cargo build --release --quiet "${packages[@]}") || die "cargo build --release ${packages[*]} failed"
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
DUMPGEN="$BIN/dumpgen"
VAULTCTL="$BIN/vaultctl"
[[ -x "$DUMPGEN" ]] || die "$DUMPGEN not found after the build"
[[ "$NEED_VAULT" == 0 || -x "$VAULTCTL" ]] || die "$VAULTCTL not found after the build"

# --- working directory and a clean environment ------------------------------------------
if [[ -n "${BENCH_DIR:-}" ]]; then
    WORK="$BENCH_DIR"
    mkdir -p "$WORK" || die "cannot create $WORK"
    [[ -z "$(ls -A "$WORK")" ]] || die "BENCH_DIR $WORK is not empty"
else
    WORK="$(mktemp -d /var/tmp/vault-bench.XXXXXX)" || die "mktemp failed"
fi
WORK="$(cd "$WORK" && pwd)"
cleanup() {
    if [[ "$KEEP" == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT
mkdir -p "$WORK/days" "$WORK/logs"

# Settings of the caller must not leak into the benchmark.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(VAULT_|RESTIC_|BORG_)' || true)
export TZ=UTC
export VAULT_PASSPHRASE="bench-passphrase-not-secret"
export RESTIC_PASSWORD="$VAULT_PASSPHRASE"
export RESTIC_CACHE_DIR="$WORK/cache/restic"
export BORG_PASSPHRASE="$VAULT_PASSPHRASE"
export BORG_BASE_DIR="$WORK/cache/borg"
export BORG_DISPLAY_PASSPHRASE=no
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

# VAULT_CACHE_DIR is set per vault repository, under $WORK/cache, by bench_vault.

# --- helpers ----------------------------------------------------------------------------
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
day_date() { printf '2026-11-%02d' "$1"; }

# logged NAME CMD...: runs CMD with output to logs/NAME.log; on failure shows it and aborts.
logged() {
    local log="$WORK/logs/$1.log"
    shift
    if ! "$@" >>"$log" 2>&1; then
        echo "bench.sh: command failed: $*" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
}

# --- the series (not timed) -------------------------------------------------------------
echo "generating $DAYS days of $DOCS documents (seed $SEED, churn $CHURN) in $WORK" >&2
INPUT_BYTES=0
for ((d = 1; d <= DAYS; d++)); do
    "$DUMPGEN" --seed "$SEED" --docs "$DOCS" --day $((d - 1)) --churn "$CHURN" \
        --collections "$COLLECTIONS" -o "$WORK/days/day$d" || die "dumpgen failed for day $d"
    INPUT_BYTES=$((INPUT_BYTES + $(stat -c %s "$WORK/days/day$d")))
done
LAST="$WORK/days/day$DAYS"
LAST_BYTES="$(stat -c %s "$LAST")"
LAST_SHA="$(sha256sum <"$LAST" | cut -d' ' -f1)"

declare -A STORE_S STORED_B READ_S RSS_KIB

# timed_store TOOL DAY CMD...: runs CMD with stdin from the day file, adds wall time and RSS.
timed_store() {
    local tool="$1" d="$2" rss="$WORK/logs/rss" t0 t1
    shift 2
    t0="$(now)"
    if ! /usr/bin/time -f %M -o "$rss" "$@" <"$WORK/days/day$d" >>"$WORK/logs/$tool.log" 2>&1; then
        echo "bench.sh: $tool failed to store day $d: $*" >&2
        tail -n 20 "$WORK/logs/$tool.log" >&2
        exit 1
    fi
    t1="$(now)"
    STORE_S[$tool]="$(calc "${STORE_S[$tool]:-0} + $t1 - $t0" 6)"
    local kib
    kib="$(tail -n 1 "$rss")"
    [[ "$kib" =~ ^[0-9]+$ ]] || die "no RSS figure from /usr/bin/time for $tool"
    ((kib > ${RSS_KIB[$tool]:-0})) && RSS_KIB[$tool]="$kib"
    return 0
}

# timed_read TOOL CMD...: times CMD streaming the newest day to /dev/null (so the checksum
# does not compete for the two cores), then runs it again, untimed, and checks the sha256.
timed_read() {
    local tool="$1" t0 t1 sha
    shift
    t0="$(now)"
    "$@" >/dev/null 2>>"$WORK/logs/$tool.log" || {
        tail -n 20 "$WORK/logs/$tool.log" >&2
        die "$tool failed to read back day $DAYS"
    }
    t1="$(now)"
    sha="$("$@" 2>>"$WORK/logs/$tool.log" | sha256sum | cut -d' ' -f1)" || die "$tool failed to read back day $DAYS"
    [[ "$sha" == "$LAST_SHA" ]] || die "$tool read back day $DAYS with sha256 $sha, expected $LAST_SHA"
    READ_S[$tool]="$(calc "$t1 - $t0" 6)"
}

stored_bytes() { du -sb "$1" | cut -f1; }

bench_vault() { # TOOL-LABEL CHUNK-AVG(optional)
    local tool="$1" chunk="${2:-}" repo="$WORK/repo-$1"
    export VAULT_CACHE_DIR="$WORK/cache/$tool"
    local init=("$VAULTCTL" --repo "$repo" init)
    [[ -n "$chunk" ]] && init+=(--chunk-avg "$chunk")
    logged "$tool" "${init[@]}"
    for ((d = 1; d <= DAYS; d++)); do
        timed_store "$tool" "$d" faketime "$(day_date "$d") 12:00:00" "$VAULTCTL" --repo "$repo" put dump.archive
    done
    # The last day is still open: seal it (as that day), so that `latest` names it.
    logged "$tool" faketime "$(day_date "$DAYS") 12:30:00" "$VAULTCTL" --repo "$repo" seal
    STORED_B[$tool]="$(stored_bytes "$repo")"
    timed_read "$tool" faketime "$(day_date "$DAYS") 12:40:00" "$VAULTCTL" --repo "$repo" cat latest/dump.archive
    logged "$tool" faketime "$(day_date "$DAYS") 12:45:00" "$VAULTCTL" --repo "$repo" stats
}

bench_restic() {
    local repo="$WORK/repo-restic"
    logged restic restic --repo "$repo" init
    for ((d = 1; d <= DAYS; d++)); do
        timed_store restic "$d" restic --repo "$repo" backup --quiet --stdin --stdin-filename dump.archive
    done
    STORED_B[restic]="$(stored_bytes "$repo")"
    timed_read restic restic --repo "$repo" dump latest dump.archive
}

bench_borg() {
    local repo="$WORK/repo-borg"
    logged borg borg init -e repokey "$repo"
    for ((d = 1; d <= DAYS; d++)); do
        timed_store borg "$d" borg create --stdin-name dump.archive "$repo::day$d" -
    done
    STORED_B[borg]="$(stored_bytes "$repo")"
    timed_read borg borg extract --stdout "$repo::day$DAYS" dump.archive
}

# --- runs -------------------------------------------------------------------------------
for t in $TOOLS; do
    echo "running $t" >&2
    case "$t" in
    vault) bench_vault vault "$CHUNK_AVG" ;;
    restic) bench_restic ;;
    borg) bench_borg ;;
    esac
done

mb() { calc "$1 / 1000000" 1; }
mib() { calc "$1 / 1048576" 1; }
rate() { calc "$1 / 1000000 / $2" 1; }

echo
echo "## Week of dumps: $DAYS days × $DOCS documents, churn $CHURN (seed $SEED)"
echo
echo "Input: $(mb "$INPUT_BYTES") MB in total, $(mb "$LAST_BYTES") MB for the newest day."
echo "MB = 10^6 bytes, MiB = 2^20 bytes; read = newest day streamed to /dev/null (timed), then again to sha256sum (checked, untimed)."
echo
echo "| tool | store s | MB/s | stored MiB | read s | read MB/s | peak RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for t in $TOOLS; do
    echo "| $t | $(calc "${STORE_S[$t]}" 1) | $(rate "$INPUT_BYTES" "${STORE_S[$t]}") | $(mib "${STORED_B[$t]}") |" \
        "$(calc "${READ_S[$t]}" 2) | $(rate "$LAST_BYTES" "${READ_S[$t]}") | $(calc "${RSS_KIB[$t]} / 1024" 1) |"
done
if want vault; then
    for other in restic borg; do
        want "$other" || continue
        echo
        echo "- vault stored / $other stored: $(calc "${STORED_B[vault]} / ${STORED_B[$other]}" 3)"
        echo "- vault put MB/s / $other MB/s: $(calc "${STORE_S[$other]} / ${STORE_S[vault]}" 3)"
        echo "- vault read MB/s / $other read MB/s: $(calc "${READ_S[$other]} / ${READ_S[vault]}" 3)"
    done
fi

if [[ "$SWEEP" == 1 ]]; then
    rows=()
    for c in 4KiB 8KiB 16KiB 32KiB 64KiB; do
        echo "running vault --chunk-avg $c" >&2
        bench_vault "vault-$c" "$c"
        row="| $c | $(mib "${STORED_B[vault-$c]}") | ${STORED_B[vault-$c]} | $(calc "${STORE_S[vault-$c]}" 1) | "
        row+="$(rate "$INPUT_BYTES" "${STORE_S[vault-$c]}") | $(rate "$LAST_BYTES" "${READ_S[vault-$c]}") |"
        rows+=("$row")
        rm -rf -- "$WORK/repo-vault-$c" "$WORK/cache/vault-$c"
    done
    echo
    echo "## Chunk size sweep (vault only)"
    echo
    echo "| --chunk-avg | stored MiB | stored bytes | store s | store MB/s | read MB/s |"
    echo "|---|---:|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
fi
