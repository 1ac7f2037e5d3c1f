#!/usr/bin/env bash
# The binaries of a one-node Kubernetes cluster (kubelet, controller-manager,
# scheduler, kube-proxy, containerd, runc, crictl, CNI plugins, CoreDNS,
# echo-basic), the upstream Gateway API conformance test binary,
# Kubernetes' own e2e test binary with its agnhost test image's binary, and
# bpfman-operator with its agent, its config/ tree and a CSI node-driver
# registrar of our own, all built from the Go module proxy. `make
# deps-cluster` (part of `make deps`).
#
# Layout: $BLIXT_CACHE/cluster-<kubernetes version>/{bin,cni/bin}, with the
# stable link $BLIXT_CACHE/cluster. Each component has its own stamp under
# .stamps/ recording its inputs (version, tags, ldflags, and the hash of the
# wrapper module it is built from); a changed input rebuilds that component
# only. `make deps-cluster` runs tests/deps/kube.sh first: the Kubernetes
# binaries share its wrapper module (tests/cluster/kube), so with its Go cache
# warm they take minutes instead of a cold Kubernetes build. kube.sh's stamp
# hashes every tests/cluster/*/go.{mod,sum}, which is why the conformance
# wrapper modules live in tests/conformance/{upstream,kubernetes}, the
# operator's in tests/operator, and the rest are built with `go install
# module@version` instead of more wrappers there.
source "$(dirname "$0")/lib.sh"

KUBE_MOD=$REPO_ROOT/tests/cluster/kube
CONF_MOD=$REPO_ROOT/tests/conformance/upstream
E2E_MOD=$REPO_ROOT/tests/conformance/kubernetes
OPERATOR_MOD=$REPO_ROOT/tests/operator
REGISTRAR_MOD=$OPERATOR_MOD/registrar

KUBE_VERSION=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$KUBE_MOD/go.mod")
GATEWAY_API_VERSION=$(awk '$1=="sigs.k8s.io/gateway-api/conformance" {print $2; exit}' "$CONF_MOD/go.mod")
BPFMAN_OPERATOR_VERSION=$(awk '$1=="github.com/bpfman/bpfman-operator" {print $2; exit}' "$OPERATOR_MOD/go.mod")
KUBELET_API_VERSION=$(awk '$1=="k8s.io/kubelet" {print $2; exit}' "$REGISTRAR_MOD/go.mod")
CONTAINERD_VERSION=v2.2.9
RUNC_VERSION=v1.3.6
CRI_TOOLS_VERSION=v1.34.0
CNI_PLUGINS_VERSION=v1.8.0
COREDNS_VERSION=v1.12.2

DIR=$BLIXT_CACHE/cluster-$KUBE_VERSION
BIN=$DIR/bin
CNI_BIN=$DIR/cni/bin
mkdir -p "$BIN" "$CNI_BIN" "$DIR/.stamps"

files_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }

# component NAME WANT OUTPUT... -- COMMAND...
# Runs COMMAND unless NAME's stamp records WANT and every OUTPUT is an
# executable; then records WANT. A failed build leaves no stamp.
component() {
  local name=$1 want=$2 outputs=() o start
  shift 2
  while [ "$1" != -- ]; do outputs+=("$1"); shift; done
  shift
  local stamp=$DIR/.stamps/$name ok=1
  for o in "${outputs[@]}"; do [ -x "$o" ] || ok=0; done
  if [ "$ok" = 1 ] && stamp_matches "$stamp" "$want"; then
    log "cluster: $name cached"
    return 0
  fi
  command -v go >/dev/null || { log "cluster: go not found (Go toolchain needed)"; exit 1; }
  rm -f "$stamp"
  log "cluster: building $name"
  start=$(date +%s)
  "$@"
  for o in "${outputs[@]}"; do
    [ -x "$o" ] || { log "cluster: $name: $o missing after the build"; exit 1; }
  done
  printf '%s\n' "$want" > "$stamp"
  log "cluster: $name built in $(( $(date +%s) - start ))s"
}

# kubelet, kube-controller-manager, kube-scheduler, kube-proxy: the wrapper
# module and ldflags of kube-apiserver (tests/deps/kube.sh), so that
# --version reports the release and the Go cache is shared.
minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
kube_node=(kubelet kube-controller-manager kube-scheduler kube-proxy)
build_kube_node() {
  (cd "$KUBE_MOD" && go build -trimpath -ldflags "$kube_ldflags" -o "$BIN/" \
    "${kube_node[@]/#/k8s.io/kubernetes/cmd/}")
}
component kube-node "kubernetes $KUBE_VERSION ldflags=$kube_ldflags mod=$(files_hash "$KUBE_MOD/go.mod" "$KUBE_MOD/go.sum")" \
  "${kube_node[@]/#/$BIN/}" -- build_kube_node

