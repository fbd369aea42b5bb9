#!/usr/bin/env bash
# The nightly backup job, configured by one env file (default /etc/vault/vault.env, see
# scripts/vault.env.example): mount the vault if needed, run the dump into the mount as a
# recorded job (`vaultctl run`), prune by the stored policy, sync offsite, run a restore drill
# on the drill day, print the status. Exits non-zero if any step fails, so that cron or systemd reports it.
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

if ! mountpoint -q "$VAULT_MOUNT"; then
  say "mounting $VAULT_REPO at $VAULT_MOUNT"
  mkdir -p "$VAULT_MOUNT"
  "$VAULTFS" mount "$VAULT_REPO" "$VAULT_MOUNT"
fi

# Through `vaultctl run`: the job (command, exit status, files written) goes into the vault's
# log, and if the dump fails, the files it wrote are marked failed (a drill of them fails,
# `vaultctl status` alerts).
say "dump: $DUMP_CMD"
rc=0
"$VAULTCTL" run -- bash -c "$DUMP_CMD" || rc=$?
if [ "$rc" -ne 0 ]; then
  say "the dump command failed (exit $rc); the files it wrote are marked failed"
  exit 2
fi

# Retention: when a policy is stored in the vault (`vaultctl policy set ...`), prune by it
# (VAULT_PRUNE=no skips it). Before the sync, so that the remote follows the same night.
if [ "${VAULT_PRUNE:-auto}" != no ] && "$VAULTCTL" policy show | grep -q '^policy: --'; then
  say "prune by the stored policy"
  "$VAULTCTL" prune
fi

if [ -n "${VAULT_REMOTE:-}" ]; then
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
  say "restore drill of the newest sealed snapshot${VAULT_DRILL_REPO:+ from $VAULT_DRILL_REPO}$restoring"
  "${drill[@]}"
fi

"$VAULTCTL" status --max-age-hours "$VAULT_MAX_AGE_HOURS"
say "done"
