#!/usr/bin/env bash
# The one gate, the same locally and in CI: dependencies, format, lints, every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

# Two cores: keep the build and the tests from oversubscribing them.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}"
export RUST_BACKTRACE=1
# A fresh checkout builds everything once: incremental caches would only take disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Tests must never see the caller's vault settings.
for v in $(env | grep -o '^VAULT_[A-Z_]*' || true); do unset "$v"; done

# faketime names its semaphore and shared memory after its pid; ones left by killed runs
# would make a later faketime with the same pid fail.
for f in /dev/shm/*faketime_*; do
    [ -e "$f" ] || continue
    kill -0 "${f##*_}" 2>/dev/null || rm -f "$f"
done

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
