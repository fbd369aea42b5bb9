#!/usr/bin/env bash
# The main job end to end on an embedded default: a local vault directory, a generated
# database dump series stored one day at a time (dated with faketime, the vault's own clock
# names the periods) with `vaultctl put` and then through the vaultfs mount, then snapshots,
# a restore check, an integrity check, the stats, retention (prune), an offsite copy in a local
# directory, a restore drill from that copy alone (into a scratch MongoDB-compatible database
# when the test venv has one), and the status.
#
#   bash scripts/demo.sh            # work dir: ./demo (kept, so you can look around)
#   DEMO_DIR=/tmp/x DEMO_DOCS=200000 bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

DEMO_DIR="${DEMO_DIR:-$PWD/demo}"
DEMO_DOCS="${DEMO_DOCS:-50000}"
DAYS="${DEMO_DAYS:-3}"

cargo build --release -q -p vault -p vaultfs -p dumpgen
BIN="$PWD/target/release"
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"

export VAULT_REPO="$DEMO_DIR/vault"
export VAULT_CACHE_DIR="$DEMO_DIR/cache"
# A demo secret; real deployments use VAULT_PASSPHRASE_FILE or VAULT_KEY_FILE.
export VAULT_PASSPHRASE="demo passphrase, change me"
unset VAULT_KEY VAULT_KEY_FILE VAULT_PASSPHRASE_FILE

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "vaultctl init"
faketime "2026-11-01 08:00:00" "$BIN/vaultctl" init --time-zone UTC

for d in $(seq 1 "$DAYS"); do
  day=$(printf '2026-11-%02d' "$d")
  "$BIN/dumpgen" --seed 42 --docs "$DEMO_DOCS" --day $((d - 1)) -o "$DEMO_DIR/dump-$d.archive"
  step "$day: dump | vaultctl put today"
  faketime "$day 02:00:00" "$BIN/vaultctl" put today < "$DEMO_DIR/dump-$d.archive"
done

next=$((DAYS + 1))
nday=$(printf '2026-11-%02d' "$next")
if [ -e /dev/fuse ] && command -v fusermount3 >/dev/null; then
  step "$nday: vaultfs mount, then mongodump-style write into /mnt/.../today"
  MNT="$DEMO_DIR/mnt"
  mkdir -p "$MNT"
  "$BIN/dumpgen" --seed 42 --docs "$DEMO_DOCS" --day $((next - 1)) -o "$DEMO_DIR/dump-$next.archive"
  faketime -f "@$nday 02:00:00" "$BIN/vaultfs" mount "$VAULT_REPO" "$MNT" --log "$DEMO_DIR/vaultfs.log"
  trap 'fusermount3 -uz "$MNT" 2>/dev/null || true' EXIT
  dd if="$DEMO_DIR/dump-$next.archive" of="$MNT/today" bs=1M status=none
  ls -l "$MNT" "$MNT/$nday"
  fusermount3 -u "$MNT"
  sleep 1
  DAYS=$next
else
  echo "(no /dev/fuse here: skipping the mount part of the demo)"
fi

step "vaultctl seal (the newest day; older days were sealed by the first write of the next day)"
faketime "$(printf '2026-11-%02d' "$DAYS") 23:00:00" "$BIN/vaultctl" seal

step "vaultctl snapshots"
"$BIN/vaultctl" snapshots

step "vaultctl ls latest"
"$BIN/vaultctl" ls latest

step "vaultctl cat latest/today | sha256sum   (must equal the dump)"
want=$(sha256sum < "$DEMO_DIR/dump-$DAYS.archive" | cut -d' ' -f1)
got=$("$BIN/vaultctl" cat latest/today | sha256sum | cut -d' ' -f1)
echo "dump:  $want"
echo "vault: $got"
[ "$want" = "$got" ] || { echo "MISMATCH" >&2; exit 1; }

step "vaultctl check --read-data"
"$BIN/vaultctl" check --read-data

step "vaultctl stats"
"$BIN/vaultctl" stats

last=$(printf '2026-11-%02d' "$DAYS")
step "retention: vaultctl policy set --keep-daily 2, then prune (dry run first)"
faketime "$last 23:30:00" "$BIN/vaultctl" policy set --keep-daily 2
faketime "$last 23:30:00" "$BIN/vaultctl" prune --dry-run
faketime "$last 23:30:00" "$BIN/vaultctl" prune

step "offsite: vaultctl remote add offsite file://$DEMO_DIR/offsite; sync; sync --verify"
"$BIN/vaultctl" remote add offsite "file://$DEMO_DIR/offsite"
"$BIN/vaultctl" sync offsite
"$BIN/vaultctl" sync offsite --verify

MONGO_ARGS=()
SECANTUS="$PWD/.venv/bin/secantusd-py"
if [ -x "$SECANTUS" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$SECANTUS" --host 127.0.0.1 --port "$port" --storage-path :memory: --standalone > "$DEMO_DIR/secantus.log" 2>&1 &
  SECANTUS_PID=$!
  trap 'kill $SECANTUS_PID 2>/dev/null || true; fusermount3 -uz "${MNT:-/nonexistent}" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
  done
  MONGO_ARGS=(--mongo-uri "mongodb://127.0.0.1:$port" --restore-db demo_restore_test)
fi
step "restore drill from the offsite copy alone${MONGO_ARGS:+, restored into a scratch MongoDB-compatible database}"
VAULT_CACHE_DIR="$DEMO_DIR/cache-drill" "$BIN/vaultctl" --repo offsite drill "${MONGO_ARGS[@]}"

step "vaultctl status (the dates are simulated, so the age check is relaxed here)"
"$BIN/vaultctl" status --max-age-hours 100000

step "the vault directory holds only opaque names"
find "$VAULT_REPO" -maxdepth 2 | sed "s|$DEMO_DIR/||" | head -12
echo
echo "demo done: vault in $VAULT_REPO"
