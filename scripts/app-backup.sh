#!/usr/bin/env bash
# Application backup job: fetch the zip a web application's backup API hands out, stream it
# into the vault (never a copy on disk), and drill the stored zip. Configured by one env file
# (default /etc/vault/app-backup.env, see scripts/app-backup.env.example); docs/OPERATIONS.md
# has the runbook, restoring included.
#
#   scripts/app-backup.sh [ENV_FILE]
#
# The API: POST $APP_URL/api/v1/utils/backup/ with the JSON body {"key": "<BACKUP_KEY>"} and the
# session cookie of a system user; the answer is a zip (backup.jsonl and the upload
# directories). No "aes_key" is sent: the vault encrypts the zip itself, and an application-
# encrypted zip could neither be deduplicated from one night to the next nor checked by a drill.
#
# Secrets: the backup key and the session cookie are read from files (APP_BACKUP_KEY_FILE,
# APP_SESSION_FILE). They reach curl as a request body and a config that it reads from pipes
# (bash process substitution, printf being a builtin), never as arguments: arguments are in
# every user's process list.
#
# The whole job runs under `vaultctl run`, so the vault's log records it and `vaultctl status`
# alerts (exit 7) when it failed. An HTTP error (403 for a wrong key, 302 to a login page ...),
# a download cut short (curl's own check, and the bytes received against Content-Length) or an
# empty answer stops the vault from storing anything: `vaultctl put` reads the zip from a FIFO
# that is closed only once the download is known to be complete, and is killed otherwise, so
# the previous backups stay as they were. Then `vaultctl drill --path` checks the stored zip
# (every member's CRC-32, the JSON lines); if that fails, the job fails and the zip is marked
# failed. Exit status: 0 done, 1 the download failed, 4 the drill of the stored zip failed.
set -euo pipefail

say() { printf '%s app-backup: %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*" >&2; }
die() { say "$*"; exit 1; }

job=no
if [ "${1:-}" = --job ]; then
  job=yes
  shift
fi
ENV_FILE="${1:-/etc/vault/app-backup.env}"
[ -r "$ENV_FILE" ] || die "cannot read $ENV_FILE"
set -a
# shellcheck disable=SC1090
. "$ENV_FILE"
set +a
: "${VAULT_REPO:?VAULT_REPO must be set in $ENV_FILE}"
: "${APP_URL:?APP_URL must be set in $ENV_FILE}"
: "${APP_BACKUP_KEY_FILE:?APP_BACKUP_KEY_FILE must be set in $ENV_FILE}"
: "${APP_SESSION_FILE:?APP_SESSION_FILE must be set in $ENV_FILE}"
VAULTCTL="${VAULTCTL:-vaultctl}"
CURL="${CURL:-curl}"
APP_BACKUP_NAME="${APP_BACKUP_NAME:-app-backup.zip}"
APP_BACKUP_TIMEOUT="${APP_BACKUP_TIMEOUT:-3600}"

if [ "$job" = no ]; then
  # The job itself runs under `vaultctl run`, which records it (and marks what it stored
  # failed if it fails).
  exec "$VAULTCTL" run -- "$(readlink -f "$0")" --job "$ENV_FILE"
fi

# ---- the job ----

# Secrets, read by bash itself (no process sees them in its arguments).
[ -r "$APP_BACKUP_KEY_FILE" ] || die "cannot read the backup key file $APP_BACKUP_KEY_FILE"
[ -r "$APP_SESSION_FILE" ] || die "cannot read the session cookie file $APP_SESSION_FILE"
key=$(<"$APP_BACKUP_KEY_FILE")
cookie=$(<"$APP_SESSION_FILE")
[ "${#key}" -ge 20 ] || die "the backup key in $APP_BACKUP_KEY_FILE is shorter than 20 characters"
case "$key$cookie" in
  *[[:cntrl:]]*) die "the backup key or the session cookie holds a control character (one line each)" ;;