# `go install module@version` builds a module with its own go.mod and go.sum
# (it refuses modules with replace directives, which these do not have).
containerd_pkg=github.com/containerd/containerd/v2
containerd_ldflags="-s -w -X $containerd_pkg/version.Version=$CONTAINERD_VERSION"
containerd_tags=no_btrfs,urfave_cli_no_docs
containerd_cmds=(containerd ctr containerd-shim-runc-v2)
build_containerd() {
  local c pkgs=()
  for c in "${containerd_cmds[@]}"; do pkgs+=("$containerd_pkg/cmd/$c@$CONTAINERD_VERSION"); done
  GOBIN=$BIN CGO_ENABLED=0 go install -trimpath -tags "$containerd_tags" -ldflags "$containerd_ldflags" "${pkgs[@]}"
}
component containerd "containerd $CONTAINERD_VERSION cgo=0 tags=$containerd_tags ldflags=$containerd_ldflags" \
  "${containerd_cmds[@]/#/$BIN/}" -- build_containerd

# runc with seccomp needs cgo and libseccomp-dev (tests/deps/apt.sh). Its
# version comes from the VERSION file it embeds.
runc_tags="seccomp urfave_cli_no_docs"
build_runc() {
  GOBIN=$BIN CGO_ENABLED=1 go install -trimpath -tags "$runc_tags" -ldflags "-s -w" \
    "github.com/opencontainers/runc@$RUNC_VERSION"
}
component runc "runc $RUNC_VERSION cgo=1 tags=$runc_tags ldflags=-s -w" "$BIN/runc" -- build_runc

crictl_ldflags="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION"
build_crictl() {
  GOBIN=$BIN CGO_ENABLED=0 go install -trimpath -ldflags "$crictl_ldflags" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
}
component crictl "cri-tools $CRI_TOOLS_VERSION cgo=0 ldflags=$crictl_ldflags" "$BIN/crictl" -- build_crictl

cni_pkg=github.com/containernetworking/plugins
cni_ldflags="-s -w -X $cni_pkg/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION"
cni_plugins=(main/bridge ipam/host-local main/loopback meta/portmap)
build_cni() {
  local p pkgs=()
  for p in "${cni_plugins[@]}"; do pkgs+=("$cni_pkg/plugins/$p@$CNI_PLUGINS_VERSION"); done
  GOBIN=$CNI_BIN CGO_ENABLED=0 go install -trimpath -ldflags "$cni_ldflags" "${pkgs[@]}"
}
component cni-plugins "cni-plugins $CNI_PLUGINS_VERSION ${cni_plugins[*]} cgo=0 ldflags=$cni_ldflags" \
  "$CNI_BIN/bridge" "$CNI_BIN/host-local" "$CNI_BIN/loopback" "$CNI_BIN/portmap" -- build_cni

# CoreDNS's version is a constant in its source.
build_coredns() {
  GOBIN=$BIN CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
}
component coredns "coredns $COREDNS_VERSION cgo=0 ldflags=-s -w" "$BIN/coredns" -- build_coredns

