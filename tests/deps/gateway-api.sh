#!/usr/bin/env bash
# Gateway API CRDs (standard and experimental channels) from the Go module
# sigs.k8s.io/gateway-api, which ships them under config/crd/.
source "$(dirname "$0")/lib.sh"

GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.6.1}
DEST=$BLIXT_CACHE/gateway-api-$GATEWAY_API_VERSION
if [ -f "$DEST/.stamp" ]; then
  log "gateway-api $GATEWAY_API_VERSION: cached in $DEST"
  exit 0
fi
command -v go >/dev/null || { log "gateway-api: go not found (Go toolchain needed)"; exit 1; }
dir=$(cd /tmp && go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | jq -r .Dir)
rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp"
cp -r "$dir/config/crd/standard" "$dir/config/crd/experimental" "$DEST.tmp/"
chmod -R u+w "$DEST.tmp"
rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
date -u +%FT%TZ > "$DEST/.stamp"
ln -sfn "$DEST" "$BLIXT_CACHE/gateway-api"
log "gateway-api $GATEWAY_API_VERSION: CRDs in $DEST"