esac
[ -n "$cookie" ] || die "the session cookie file $APP_SESSION_FILE is empty"
# Quoting for a JSON string and for a curl config string: backslash and double quote.
quote() {
  local s=${1//\\/\\\\}
  printf '%s' "${s//\"/\\\"}"
}
body() { printf '{"key": "%s"}' "$(quote "$key")"; }
curl_config() {
  printf 'cookie = "%s"\n' "$(quote "$cookie")"
  # Django checks CSRF on session-authenticated POSTs: send the token the cookie carries.
  if [[ $cookie =~ (^|;[[:space:]]*)csrftoken=([^;[:space:]]*) ]]; then
    printf 'header = "X-CSRFToken: %s"\n' "$(quote "${BASH_REMATCH[2]}")"
    printf 'referer = "%s/"\n' "$(quote "${APP_URL%/}")"
  fi
}

url="${APP_URL%/}/api/v1/utils/backup/"
tmp=$(mktemp -d)
put_pid=""
cleanup() {
  [ -n "$put_pid" ] && kill "$put_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# `vaultctl put` reads from a FIFO. It sees the end of its input only when both curl and this
# script have closed the FIFO; this script closes it only after checking the download.
mkfifo -m 600 "$tmp/zip"
"$VAULTCTL" put "$APP_BACKUP_NAME" <"$tmp/zip" >"$tmp/put.out" 2>"$tmp/put.err" &
put_pid=$!
exec 3>"$tmp/zip"

say "fetching $url into the vault as $APP_BACKUP_NAME"
set +e
stats=$("$CURL" --silent --show-error --fail --connect-timeout 30 --max-time "$APP_BACKUP_TIMEOUT" \
  ${APP_CURL_CONFIG:+--config "$APP_CURL_CONFIG"} \
  --config <(curl_config) \
  --header "Content-Type: application/json" \
  --data-binary @<(body) \
  --output /dev/fd/3 \
  --write-out '%{http_code} %{size_download} %header{content-length}' \
  "$url")
rc=$?
set -e
read -r code got length <<<"$stats" || true
fail=""
if [ "$rc" -ne 0 ]; then
  fail="curl failed (exit $rc${code:+, HTTP $code})"
elif [ "$code" != 200 ]; then
  fail="HTTP $code, not 200"
elif [ -n "${length:-}" ] && [ "$got" != "$length" ]; then
  fail="short download: $got of $length bytes"
elif [ "${got:-0}" = 0 ]; then
  fail="the answer is empty"
fi
if [ -n "$fail" ]; then
  kill "$put_pid" 2>/dev/null || true
  exec 3>&-
  wait "$put_pid" 2>/dev/null || true
  put_pid=""
  if [ -s "$tmp/put.err" ] && ! grep -q . "$tmp/put.out"; then
    sed 's/^/  vaultctl put: /' "$tmp/put.err" >&2
  fi
  die "FAILED: $fail; nothing was stored (the earlier backups are untouched)"
fi
exec 3>&-
if ! wait "$put_pid"; then
  put_pid=""
  cat "$tmp/put.err" >&2
  die "FAILED: storing the download in the vault"
fi
put_pid=""
stored=$(cat "$tmp/put.out")
say "$stored (downloaded $got bytes)"
# "stored PERIOD/NAME: ..."
period=${stored#stored }
period=${period%%/*}

# A drill of the stored zip: every member's CRC-32 and sizes, the JSON lines counted per model.
set +e
"$VAULTCTL" drill --snapshot "$period" --path "$APP_BACKUP_NAME" >"$tmp/drill.txt"
drc=$?
set -e
cat "$tmp/drill.txt"
if [ "$drc" -ne 0 ] || ! grep -q '^  result: *OK$' "$tmp/drill.txt"; then
  say "FAILED: the drill of $period/$APP_BACKUP_NAME did not verify it; it is marked failed"
  exit 4
fi
say "done"
