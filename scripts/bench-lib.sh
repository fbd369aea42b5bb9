# Shared by the benchmarks that drive release binaries and a mount (sourced, not run).
# bench_setup NAME: builds vault and vaultfs unless BENCH_BUILD=0 (BUILD), sets BIN to the
# release binaries, W to the working directory (BENCH_DIR, else a new /var/tmp/vault-bench-NAME.*)
# and MNT to W/mnt, unmounts and removes W at exit unless BENCH_KEEP=1 (KEEP), and clears the
# caller's VAULT_* settings. Needs ROOT, BUILD, KEEP and a `die` function.
bench_setup() {
    if [ "$BUILD" = 1 ]; then
        (cd "$ROOT" && cargo build --release --locked -p vault -p vaultfs >&2)
    fi
    BIN="$ROOT/target/release"
    [ -x "$BIN/vaultctl" ] && [ -x "$BIN/vaultfs" ] || die "release binaries missing (run without BENCH_BUILD=0)"
    W="${BENCH_DIR:-$(mktemp -d "/var/tmp/vault-bench-$1.XXXXXX")}"
    MNT="$W/mnt"
    mkdir -p "$W" "$MNT"
    trap 'fusermount3 -uz "$MNT" 2>/dev/null || true; if [ "$KEEP" != 1 ]; then rm -rf "$W"; fi' EXIT
    local v
    for v in $(env | grep -o '^VAULT_[A-Z_]*' || true); do unset "$v"; done
}
