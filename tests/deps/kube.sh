#!/usr/bin/env bash
# kube-apiserver, kubectl and etcd, built from the Go module proxy through the
# wrapper modules in tests/cluster/ (see the comments in their go.mod).
source "$(dirname "$0")/lib.sh"

KUBE_VERSION=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$REPO_ROOT/tests/cluster/kube/go.mod")
ETCD_VERSION=$(awk '$1=="require" && $2=="go.etcd.io/etcd/server/v3" {print $3}' "$REPO_ROOT/tests/cluster/etcd/go.mod")
BIN=$BLIXT_CACHE/kube-$KUBE_VERSION
STAMP=$BIN/.stamp
WANT=$(cat "$REPO_ROOT"/tests/cluster/*/go.mod "$REPO_ROOT"/tests/cluster/*/go.sum | sha256sum | cut -d' ' -f1)

if stamp_matches "$STAMP" "$WANT" && [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kubectl" ] && [ -x "$BIN/etcd" ]; then
  log "kubernetes $KUBE_VERSION, etcd $ETCD_VERSION: cached in $BIN"
  exit 0
fi

command -v go >/dev/null || { log "kube: go not found (Go toolchain needed)"; exit 1; }
mkdir -p "$BIN"
start=$(date +%s)

# gitVersion etc. make /version and `kubectl version` report the real release.
minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
log "kube: building kube-apiserver and kubectl $KUBE_VERSION (cold build takes minutes)"
(cd "$REPO_ROOT/tests/cluster/kube" && go build -trimpath -ldflags "$ldflags" -o "$BIN/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl)

log "kube: building etcd $ETCD_VERSION"
etcd_ldflags="-s -w"
(cd "$REPO_ROOT/tests/cluster/etcd" && go build -trimpath -ldflags "$etcd_ldflags" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)

echo "$WANT" > "$STAMP"
ln -sfn "$BIN" "$BLIXT_CACHE/kube"
log "kube: built in $(( $(date +%s) - start ))s"