# echo-basic and the conformance test binary: the conformance module's go.mod
# replaces sigs.k8s.io/gateway-api with ../, which `go install pkg@version`
# refuses, so both come from the wrapper module tests/conformance/upstream.
build_echo_basic() {
  (cd "$CONF_MOD" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/echo-basic" \
    sigs.k8s.io/gateway-api/conformance/echo-basic)
}
component echo-basic "echo-basic $GATEWAY_API_VERSION cgo=0 mod=$(files_hash "$CONF_MOD/go.mod" "$CONF_MOD/go.sum")" \
  "$BIN/echo-basic" -- build_echo_basic

build_conformance() {
  (cd "$CONF_MOD" && CGO_ENABLED=0 go test -c -trimpath -ldflags "-s -w" -o "$BIN/gateway-api-conformance.test" .)
}
component conformance "gateway-api conformance $GATEWAY_API_VERSION cgo=0 src=$(files_hash "$CONF_MOD"/go.mod "$CONF_MOD"/go.sum "$CONF_MOD"/*.go)" \
  "$BIN/gateway-api-conformance.test" -- build_conformance

# Kubernetes' e2e tests (`make conformance-services`) and agnhost, the image
# their pods run: the same release as the cluster, from a wrapper module of
# their own (it needs ginkgo, gomega and k8s.io/sample-apiserver besides the
# cluster's requirements). vet is left to upstream: it doubles the build.
e2e_mod_hash=$(files_hash "$E2E_MOD/go.mod" "$E2E_MOD/go.sum")
[ "$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$E2E_MOD/go.mod")" = "$KUBE_VERSION" ] ||
  { log "cluster: $E2E_MOD/go.mod requires another k8s.io/kubernetes than $KUBE_VERSION"; exit 1; }
build_kubernetes_e2e() {
  (cd "$E2E_MOD" && CGO_ENABLED=0 go test -c -vet=off -trimpath -ldflags "$kube_ldflags" -o "$BIN/e2e.test" \
    k8s.io/kubernetes/test/e2e)
}
component kubernetes-e2e "kubernetes e2e $KUBE_VERSION cgo=0 ldflags=$kube_ldflags mod=$e2e_mod_hash" \
  "$BIN/e2e.test" -- build_kubernetes_e2e

# agnhost's version (its VERSION file; upstream's Makefile sets it the same way).
command -v go >/dev/null && (cd "$E2E_MOD" && go mod download k8s.io/kubernetes)
agnhost_version=$(cat "$GOMODCACHE/k8s.io/kubernetes@$KUBE_VERSION/test/images/agnhost/VERSION" 2>/dev/null || echo unknown)
agnhost_ldflags="-s -w -X main.Version=$agnhost_version"
build_agnhost() {
  (cd "$E2E_MOD" && CGO_ENABLED=0 go build -trimpath -ldflags "$agnhost_ldflags" -o "$BIN/agnhost" \
    k8s.io/kubernetes/test/images/agnhost)
}
component agnhost "agnhost $agnhost_version ($KUBE_VERSION) cgo=0 ldflags=$agnhost_ldflags mod=$e2e_mod_hash" \
  "$BIN/agnhost" -- build_agnhost

# bpfman-operator and its agent (the DaemonSet's bpfman-agent container and
# mount-bpffs init container run it as /bpfman-agent), from the wrapper
# module tests/operator (upstream's requirements less one the proxy refuses).
# The operator reads ./config/bpfman-deployment/*.yaml from its working
# directory; deploying it needs config/{crd,rbac,...}: the module's config/
# tree is copied to $DIR/bpfman-operator/config with the operator.
operator_mod_hash=$(files_hash "$OPERATOR_MOD/go.mod" "$OPERATOR_MOD/go.sum")
operator_ldflags="-s -w -X github.com/bpfman/bpfman-operator/internal/version.buildVersion=$BPFMAN_OPERATOR_VERSION"
OPERATOR_CONFIG=$DIR/bpfman-operator/config
build_bpfman_operator() {
  local src
  (cd "$OPERATOR_MOD" && CGO_ENABLED=0 go build -trimpath -ldflags "$operator_ldflags" -o "$BIN/bpfman-operator" \
    github.com/bpfman/bpfman-operator/cmd/bpfman-operator)
  src=$(cd "$OPERATOR_MOD" && go list -m -f '{{.Dir}}' github.com/bpfman/bpfman-operator)
  rm -rf "$OPERATOR_CONFIG"
  mkdir -p "$(dirname "$OPERATOR_CONFIG")"
  cp -R "$src/config" "$OPERATOR_CONFIG"
  chmod -R u+w "$OPERATOR_CONFIG"  # the module cache is read-only
}
component bpfman-operator "bpfman-operator $BPFMAN_OPERATOR_VERSION cgo=0 ldflags=$operator_ldflags config mod=$operator_mod_hash" \
  "$BIN/bpfman-operator" "$OPERATOR_CONFIG" -- build_bpfman_operator

build_bpfman_operator_agent() {
  (cd "$OPERATOR_MOD" && CGO_ENABLED=0 go build -trimpath -ldflags "$operator_ldflags" -o "$BIN/bpfman-operator-agent" \
    github.com/bpfman/bpfman-operator/cmd/bpfman-agent)
}
component bpfman-operator-agent "bpfman-agent $BPFMAN_OPERATOR_VERSION cgo=0 ldflags=$operator_ldflags mod=$operator_mod_hash" \
  "$BIN/bpfman-operator-agent" -- build_bpfman_operator_agent

# csi-registrar: the DaemonSet's node-driver-registrar container (the upstream
# image is not built from the Go module proxy). Kubelet's plugin-registration
# API from the cluster's release, in a module of its own.
[ "$KUBELET_API_VERSION" = "v0.${KUBE_VERSION#v1.}" ] ||
  { log "cluster: $REGISTRAR_MOD/go.mod requires k8s.io/kubelet $KUBELET_API_VERSION, not the release of kubernetes $KUBE_VERSION"; exit 1; }
build_csi_registrar() {
  (cd "$REGISTRAR_MOD" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/csi-registrar" .)
}
component csi-registrar "csi-registrar k8s.io/kubelet $KUBELET_API_VERSION cgo=0 ldflags=-s -w src=$(files_hash "$REGISTRAR_MOD"/go.mod "$REGISTRAR_MOD"/go.sum "$REGISTRAR_MOD"/*.go)" \
  "$BIN/csi-registrar" -- build_csi_registrar

ln -sfn "$DIR" "$BLIXT_CACHE/cluster"
log "cluster: kubernetes $KUBE_VERSION, containerd $CONTAINERD_VERSION, runc $RUNC_VERSION, crictl $CRI_TOOLS_VERSION, CNI plugins $CNI_PLUGINS_VERSION, CoreDNS $COREDNS_VERSION, gateway-api conformance $GATEWAY_API_VERSION, kubernetes e2e and agnhost, bpfman-operator $BPFMAN_OPERATOR_VERSION (+ config), csi-registrar in $DIR"
