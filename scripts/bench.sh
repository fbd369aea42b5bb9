#!/usr/bin/env bash
# Compares `vaultctl put` with `restic backup --stdin` and `borg create` on the same week of a
# mongodump-archive series (tools/dumpgen: scattered daily churn), in one run, and prints a
# Markdown table: store time and throughput, repository size after the week, time to read
# the newest day back (timed to /dev/null, then checked against the source's sha256), and peak RSS of the stores.
# With vault among the tools, the same week is then written through a `vaultfs` mount (one
# mount per day, the daemon's clock at that day), read back through the mount, and compared
# with the numbers of the first table in a second one.
#
# Environment (all optional):
#   BENCH_DOCS         documents per day (default 380000: a day is about 256 MiB)
#   BENCH_DAYS         days stored (default 7; at most 30)
#   BENCH_CHURN        share of documents updated in place per day (default 0.01)
#   BENCH_SEED         seed of the series (default 1)
#   BENCH_COLLECTIONS  collections in the dump (default 2)
#   BENCH_TOOLS        tools compared (default "vault restic borg", plus "rustic" when a `rustic`
#                      binary is installed: `cargo install rustic-rs --locked`, see
#                      docs/PERFORMANCE.md)
#   BENCH_CHUNK_AVG    passed as `vaultctl init --chunk-avg` (default: the vault's own)
#   BENCH_SWEEP=1      also run vault alone with --chunk-avg 4KiB, 8KiB, 16KiB, 32KiB, 64KiB
#   BENCH_FRAME_SWEEP=1  also run vault alone with --frame-size 0 (one chunk per blob, the layout
#                      before frames), 16KiB, 32KiB, 64KiB, 128KiB, 256KiB
#   BENCH_DIR          working directory (default: a new mktemp directory under /var/tmp);
#                      must be absent or empty; removed at the end unless BENCH_KEEP=1
#   BENCH_KEEP=1       keep the working directory (day files, repositories, logs)
#   BENCH_MOUNT=0      skip the mount section (on by default when vault is in BENCH_TOOLS)
#   BENCH_BIG=1        also write 4 GiB (the day files repeated) through a fresh mount and
#                      report the daemon's peak RSS (VmHWM) and throughput
#   BENCH_SYNC=0       skip the sync section (on by default when vault is in BENCH_TOOLS): vault
#                      sync of the week's vault to a file remote and to a local S3 server (moto,
#                      from the checkout's .venv: scripts/install-deps.sh), next to `restic copy`
#                      of the week's restic repository (to disk and to the same S3 server) and
#                      `rclone sync` of the vault directory (to disk and to S3); then the time
#                      of a no-op sync of a vault of BENCH_SYNC_CHUNKS chunks
#   BENCH_SYNC_CHUNKS  chunks of the vault whose no-op sync is timed (default 100000)
#   BENCH_SYNC_RCLONE_MIB  size of the random-data vault (default packs of 16 MiB) synced to an
#                      rclone local-type remote and an rclone S3-type remote (moto), next to
#                      `rclone copy` of its directory to the same remotes, then read back with
#                      `check --read-data` from each; peak RSS of vaultctl and of its rclone
#                      daemon (default 1024; 0 skips it)
#   BENCH_NEW=0        skip the new-data section: 1 GB of incompressible bytes and a 1 GB first-day
#                      dump (every chunk new) stored once by each tool into a fresh repository and
#                      read back (BENCH_NEW_MB sets the size, default 1000)
#   BENCH_LIMIT=0      skip the machine-limit microbenchmark (tools/limits: AES-GCM-SIV open + zstd
#                      + BLAKE3 of the same bytes on all cores, no I/O) and the goals table
#   BENCH_BUILD=0      do not run `cargo build --release -p vault -p vaultfs -p dumpgen -p limits`;
#                      use the binaries already in target/release
#
# The mount section needs FUSE: /dev/fuse and fusermount3 (package fuse3, installed if missing).
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
DEFAULT_TOOLS="vault restic borg"
command -v rustic >/dev/null && DEFAULT_TOOLS+=" rustic"
TOOLS="${BENCH_TOOLS:-$DEFAULT_TOOLS}"
CHUNK_AVG="${BENCH_CHUNK_AVG:-}"
SWEEP="${BENCH_SWEEP:-0}"
FRAME_SWEEP="${BENCH_FRAME_SWEEP:-0}"
KEEP="${BENCH_KEEP:-0}"
BUILD="${BENCH_BUILD:-1}"
MOUNT="${BENCH_MOUNT:-1}"
BIG="${BENCH_BIG:-0}"
SYNC="${BENCH_SYNC:-1}"
SYNC_CHUNKS="${BENCH_SYNC_CHUNKS:-100000}"
SYNC_RCLONE_MIB="${BENCH_SYNC_RCLONE_MIB:-1024}"
NEW="${BENCH_NEW:-1}"
NEW_MB="${BENCH_NEW_MB:-1000}"
LIMIT="${BENCH_LIMIT:-1}"

