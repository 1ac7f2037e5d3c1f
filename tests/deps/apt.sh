#!/usr/bin/env bash
# Debian packages the build, the tests and the demo need. Installs only what is missing.
source "$(dirname "$0")/lib.sh"

PACKAGES=(
  # bytecode and BTF
  clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool
  # bpfman's build (cargo) needs these besides clang
  libssl-dev pkg-config make protobuf-compiler
  # dataplane and its debugging
  iproute2 nftables libnftables1 conntrack iputils-ping netcat-openbsd iperf3
  # the real OCI distribution registry and its TLS
  docker-registry openssl skopeo ca-certificates
  jq curl git
  # a mark-restoring neighbour in the dataplane tests (CONNMARK)
  iptables
  # runc's seccomp support (cgo) in `make deps-cluster` (tests/deps/cluster.sh)
  libseccomp-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "apt: all ${#PACKAGES[@]} packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "apt: missing ${missing[*]} and not root: run 'make deps' as root"
  exit 1
fi
log "apt: installing ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The distribution registry package starts a system service on :5000; tests run their own.
if systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
