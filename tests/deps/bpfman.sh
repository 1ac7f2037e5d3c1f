#!/usr/bin/env bash
# bpfman-rpc (crate bpfman-api) and the bpfman CLI (crate bpfman), from crates.io.
source "$(dirname "$0")/lib.sh"

BPFMAN_VERSION=${BPFMAN_VERSION:-0.6.0}
ROOT=$BLIXT_CACHE/bpfman-$BPFMAN_VERSION
STAMP=$ROOT/.stamp
WANT="bpfman-api $BPFMAN_VERSION; bpfman $BPFMAN_VERSION"

if stamp_matches "$STAMP" "$WANT" && [ -x "$ROOT/bin/bpfman-rpc" ] && [ -x "$ROOT/bin/bpfman" ]; then
  log "bpfman $BPFMAN_VERSION: cached in $ROOT"
  exit 0
fi

command -v cargo >/dev/null || { log "bpfman: cargo not found (Rust toolchain needed)"; exit 1; }
# Debian keeps asm/ headers under the multiarch directory; libbpf-sys's build wants them.
export CPATH=/usr/include/$(gcc -print-multiarch)${CPATH:+:$CPATH}
export CARGO_HOME=$CARGO_HOME_BLIXT
# One target directory for both crates so the second reuses the first's dependencies.
export CARGO_TARGET_DIR=$BLIXT_CACHE/cargo-target
start=$(date +%s)
for crate in bpfman-api bpfman; do
  log "bpfman: cargo install $crate $BPFMAN_VERSION (cold build takes minutes)"
  cargo install --locked --quiet --root "$ROOT" "$crate" --version "$BPFMAN_VERSION"
done
echo "$WANT" > "$STAMP"
log "bpfman $BPFMAN_VERSION: built in $(( $(date +%s) - start ))s"