[[ "$DOCS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_DOCS must be a positive integer, got '$DOCS'"
[[ "$DAYS" =~ ^[1-9][0-9]*$ ]] && ((DAYS <= 30)) || die "BENCH_DAYS must be 1..30, got '$DAYS'"
[[ "$SEED" =~ ^[0-9]+$ ]] || die "BENCH_SEED must be a non-negative integer, got '$SEED'"
[[ "$COLLECTIONS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_COLLECTIONS must be a positive integer"
for t in $TOOLS; do
    case "$t" in vault | restic | borg | rustic) ;; *) die "unknown tool '$t' in BENCH_TOOLS (use vault, restic, borg, rustic)" ;; esac
done
want() { [[ " $TOOLS " == *" $1 "* ]]; }
[[ "$MOUNT" == 0 || "$MOUNT" == 1 ]] || die "BENCH_MOUNT must be 0 or 1, got '$MOUNT'"
[[ "$BIG" == 0 || "$BIG" == 1 ]] || die "BENCH_BIG must be 0 or 1, got '$BIG'"
[[ "$SYNC" == 0 || "$SYNC" == 1 ]] || die "BENCH_SYNC must be 0 or 1, got '$SYNC'"
[[ "$SYNC_CHUNKS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SYNC_CHUNKS must be a positive integer"
[[ "$SYNC_RCLONE_MIB" =~ ^[0-9]+$ ]] || die "BENCH_SYNC_RCLONE_MIB must be a non-negative integer"
[[ "$NEW" == 0 || "$NEW" == 1 ]] || die "BENCH_NEW must be 0 or 1, got '$NEW'"
[[ "$NEW_MB" =~ ^[1-9][0-9]*$ ]] || die "BENCH_NEW_MB must be a positive integer"
[[ "$LIMIT" == 0 || "$LIMIT" == 1 ]] || die "BENCH_LIMIT must be 0 or 1, got '$LIMIT'"
want rustic && ! command -v rustic >/dev/null && die "rustic is in BENCH_TOOLS but not installed (cargo install rustic-rs --locked)"
want vault || SYNC=0
NEED_VAULT=0
if want vault || [[ "$SWEEP" == 1 ]] || [[ "$FRAME_SWEEP" == 1 ]]; then NEED_VAULT=1; fi
# The mount section writes the week through vaultfs; BENCH_BIG=1 adds the 4 GiB write.
NEED_FS=0
if { want vault && [[ "$MOUNT" == 1 ]]; } || [[ "$BIG" == 1 ]]; then NEED_FS=1; fi
[[ "$NEED_FS" == 1 ]] && NEED_VAULT=1

# --- dependencies -----------------------------------------------------------------------
missing=()
[[ -x /usr/bin/time ]] || missing+=(time)
want restic && ! command -v restic >/dev/null && missing+=(restic)
want borg && ! command -v borg >/dev/null && missing+=(borgbackup)
[[ "$NEED_VAULT" == 1 ]] && ! command -v faketime >/dev/null && missing+=(faketime)
[[ "$NEED_FS" == 1 ]] && ! command -v fusermount3 >/dev/null && missing+=(fuse3)
[[ "$SYNC" == 1 ]] && ! command -v rclone >/dev/null && missing+=(rclone)
[[ "$SYNC" == 1 ]] && ! command -v curl >/dev/null && missing+=(curl)
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

if [[ "$NEED_FS" == 1 ]]; then
    command -v fusermount3 >/dev/null || die "fusermount3 not found after installing fuse3"
    [[ -c /dev/fuse && -r /dev/fuse && -w /dev/fuse ]] ||
        die "/dev/fuse is missing or not usable by $(id -un); a FUSE mount must work here (or set BENCH_MOUNT=0)"
fi

packages=(-p dumpgen)
[[ "$NEED_VAULT" == 1 ]] && packages+=(-p vault -p limits)
[[ "$NEED_FS" == 1 ]] && packages+=(-p vaultfs)
if [[ "$BUILD" != 0 ]]; then
    echo "building ${packages[*]} (release)" >&2
    (cd "$ROOT" && cargo build --release --quiet "${packages[@]}") || die "cargo build --release ${packages[*]} failed"
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
DUMPGEN="$BIN/dumpgen"
VAULTCTL="$BIN/vaultctl"
VAULTFS="$BIN/vaultfs"
LIMITS="$BIN/limits"
[[ -x "$DUMPGEN" ]] || die "$DUMPGEN not found after the build"
[[ "$NEED_VAULT" == 0 || -x "$VAULTCTL" ]] || die "$VAULTCTL not found after the build"
[[ "$NEED_FS" == 0 || -x "$VAULTFS" ]] || die "$VAULTFS not found after the build"
MOTO="$ROOT/.venv/bin/moto_server"
[[ "$SYNC" == 0 || -x "$MOTO" ]] || die "$MOTO not found: run scripts/install-deps.sh (or set BENCH_SYNC=0)"

# --- working directory and a clean environment ------------------------------------------
if [[ -n "${BENCH_DIR:-}" ]]; then
    WORK="$BENCH_DIR"
    mkdir -p "$WORK" || die "cannot create $WORK"
    [[ -z "$(ls -A "$WORK")" ]] || die "BENCH_DIR $WORK is not empty"
else
    WORK="$(mktemp -d /var/tmp/vault-bench.XXXXXX)" || die "mktemp failed"
fi
WORK="$(cd "$WORK" && pwd)"
# The mount of the moment (set by fs_mount, cleared by fs_unmount), taken down on any exit.
MNT_DIR=""
MNT_PID=""
# The S3 server of the sync section, stopped on any exit.
MOTO_PID=""
pid_alive() { [[ -r "/proc/$1/status" ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
unmount_on_exit() {
    local i
    if [[ -n "$MNT_DIR" ]]; then fusermount3 -uz "$MNT_DIR" >/dev/null 2>&1 || true; fi
    if [[ -n "$MNT_PID" ]] && pid_alive "$MNT_PID"; then
        echo "bench.sh: stopping the vaultfs daemon (pid $MNT_PID)" >&2
        kill -TERM "$MNT_PID" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            pid_alive "$MNT_PID" || break
            sleep 0.1
        done
        if pid_alive "$MNT_PID"; then kill -KILL "$MNT_PID" 2>/dev/null || true; fi
    fi
    MNT_DIR=""
    MNT_PID=""
    return 0
}
cleanup() {
    unmount_on_exit
    if [[ -n "$MOTO_PID" ]]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
    if [[ "$KEEP" == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$WORK/days" "$WORK/logs"

# Settings of the caller must not leak into the benchmark.
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(VAULT_|RESTIC_|BORG_|RCLONE_|RUSTIC_)' || true)
export TZ=UTC
export VAULT_PASSPHRASE="bench-passphrase-not-secret"
export RESTIC_PASSWORD="$VAULT_PASSPHRASE"
export RESTIC_CACHE_DIR="$WORK/cache/restic"
export BORG_PASSPHRASE="$VAULT_PASSPHRASE"
export BORG_BASE_DIR="$WORK/cache/borg"
export BORG_DISPLAY_PASSPHRASE=no
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export RUSTIC_PASSWORD="$VAULT_PASSPHRASE"
export RUSTIC_CACHE_DIR="$WORK/cache/rustic"

# VAULT_CACHE_DIR is set per vault repository, under $WORK/cache, by bench_vault.

# --- helpers ----------------------------------------------------------------------------
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
day_date() { printf '2026-11-%02d' "$1"; }
# The date DAYS days after 2026-11-01 (day_date would give 2026-11-31 for day 31).
date_after() { date -u -d "2026-11-01 + $1 days" +%F; }

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
# The inputs just written are flushed now, not during the first tool's timed run.
sync

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

bench_vault() { # TOOL-LABEL CHUNK-AVG(optional) FRAME-SIZE(optional)
    local tool="$1" chunk="${2:-}" frame="${3:-}" repo="$WORK/repo-$1"
    export VAULT_CACHE_DIR="$WORK/cache/$tool"
    local init=("$VAULTCTL" --repo "$repo" init)
    [[ -n "$chunk" ]] && init+=(--chunk-avg "$chunk")
    [[ -n "$frame" ]] && init+=(--frame-size "$frame")
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

# rustic (the Rust reimplementation of restic) reads and writes restic repositories. With a
# parent snapshot, `rustic backup -` stores nothing new unless --force is given.
bench_rustic() {
    local repo="$WORK/repo-rustic"
    logged rustic rustic -r "$repo" init
    for ((d = 1; d <= DAYS; d++)); do
        timed_store rustic "$d" rustic -r "$repo" backup --force --stdin-filename dump.archive -
    done
    STORED_B[rustic]="$(stored_bytes "$repo")"
    timed_read rustic rustic -r "$repo" dump latest:dump.archive
}

# --- runs -------------------------------------------------------------------------------
for t in $TOOLS; do
    echo "running $t" >&2
    case "$t" in
    vault) bench_vault vault "$CHUNK_AVG" ;;
    restic) bench_restic ;;
    borg) bench_borg ;;
    rustic) bench_rustic ;;
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
    for other in restic borg rustic; do
        want "$other" || continue
        echo
        echo "- vault stored / $other stored: $(calc "${STORED_B[vault]} / ${STORED_B[$other]}" 3)"
        echo "- vault put MB/s / $other MB/s: $(calc "${STORE_S[$other]} / ${STORE_S[vault]}" 3)"
        echo "- vault read MB/s / $other read MB/s: $(calc "${READ_S[$other]} / ${READ_S[vault]}" 3)"
    done
fi

# --- through the mount ------------------------------------------------------------------

# fs_mount REPO MNT DATE LABEL: mounts REPO at MNT with the daemon's clock starting at 02:00
# of DATE (logs/LABEL.log, daemon log logs/LABEL-daemon.log); sets MNT_DIR and MNT_PID.
fs_mount() {
    local repo="$1" mnt="$2" date="$3" label="$4" out
    [[ -z "$MNT_DIR" ]] || die "fs_mount: $MNT_DIR is still mounted"
    mkdir -p "$mnt"
    if ! out="$(faketime -f "@$date 02:00:00" "$VAULTFS" mount "$repo" "$mnt" --cache-dir "$WORK/cache/$label" \
        --log "$WORK/logs/$label-daemon.log" </dev/null 2>>"$WORK/logs/$label.log")"; then
        echo "bench.sh: vaultfs mount failed ($date):" >&2
        tail -n 20 "$WORK/logs/$label.log" >&2
        [[ -f "$WORK/logs/$label-daemon.log" ]] && tail -n 20 "$WORK/logs/$label-daemon.log" >&2
        exit 1
    fi
    echo "$out" >>"$WORK/logs/$label.log"
    MNT_DIR="$mnt"
    [[ "$out" =~ daemon\ pid\ ([0-9]+) ]] || die "no daemon pid in the output of vaultfs mount: $out"
    MNT_PID="${BASH_REMATCH[1]}"
    pid_alive "$MNT_PID" || die "the vaultfs daemon (pid $MNT_PID) is not running after the mount"
}

# fs_hwm_kib: the peak RSS (VmHWM, KiB) of the mounted daemon so far.
fs_hwm_kib() {
    local kib
    kib="$(awk '/^VmHWM:/ { print $2 }' "/proc/$MNT_PID/status" 2>/dev/null)" || true
    [[ "$kib" =~ ^[0-9]+$ ]] || die "cannot read VmHWM of the vaultfs daemon (pid $MNT_PID)"
    echo "$kib"
}

# fs_unmount LABEL: `fusermount3 -u` (retried while busy), then waits up to 60 s for the daemon to exit.
fs_unmount() {
    local label="$1" i
    for ((i = 0; ; i++)); do
        fusermount3 -u "$MNT_DIR" >>"$WORK/logs/$label.log" 2>&1 && break
        ((i < 20)) || die "fusermount3 -u $MNT_DIR failed (see $WORK/logs/$label.log)"
        sleep 0.5
    done
    for ((i = 0; i < 600; i++)); do
        pid_alive "$MNT_PID" || break
        sleep 0.1
    done
    pid_alive "$MNT_PID" && die "the vaultfs daemon (pid $MNT_PID) still runs 60 s after the unmount"
    MNT_DIR=""
    MNT_PID=""
}

# timed_dd LABEL DEST FILE, or timed_dd LABEL DEST - CMD...: copies FILE (or the output of
# CMD) to DEST with `dd bs=1M conv=fsync` and prints the wall time; the fsync and the close()
# commit the file, so the time covers storing it.
timed_dd() {
    local label="$1" dest="$2" t0 t1 ok=1
    shift 2
    t0="$(now)"
    if [[ "$1" == - ]]; then
        shift
        "$@" | dd of="$dest" bs=1M iflag=fullblock conv=fsync status=none 2>>"$WORK/logs/$label.log" || ok=0
    else
        dd if="$1" of="$dest" bs=1M conv=fsync status=none 2>>"$WORK/logs/$label.log" || ok=0
    fi
    t1="$(now)"
    if ((ok == 0)); then
        tail -n 20 "$WORK/logs/$label.log" >&2
        die "writing $dest through the mount failed"
    fi
    calc "$t1 - $t0" 6
}

bench_mount() {
    local label=vault-mount repo="$WORK/repo-vault-mount" mnt="$WORK/mnt" d s kib
    VAULT_CACHE_DIR="$WORK/cache/$label" logged "$label" faketime -f "@$(day_date 1) 01:00:00" \
        "$VAULTCTL" --repo "$repo" init --time-zone UTC
    STORE_S[$label]=0
    RSS_KIB[$label]=0
    for ((d = 1; d <= DAYS; d++)); do
        fs_mount "$repo" "$mnt" "$(day_date "$d")" "$label"
        s="$(timed_dd "$label" "$mnt/today" "$WORK/days/day$d")"
        STORE_S[$label]="$(calc "${STORE_S[$label]} + $s" 6)"
        kib="$(fs_hwm_kib)"
        ((kib > ${RSS_KIB[$label]})) && RSS_KIB[$label]="$kib"
        fs_unmount "$label"
    done
    # The day after the last: the first call seals the last day, which then appears under its date.
    local next sealed
    next="$(date_after "$DAYS")"
    sealed="$mnt/$(day_date "$DAYS")/today"
    fs_mount "$repo" "$mnt" "$next" "$label"
    ls "$mnt" >>"$WORK/logs/$label.log" 2>&1 || die "ls $mnt failed"
    [[ -f "$sealed" ]] || die "$sealed is missing after the rollover to $next (ls: $(ls "$mnt" | tr '\n' ' '))"
    timed_read "$label" cat "$sealed"
    READ_RSS_KIB="$(fs_hwm_kib)"
    fs_unmount "$label"
    STORED_B[$label]="$(stored_bytes "$repo")"
    VAULT_CACHE_DIR="$WORK/cache/$label" logged "$label" faketime -f "@$next 03:00:00" "$VAULTCTL" --repo "$repo" stats
}

# big_source BYTES: the day files, over and over, up to BYTES bytes in all.
big_source() {
    local left="$1" d size
    while ((left > 0)); do
        for ((d = 1; d <= DAYS && left > 0; d++)); do
            size="$(stat -c %s "$WORK/days/day$d")"
            if ((size <= left)); then
                cat "$WORK/days/day$d"
                left=$((left - size))
            else
                head -c "$left" "$WORK/days/day$d"
                left=0
            fi
        done
    done
}

bench_big() {
    local label=vault-big repo="$WORK/repo-vault-big" mnt="$WORK/mnt" bytes=$((4 * 1024 * 1024 * 1024)) sha got
    VAULT_CACHE_DIR="$WORK/cache/$label" logged "$label" faketime -f "@$(day_date 1) 01:00:00" \
        "$VAULTCTL" --repo "$repo" init --time-zone UTC
    fs_mount "$repo" "$mnt" "$(day_date 1)" "$label"
    BIG_S="$(timed_dd "$label" "$mnt/big.archive" - big_source "$bytes")"
    BIG_HWM_KIB="$(fs_hwm_kib)"
    [[ "$(stat -c %s "$mnt/big.archive")" == "$bytes" ]] || die "$mnt/big.archive does not have $bytes bytes"
    sha="$(big_source "$bytes" | sha256sum | cut -d' ' -f1)"
    got="$(sha256sum <"$mnt/big.archive" | cut -d' ' -f1)"
    [[ "$got" == "$sha" ]] || die "$mnt/big.archive reads back with sha256 $got, expected $sha"
    fs_unmount "$label"
    BIG_STORED_B="$(stored_bytes "$repo")"
    BIG_BYTES="$bytes"
    rm -rf -- "$repo" "$WORK/cache/$label"
}

if [[ "$NEED_FS" == 1 ]] && want vault && [[ "$MOUNT" == 1 ]]; then
    echo "running vault through the mount" >&2
    bench_mount
    m=vault-mount
    echo
    echo "## Through the mount"
    echo
    echo "One \`vaultfs mount\` per day (the daemon's clock at 02:00 of that day), the day file written"
    echo "to MOUNT/today with \`dd bs=1M conv=fsync\` (timed up to the close, which commits), then"
    echo "\`fusermount3 -u\`. Read: a mount on $(date_after "$DAYS") (the first call seals day $DAYS), then"
    echo "MOUNT/$(day_date "$DAYS")/today streamed to /dev/null with \`cat\` (timed), then checked with sha256sum."
    echo "Peak RSS: the daemon's VmHWM, the largest of the $DAYS writing mounts (the reading mount: $(calc "$READ_RSS_KIB / 1024" 1) MiB)."
    echo
    echo "| tool | store s | MB/s | stored MiB | read s | read MB/s | peak RSS MiB |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    echo "| vault mount | $(calc "${STORE_S[$m]}" 1) | $(rate "$INPUT_BYTES" "${STORE_S[$m]}") | $(mib "${STORED_B[$m]}") |" \
        "$(calc "${READ_S[$m]}" 2) | $(rate "$LAST_BYTES" "${READ_S[$m]}") | $(calc "${RSS_KIB[$m]} / 1024" 1) |"
    echo
    echo "- vault mount MB/s / vaultctl put MB/s: $(calc "${STORE_S[vault]} / ${STORE_S[$m]}" 3)"
    echo "- vault mount read MB/s / vaultctl cat MB/s: $(calc "${READ_S[vault]} / ${READ_S[$m]}" 3)"
    for other in restic borg rustic; do
        want "$other" || continue
        echo "- vault mount MB/s / $other MB/s: $(calc "${STORE_S[$other]} / ${STORE_S[$m]}" 3)"
        echo "- vault mount read MB/s / $other read MB/s: $(calc "${READ_S[$other]} / ${READ_S[$m]}" 3)"
    done
fi

if [[ "$BIG" == 1 ]]; then
    echo "running the 4 GiB write through the mount" >&2
    bench_big
    echo
    echo "- 4 GiB write through the mount (the day files repeated, so mostly duplicate chunks after the" \
        "first $(mb "$INPUT_BYTES") MB; one file, \`dd bs=1M conv=fsync\`): $(calc "$BIG_S" 1) s," \
        "$(rate "$BIG_BYTES" "$BIG_S") MB/s, stored $(mib "$BIG_STORED_B") MiB," \
        "daemon peak RSS (VmHWM) $(calc "$BIG_HWM_KIB / 1024" 1) MiB (goal: under 256 MiB)"
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

if [[ "$FRAME_SWEEP" == 1 ]]; then
    rows=()
    for f in 0 16KiB 32KiB 64KiB 128KiB 256KiB; do
        echo "running vault --frame-size $f" >&2
        bench_vault "vault-f$f" "$CHUNK_AVG" "$f"
        row="| $f | $(mib "${STORED_B[vault-f$f]}") | $(calc "${STORE_S[vault-f$f]}" 1) | "
        row+="$(rate "$INPUT_BYTES" "${STORE_S[vault-f$f]}") | $(calc "${READ_S[vault-f$f]}" 2) | $(rate "$LAST_BYTES" "${READ_S[vault-f$f]}") |"
        rows+=("$row")
        rm -rf -- "$WORK/repo-vault-f$f" "$WORK/cache/vault-f$f"
    done
    echo
    echo "## Frame size sweep (vault only)"
    echo
    echo "| --frame-size | stored MiB | store s | store MB/s | read s | read MB/s |"
    echo "|---|---:|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
fi

# --- new data: every chunk new -------------------------------------------------------------

declare -A NEW_STORE_S NEW_STORED_B NEW_READ_S
# bench_new KIND FILE: each tool stores FILE once into a fresh repository, then reads it back
# (timed to /dev/null, then checked against FILE's sha256).
bench_new() {
    local kind="$1" file="$2" t repo t0 t1 sha want_sha
    want_sha="$(sha256sum <"$file" | cut -d' ' -f1)"
    for t in $TOOLS; do
        echo "storing $kind with $t" >&2
        repo="$WORK/new-$t"
        rm -rf -- "$repo" "$WORK/cache/new-$t"
        local store=() read=()
        case "$t" in
        vault)
            export VAULT_CACHE_DIR="$WORK/cache/new-$t"
            logged new "$VAULTCTL" --repo "$repo" init
            store=("$VAULTCTL" --repo "$repo" put new.bin "$file")
            read=("$VAULTCTL" --repo "$repo" cat "$(date +%F)/new.bin")
            ;;
        restic)
            logged new restic --repo "$repo" init
            store=(restic --repo "$repo" backup --quiet --stdin --stdin-filename new.bin)
            read=(restic --repo "$repo" dump latest new.bin)
            ;;
        borg)
            logged new borg init -e repokey "$repo"
            store=(borg create --stdin-name new.bin "$repo::new" -)
            read=(borg extract --stdout "$repo::new" new.bin)
            ;;
        rustic)
            logged new rustic -r "$repo" init
            store=(rustic -r "$repo" backup --stdin-filename new.bin -)
            read=(rustic -r "$repo" dump latest:new.bin)
            ;;
        esac
        t0="$(now)"
        "${store[@]}" <"$file" >>"$WORK/logs/new.log" 2>&1 || die "$t failed to store $kind"
        t1="$(now)"
        NEW_STORE_S[$kind-$t]="$(calc "$t1 - $t0" 6)"
        NEW_STORED_B[$kind-$t]="$(stored_bytes "$repo")"
        t0="$(now)"
        "${read[@]}" >/dev/null 2>>"$WORK/logs/new.log" || die "$t failed to read back $kind"
        t1="$(now)"
        NEW_READ_S[$kind-$t]="$(calc "$t1 - $t0" 6)"
        sha="$("${read[@]}" 2>>"$WORK/logs/new.log" | sha256sum | cut -d' ' -f1)"
        [[ "$sha" == "$want_sha" ]] || die "$t read back $kind with sha256 $sha, expected $want_sha"
        rm -rf -- "$repo" "$WORK/cache/new-$t"
    done
}

if [[ "$NEW" == 1 ]]; then
    NEW_BYTES=$((NEW_MB * 1000000))
    head -c "$NEW_BYTES" /dev/urandom >"$WORK/random.bin"
    # A first-day dump of about NEW_MB MB (dumpgen documents are about 700 bytes).
    "$DUMPGEN" --seed "$SEED" --docs $((NEW_MB * 1000000 / 707)) --day 0 --churn "$CHURN" \
        --collections "$COLLECTIONS" -o "$WORK/firstday.bin" || die "dumpgen failed for the first-day dump"
    FIRSTDAY_BYTES="$(stat -c %s "$WORK/firstday.bin")"
    sync
    bench_new random "$WORK/random.bin"
    bench_new firstday "$WORK/firstday.bin"
    echo
    echo "## New data (every chunk new)"
    echo
    echo "$(mb "$NEW_BYTES") MB of incompressible bytes (/dev/urandom) and a first-day dump of $(mb "$FIRSTDAY_BYTES") MB"
    echo "(dumpgen day 0: nothing to deduplicate against), each stored once by each tool from a file into a"
    echo "fresh repository, then read back to /dev/null (timed) and checked with sha256sum (untimed)."
    echo
    echo "| data | tool | store s | MB/s | stored MiB | read s | read MB/s |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    for kind in random firstday; do
        bytes="$NEW_BYTES"
        [[ "$kind" == firstday ]] && bytes="$FIRSTDAY_BYTES"
        for t in $TOOLS; do
            echo "| $kind | $t | $(calc "${NEW_STORE_S[$kind-$t]}" 2) | $(rate "$bytes" "${NEW_STORE_S[$kind-$t]}") |" \
                "$(mib "${NEW_STORED_B[$kind-$t]}") | $(calc "${NEW_READ_S[$kind-$t]}" 2) | $(rate "$bytes" "${NEW_READ_S[$kind-$t]}") |"
        done
    done
    if want vault; then
        echo
        for kind in random firstday; do
            for other in restic borg rustic; do
                want "$other" || continue
                echo "- $kind: vault put / $other store throughput $(calc "${NEW_STORE_S[$kind-$other]} / ${NEW_STORE_S[$kind-vault]}" 3)," \
                    "vault cat / $other read $(calc "${NEW_READ_S[$kind-$other]} / ${NEW_READ_S[$kind-vault]}" 3)"
            done
        done
    fi
fi

# --- the machine's limit and the goals ------------------------------------------------------

if [[ "$LIMIT" == 1 ]] && want vault; then
    echo "measuring the machine's limit (tools/limits)" >&2
    "$LIMITS" "$LAST" --max-mib 256 >"$WORK/logs/limit-week.log" || die "limits failed"
    LIMIT_READ="$(awk '/^read_limit_mb_s/ { print $2 }' "$WORK/logs/limit-week.log")"
    LIMIT_WRITE="$(awk '/^write_limit_mb_s/ { print $2 }' "$WORK/logs/limit-week.log")"
    if [[ "$NEW" == 1 ]]; then
        "$LIMITS" "$WORK/random.bin" --max-mib 256 >"$WORK/logs/limit-random.log" || die "limits failed"
        LIMIT_READ_RANDOM="$(awk '/^read_limit_mb_s/ { print $2 }' "$WORK/logs/limit-random.log")"
        LIMIT_WRITE_RANDOM="$(awk '/^write_limit_mb_s/ { print $2 }' "$WORK/logs/limit-random.log")"
    fi
    echo
    echo "## Against the machine's limit"
    echo
    echo "\`limits\` (tools/limits) does the vault's per-byte work on the data in memory, on all cores, with no I/O:"
    echo "read = AES-256-GCM-SIV open + zstd decompression + keyed BLAKE3 of every chunk of every frame;"
    echo "write = seeded FastCDC + keyed BLAKE3 + framing + zstd + sealing, every chunk new. Newest day (first 256 MiB):"
    echo "$(grep -E '^(input|one core)' "$WORK/logs/limit-week.log" | tr '\n' ';' | sed 's/;$//; s/;/; /g')."
    echo
    echo "| path | MB/s | limit MB/s | share of the limit |"
    echo "|---|---:|---:|---:|"
    echo "| vaultctl cat, newest day of the week | $(rate "$LAST_BYTES" "${READ_S[vault]}") | $LIMIT_READ | $(calc "100 * $LAST_BYTES / 1000000 / ${READ_S[vault]} / $LIMIT_READ" 0) % |"
    if [[ -n "${READ_S[vault-mount]:-}" ]]; then
        echo "| read through the mount, newest day | $(rate "$LAST_BYTES" "${READ_S[vault-mount]}") | $LIMIT_READ | $(calc "100 * $LAST_BYTES / 1000000 / ${READ_S[vault-mount]} / $LIMIT_READ" 0) % |"
    fi
    if [[ "$NEW" == 1 ]]; then
        echo "| vaultctl put, incompressible (all new) | $(rate "$NEW_BYTES" "${NEW_STORE_S[random-vault]}") | $LIMIT_WRITE_RANDOM | $(calc "100 * $NEW_BYTES / 1000000 / ${NEW_STORE_S[random-vault]} / $LIMIT_WRITE_RANDOM" 0) % |"
        echo "| vaultctl cat, incompressible | $(rate "$NEW_BYTES" "${NEW_READ_S[random-vault]}") | $LIMIT_READ_RANDOM | $(calc "100 * $NEW_BYTES / 1000000 / ${NEW_READ_S[random-vault]} / $LIMIT_READ_RANDOM" 0) % |"
        echo "| vaultctl put, first-day dump (all new) | $(rate "$FIRSTDAY_BYTES" "${NEW_STORE_S[firstday-vault]}") | $LIMIT_WRITE | $(calc "100 * $FIRSTDAY_BYTES / 1000000 / ${NEW_STORE_S[firstday-vault]} / $LIMIT_WRITE" 0) % |"
    fi

    # goal_row LABEL VALUE GOAL: a row of the goals table (VALUE >= GOAL is met).
    goal_row() {
        local met
        met="$(awk "BEGIN { print ($2 >= $3) ? \"met\" : \"not met\" }")"
        echo "| $1 | $(calc "$2" 2) | ≥ $3 | $met |"
    }
    echo
    echo "## Goals"
    echo
    echo "| ratio (throughput, vault / peer) | measured | goal | |"
    echo "|---|---:|---:|---|"
    for other in restic borg rustic; do
        want "$other" || continue
        g=2
        [[ "$other" == restic ]] && g=5
        goal_row "vaultctl cat / $other" "${READ_S[$other]} / ${READ_S[vault]}" "$g"
        [[ -n "${READ_S[vault-mount]:-}" ]] && goal_row "mount read / $other" "${READ_S[$other]} / ${READ_S[vault-mount]}" "$g"
    done
    if want restic; then
        goal_row "vaultctl put / restic, week" "${STORE_S[restic]} / ${STORE_S[vault]}" 3
        [[ -n "${STORE_S[vault-mount]:-}" ]] && goal_row "mount write / restic, week" "${STORE_S[restic]} / ${STORE_S[vault-mount]}" 3
        if [[ "$NEW" == 1 ]]; then
            goal_row "vaultctl put / restic, incompressible" "${NEW_STORE_S[random-restic]} / ${NEW_STORE_S[random-vault]}" 1.5
            goal_row "vaultctl put / restic, first-day dump" "${NEW_STORE_S[firstday-restic]} / ${NEW_STORE_S[firstday-vault]}" 1.5
        fi
        echo "| stored week, vault / restic | $(calc "${STORED_B[vault]} / ${STORED_B[restic]}" 3) | ≤ 0.378 | $(awk "BEGIN { print (${STORED_B[vault]} / ${STORED_B[restic]} <= 0.378) ? \"met\" : \"not met\" }") |"
    fi
    goal_row "vaultctl cat / machine limit" "$LAST_BYTES / 1000000 / ${READ_S[vault]} / $LIMIT_READ" 0.7
    [[ -n "${READ_S[vault-mount]:-}" ]] && goal_row "mount read / machine limit" "$LAST_BYTES / 1000000 / ${READ_S[vault-mount]} / $LIMIT_READ" 0.7
    if [[ "$NEW" == 1 ]]; then
        goal_row "vaultctl put incompressible / machine limit" "$NEW_BYTES / 1000000 / ${NEW_STORE_S[random-vault]} / $LIMIT_WRITE_RANDOM" 0.7
    fi
fi

# --- sync -------------------------------------------------------------------------------

# timed_cmd LABEL CMD...: runs CMD (output to logs/LABEL.log) and prints its wall time.
timed_cmd() {
    local label="$1" t0 t1
    shift
    t0="$(now)"
    logged "$label" "$@"
    t1="$(now)"
    calc "$t1 - $t0" 6
}

start_moto() {
    local i
    MOTO_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$MOTO" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/logs/moto.log" 2>&1 &
    MOTO_PID=$!
    # Ready once it answers a real request (ListBuckets), not when its port opens.
    for ((i = 0; i < 600; i++)); do
        curl -sf "http://127.0.0.1:$MOTO_PORT/" 2>/dev/null | grep -q ListAllMyBucketsResult && break
        sleep 0.1
    done
    curl -sf -o /dev/null --retry 5 --retry-connrefused -X PUT "http://127.0.0.1:$MOTO_PORT/bench" ||
        die "moto did not start (see $WORK/logs/moto.log)"
    # The S3 settings for vault and restic; AWS_CA_BUNDLE, when the caller sets it, stays set.
    export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
    export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
    # rclone's S3 remote on the same server (rclone runs without AWS_CA_BUNDLE: 1.60 refuses it).
    export RCLONE_CONFIG_BENCHS3_TYPE=s3 RCLONE_CONFIG_BENCHS3_PROVIDER=Other RCLONE_CONFIG_BENCHS3_REGION=us-east-1
    export RCLONE_CONFIG_BENCHS3_ACCESS_KEY_ID=bench RCLONE_CONFIG_BENCHS3_SECRET_ACCESS_KEY=bench
    export RCLONE_CONFIG_BENCHS3_ENDPOINT="$AWS_ENDPOINT_URL"
}

declare -A SYNC_S
bench_sync() {
    local repo="$WORK/repo-vault" c
    export VAULT_CACHE_DIR="$WORK/cache/vault"
    SYNC_BYTES="$(stored_bytes "$repo")"
    start_moto
    logged sync "$VAULTCTL" --repo "$repo" remote add file "file://$WORK/sync-file"
    logged sync "$VAULTCTL" --repo "$repo" remote add s3 "s3://bench/vault"
    SYNC_S[vault-file]="$(timed_cmd sync "$VAULTCTL" --repo "$repo" sync file)"
    SYNC_S[vault-s3]="$(timed_cmd sync "$VAULTCTL" --repo "$repo" sync s3)"
    SYNC_S[rclone-file]="$(timed_cmd sync env -u AWS_CA_BUNDLE rclone sync --transfers 8 "$repo" "$WORK/rclone-file")"
    SYNC_S[rclone-s3]="$(timed_cmd sync env -u AWS_CA_BUNDLE rclone sync --transfers 8 "$repo" benchs3:bench/rclone)"
    if want restic; then
        export RESTIC_FROM_PASSWORD="$RESTIC_PASSWORD"
        RESTIC_BYTES="$(stored_bytes "$WORK/repo-restic")"
        for c in file s3; do
            local dst="$WORK/restic-copy"
            [[ "$c" == s3 ]] && dst="s3:$AWS_ENDPOINT_URL/bench/restic"
            logged sync restic -r "$dst" init --from-repo "$WORK/repo-restic" --copy-chunker-params
            SYNC_S[restic-$c]="$(timed_cmd sync restic -r "$dst" copy --from-repo "$WORK/repo-restic")"
        done
    fi

    # No-op sync of a vault of about SYNC_CHUNKS chunks (random data), to both remotes.
    local big="$WORK/repo-sync-noop"
    export VAULT_CACHE_DIR="$WORK/cache/sync-noop"
    logged sync "$VAULTCTL" --repo "$big" init --chunk-avg 4KiB
    # Random data cut with a 4 KiB average yields chunks of about 5,000 bytes.
    head -c $((SYNC_CHUNKS * 5120)) /dev/urandom >"$WORK/noop.bin"
    logged sync "$VAULTCTL" --repo "$big" put random.bin "$WORK/noop.bin"
    rm -f -- "$WORK/noop.bin"
    NOOP_CHUNKS="$("$VAULTCTL" --repo "$big" stats | awk '/^chunks:/ { print $2 }')"
    logged sync "$VAULTCTL" --repo "$big" remote add file "file://$WORK/sync-noop-file"
    logged sync "$VAULTCTL" --repo "$big" remote add s3 "s3://bench/noop"
    for c in file s3; do
        logged sync "$VAULTCTL" --repo "$big" sync "$c"
        SYNC_S[noop-$c]="$(timed_cmd sync "$VAULTCTL" --repo "$big" sync "$c")"
        tail -n 1 "$WORK/logs/sync.log" | grep -q "uploaded 0 objects" || die "the second sync to $c was not a no-op"
    done
}

# descendants PID: every process below PID.
descendants() {
    local c
    for c in $(pgrep -P "$1" || true); do
        echo "$c"
        descendants "$c"
    done
}

# sampled LABEL CMD...: runs CMD (output to logs/LABEL.log) and sets S_SECONDS (wall time),
# S_RSS_KIB (its peak RSS, /usr/bin/time) and S_CHILD_KIB (the largest VmHWM of any rclone
# process below it, sampled every 0.1 s; 0 if none).
sampled() {
    local label="$1" rss="$WORK/logs/rss-sampled" t0 t1 pid p kib
    shift
    S_CHILD_KIB=0
    t0="$(now)"
    /usr/bin/time -f %M -o "$rss" "$@" >>"$WORK/logs/$label.log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        for p in $(descendants "$pid"); do
            [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == rclone ]] || continue
            kib="$(awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null)" || true
            [[ "$kib" =~ ^[0-9]+$ ]] && ((kib > S_CHILD_KIB)) && S_CHILD_KIB="$kib"
        done
        sleep 0.1
    done
    wait "$pid" || {
        tail -n 20 "$WORK/logs/$label.log" >&2
        die "command failed: $*"
    }
    t1="$(now)"
    S_SECONDS="$(calc "$t1 - $t0" 6)"
    S_RSS_KIB="$(tail -n 1 "$rss")"
}

declare -A RC_S RC_RSS RC_CHILD
# A vault of random data (nothing to deduplicate or compress) in default-size packs, synced to
# rclone remotes of both kinds; `rclone copy` of its directory to the same remotes.
bench_sync_rclone() {
    local repo="$WORK/repo-sync-rclone" c url
    export VAULT_CACHE_DIR="$WORK/cache/sync-rclone"
    export RCLONE_CONFIG_BENCHLOCAL_TYPE=local
    logged sync-rclone "$VAULTCTL" --repo "$repo" init
    head -c $((SYNC_RCLONE_MIB * 1048576)) /dev/urandom >"$WORK/rclone-random.bin"
    logged sync-rclone "$VAULTCTL" --repo "$repo" put random.bin "$WORK/rclone-random.bin"
    rm -f -- "$WORK/rclone-random.bin"
    RC_BYTES="$(stored_bytes "$repo")"
    RC_PACKS="$(find "$repo/packs" -type f | wc -l)"
    for c in local s3; do
        if [[ "$c" == local ]]; then url="rclone:benchlocal:$WORK/sync-rclone-local"; else url="rclone:benchs3:bench/vault-rclone"; fi
        logged sync-rclone "$VAULTCTL" --repo "$repo" remote add "rc-$c" "$url"
        sampled sync-rclone "$VAULTCTL" --repo "$repo" sync "rc-$c"
        RC_S[vault-$c]="$S_SECONDS" RC_RSS[vault-$c]="$S_RSS_KIB" RC_CHILD[vault-$c]="$S_CHILD_KIB"
        # Read back from the remote alone, with a fresh cache: every pack through rclone.
        sampled sync-rclone env VAULT_CACHE_DIR="$WORK/cache/sync-rclone-read-$c" "$VAULTCTL" --repo "$url" check --read-data
        grep -q "no errors" <(tail -n 1 "$WORK/logs/sync-rclone.log") || die "check --read-data of $url failed"
        RC_S[read-$c]="$S_SECONDS" RC_RSS[read-$c]="$S_RSS_KIB" RC_CHILD[read-$c]="$S_CHILD_KIB"
    done
    sampled sync-rclone env -u AWS_CA_BUNDLE rclone copy --transfers 8 "$repo" "benchlocal:$WORK/rclone-copy-local"
    RC_S[copy-local]="$S_SECONDS" RC_RSS[copy-local]="$S_RSS_KIB"
    sampled sync-rclone env -u AWS_CA_BUNDLE rclone copy --transfers 8 "$repo" benchs3:bench/rclone-copy
    RC_S[copy-s3]="$S_SECONDS" RC_RSS[copy-s3]="$S_RSS_KIB"
}

if [[ "$SYNC" == 1 ]]; then
    echo "running the sync section" >&2
    bench_sync
    echo
    echo "## Sync"
    echo
    echo "The week's vault ($(mib "$SYNC_BYTES") MiB) copied by \`vaultctl sync\` (default --jobs 8) to a file"
    echo "remote and to a local S3 server (moto on loopback), and by \`rclone sync --transfers 8\` of the"
    echo "vault directory to the same places.$(want restic && echo " \`restic copy\` of the week's restic repository ($(mib "$RESTIC_BYTES") MiB) to a new repository with the same chunker parameters (restic decrypts and re-encrypts every blob).")"
    echo
    echo "| copy | to disk s | MB/s | to S3 (moto) s | MB/s |"
    echo "|---|---:|---:|---:|---:|"
    echo "| vault sync | $(calc "${SYNC_S[vault-file]}" 2) | $(rate "$SYNC_BYTES" "${SYNC_S[vault-file]}") |" \
        "$(calc "${SYNC_S[vault-s3]}" 2) | $(rate "$SYNC_BYTES" "${SYNC_S[vault-s3]}") |"
    echo "| rclone sync (vault dir) | $(calc "${SYNC_S[rclone-file]}" 2) | $(rate "$SYNC_BYTES" "${SYNC_S[rclone-file]}") |" \
        "$(calc "${SYNC_S[rclone-s3]}" 2) | $(rate "$SYNC_BYTES" "${SYNC_S[rclone-s3]}") |"
    if want restic; then
        echo "| restic copy | $(calc "${SYNC_S[restic-file]}" 2) | $(rate "$RESTIC_BYTES" "${SYNC_S[restic-file]}") |" \
            "$(calc "${SYNC_S[restic-s3]}" 2) | $(rate "$RESTIC_BYTES" "${SYNC_S[restic-s3]}") |"
    fi
    echo
    echo "- vault sync MB/s / rclone sync MB/s: disk $(calc "${SYNC_S[rclone-file]} / ${SYNC_S[vault-file]}" 3), S3 $(calc "${SYNC_S[rclone-s3]} / ${SYNC_S[vault-s3]}" 3)"
    if want restic; then
        echo "- vault sync MB/s / restic copy MB/s: disk $(calc "($SYNC_BYTES / ${SYNC_S[vault-file]}) / ($RESTIC_BYTES / ${SYNC_S[restic-file]})" 3)," \
            "S3 $(calc "($SYNC_BYTES / ${SYNC_S[vault-s3]}) / ($RESTIC_BYTES / ${SYNC_S[restic-s3]})" 3)"
    fi
    echo "- no-op sync of a vault of $NOOP_CHUNKS chunks: file remote $(calc "${SYNC_S[noop-file]}" 2) s, S3 $(calc "${SYNC_S[noop-s3]}" 2) s"
    if ((SYNC_RCLONE_MIB > 0)); then
        echo "running the rclone sync section" >&2
        bench_sync_rclone
        echo
        echo "### rclone remotes"
        echo
        echo "A vault of $SYNC_RCLONE_MIB MiB of random data ($(mib "$RC_BYTES") MiB stored in $RC_PACKS packs of the default"
        echo "16 MiB target) copied by \`vaultctl sync\` (--jobs 8, one \`rclone rcd\`) to an rclone local-type remote and"
        echo "an rclone S3-type remote (moto on loopback), next to \`rclone copy --transfers 8\` of the vault directory to the"
        echo "same remotes; then read back from each remote alone with \`vaultctl --repo rclone:... check --read-data\`"
        echo "(fresh cache). Peak RSS: /usr/bin/time for the command, VmHWM sampled every 0.1 s for its rclone daemon."
        echo
        echo "| | local-type s | MB/s | peak RSS MiB (rclone) | S3-type (moto) s | MB/s | peak RSS MiB (rclone) |"
        echo "|---|---:|---:|---:|---:|---:|---:|"
        local_row() { # LABEL KEY-PREFIX
            echo "| $1 | $(calc "${RC_S[$2-local]}" 2) | $(rate "$RC_BYTES" "${RC_S[$2-local]}") |" \
                "$(calc "${RC_RSS[$2-local]} / 1024" 0) ($(calc "${RC_CHILD[$2-local]:-0} / 1024" 0)) |" \
                "$(calc "${RC_S[$2-s3]}" 2) | $(rate "$RC_BYTES" "${RC_S[$2-s3]}") |" \
                "$(calc "${RC_RSS[$2-s3]} / 1024" 0) ($(calc "${RC_CHILD[$2-s3]:-0} / 1024" 0)) |"
        }
        local_row "vault sync" vault
        local_row "rclone copy (vault dir)" copy
        local_row "check --read-data from the remote" read
        echo
        echo "- vault sync time / rclone copy time: local-type $(calc "${RC_S[vault-local]} / ${RC_S[copy-local]}" 2)," \
            "S3-type $(calc "${RC_S[vault-s3]} / ${RC_S[copy-s3]}" 2) (goal: at most 1.5)"
    fi
fi
