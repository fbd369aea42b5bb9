#!/usr/bin/env bash
# Installs what building, testing, the demo and the benchmarks need, from Debian's packages.
# Idempotent: does nothing when everything is present. Needs root (or sudo) for apt-get.
set -euo pipefail

need=()
command -v faketime >/dev/null || need+=(faketime)
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v mount >/dev/null || need+=(mount)
command -v runuser >/dev/null || need+=(util-linux)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# psql and pg_restore for PostgreSQL restore drills (also pulled in by postgresql).
command -v pg_restore >/dev/null || need+=(postgresql-client)
# The application backup job (scripts/app-backup.sh) downloads with curl.
command -v curl >/dev/null || need+=(curl)
command -v tar >/dev/null || need+=(tar)
# Compressed inputs stored expanded (tests/rebuild.rs): real GNU gzip, Info-ZIP zip, and Go
# to build the compressor that is mongodump's --gzip code path.
command -v gzip >/dev/null || need+=(gzip)
command -v zip >/dev/null || need+=(zip)
command -v go >/dev/null || need+=(golang-go)
command -v diff >/dev/null || need+=(diffutils)
command -v python3 >/dev/null || need+=(python3)
command -v cc >/dev/null || need+=(gcc)
[ -x /usr/bin/time ] || need+=(time)
command -v rclone >/dev/null || need+=(rclone)
python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
# pjdfstest links libacl; its ACL tests use the acl tools.
[ -e /usr/include/sys/acl.h ] || need+=(libacl1-dev)
command -v setfacl >/dev/null || need+=(acl)
# `vaultctl report --format html` is rendered to a PNG by headless Chromium in its test.
command -v chromium >/dev/null || need+=(chromium)
# The generated man pages are rendered by groff in their test.
command -v groff >/dev/null || need+=(groff-base)
if [ "${VAULT_BENCH_DEPS:-0}" = 1 ]; then
  command -v restic >/dev/null || need+=(restic)
  command -v borg >/dev/null || need+=(borgbackup)
fi

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Test servers and checkers from PyPI, in a venv inside the checkout (.venv, ignored by git): an
# S3-compatible server for the s3:// remote tests, a MongoDB wire-compatible server for the
# restore drills, Prometheus' own text-format parser for `status --textfile`, a CommonMark
# parser and a markdown linter for `report --format md`. Pinned, so that a test run means the
# same thing tomorrow; the venv is brought up to date when this list changes.
VENV="$(cd "$(dirname "$0")/.." && pwd)/.venv"
PY_PKGS=("moto[server]==5.2.5" "SecantusDB==0.7.0b3" "prometheus-client==0.26.0" "markdown-it-py==4.3.0"
  "pymarkdownlnt==0.9.41")
if [ ! -x "$VENV/bin/pip" ] || [ "$(cat "$VENV/.packages" 2>/dev/null)" != "${PY_PKGS[*]}" ]; then
  echo "installing into $VENV: ${PY_PKGS[*]}"
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PKGS[@]}"
  echo "${PY_PKGS[*]}" >"$VENV/.packages"
fi

# POSIX conformance of the mount (vaultfs/tests/posix.rs): the Rust rewrite of pjdfstest and
# fsx, pinned, built once into ~/.cargo/bin and kept.
if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install a Rust toolchain (https://rustup.rs) and run this again" >&2
  exit 1
fi
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
for tool in pjdfstest@0.2.2 fsx@0.3.2; do
  name="${tool%@*}"
  version="${tool#*@}"
  if ! "$CARGO_BIN/$name" --version 2>/dev/null | grep -q "$version"; then
    echo "installing $tool with cargo install (once)"
    cargo install --locked --quiet "$tool"
  fi
done

# The mount tests need a usable FUSE device; say so plainly instead of failing obscurely.
if [ ! -e /dev/fuse ]; then
  echo "warning: /dev/fuse is missing: vaultfs cannot mount here and its tests will fail" >&2
fi

