#!/usr/bin/env bash
# The nightly backup job, configured by one env file (default /etc/vault/vault.env, see
# scripts/vault.env.example): mount the vault if needed, run the dump into the mount as a
# recorded job (`vaultctl run`), prune by the stored policy, sync offsite, run a restore drill
# on the drill day, print the status. Exits non-zero if any step fails, so that cron or systemd reports it.
# Monitoring: with VAULT_TEXTFILE set, writes the status there as a Prometheus node_exporter
# textfile after every run, failed or not; with VAULT_PING_URL set, pings a dead man's switch
# (healthchecks.io style) with curl: URL/start first, then URL on success or URL/fail with the
# exit code in the request body.
#
#   scripts/nightly.sh [ENV_FILE]
set -euo pipefail

ENV_FILE="${1:-/etc/vault/vault.env}"
[ -r "$ENV_FILE" ] || { echo "nightly: cannot read $ENV_FILE" >&2; exit 1; }
set -a
# shellcheck disable=SC1090
. "$ENV_FILE"
set +a

: "${VAULT_REPO:?VAULT_REPO must be set in $ENV_FILE}"
: "${VAULT_MOUNT:?VAULT_MOUNT must be set in $ENV_FILE}"
: "${DUMP_CMD:?DUMP_CMD must be set in $ENV_FILE}"
VAULTCTL="${VAULTCTL:-vaultctl}"
VAULTFS="${VAULTFS:-vaultfs}"
VAULT_DRILL_DAY="${VAULT_DRILL_DAY:-01}"
VAULT_MAX_AGE_HOURS="${VAULT_MAX_AGE_HOURS:-26}"

say() { printf '%s nightly: %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*"; }

# A failed ping is reported and never fails the job (the switch alerts on the missing ping).
ping() {
  [ -n "${VAULT_PING_URL:-}" ] || return 0
  local url="${VAULT_PING_URL%/}$1"
  curl -fsS -m 10 --retry 3 -o /dev/null --data-raw "$2" "$url" || say "warning: ping $url failed"
}

status_args=(status --max-age-hours "$VAULT_MAX_AGE_HOURS")
[ -n "${VAULT_TEXTFILE:-}" ] && status_args+=(--textfile "$VAULT_TEXTFILE")
textfile_written=0
failed_step=""
step="start"
finish() {
  local rc=$?
  trap - EXIT
  if [ "$textfile_written" = 0 ] && [ -n "${VAULT_TEXTFILE:-}" ]; then
    "$VAULTCTL" "${status_args[@]}" >/dev/null 2>&1 || true
  fi
  if [ "$rc" -eq 0 ]; then
    ping "" "nightly: ok"
  else
    # A step stopped by `set -e` names itself through $step.
    ping /fail "nightly: exit $rc (${failed_step:-$step})"
  fi
  exit "$rc"
}
trap finish EXIT
ping /start ""

step="mount"
if ! mountpoint -q "$VAULT_MOUNT"; then
  say "mounting $VAULT_REPO at $VAULT_MOUNT"
  mkdir -p "$VAULT_MOUNT"
  "$VAULTFS" mount "$VAULT_REPO" "$VAULT_MOUNT"
fi

# Through `vaultctl run`: the job (command, exit status, files written) goes into the vault's
# log, and if the dump fails, the files it wrote are marked failed (a drill of them fails,
# `vaultctl status` alerts).
step="dump"
say "dump: $DUMP_CMD"
rc=0
"$VAULTCTL" run -- bash -c "$DUMP_CMD" || rc=$?
if [ "$rc" -ne 0 ]; then
  say "the dump command failed (exit $rc); the files it wrote are marked failed"
  failed_step="dump: exit $rc"
  exit 2
fi

# Retention: when a policy is stored in the vault (`vaultctl policy set ...`), prune by it
# (VAULT_PRUNE=no skips it). Before the sync, so that the remote follows the same night.
if [ "${VAULT_PRUNE:-auto}" != no ] && "$VAULTCTL" policy show | grep -q '^policy: --'; then
  step="prune"
  say "prune by the stored policy"
  "$VAULTCTL" prune
fi

if [ -n "${VAULT_REMOTE:-}" ]; then
  step="sync to $VAULT_REMOTE"
  say "sync to $VAULT_REMOTE"
  "$VAULTCTL" sync "$VAULT_REMOTE"
fi

if [ "$(date +%d)" = "$VAULT_DRILL_DAY" ]; then
  drill=("$VAULTCTL")
  # VAULT_DRILL_REPO=offsite drills the remote's copy alone (a remote name, path or URL).
  [ -n "${VAULT_DRILL_REPO:-}" ] && drill+=(--repo "$VAULT_DRILL_REPO")
  drill+=(drill)
  [ -n "${VAULT_DRILL_MONGODB_URI:-}" ] && drill+=(--mongo-uri "$VAULT_DRILL_MONGODB_URI")
  # PostgreSQL: a URI without the password; psql and pg_restore find it in ~/.pgpass or PGPASSFILE.
  [ -n "${VAULT_DRILL_PG_URI:-}" ] && drill+=(--pg-uri "$VAULT_DRILL_PG_URI")
  restoring=""
  if [ -n "${VAULT_DRILL_MONGODB_URI:-}${VAULT_DRILL_PG_URI:-}" ]; then
    drill+=(--restore-db "${VAULT_DRILL_DB:-vault_drill_restore}")
    restoring=", restored into ${VAULT_DRILL_DB:-vault_drill_restore}"
  fi
  step="drill"
  say "restore drill of the newest sealed snapshot${VAULT_DRILL_REPO:+ from $VAULT_DRILL_REPO}$restoring"
  "${drill[@]}"
fi

rc=0
"$VAULTCTL" "${status_args[@]}" || rc=$?
textfile_written=1
if [ "$rc" -ne 0 ]; then
  failed_step="status: exit $rc"
  exit "$rc"
fi
say "done"
