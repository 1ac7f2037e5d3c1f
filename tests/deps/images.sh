#!/usr/bin/env bash
# Container images for a real cluster, built without any registry (`make images`).
#
#   blixt    Debian bookworm root (mmdebstrap) with python3, nftables, iproute2,
#            conntrack, libbpf1 and a venv in /opt/blixt holding this repository's
#            wheel and its PyPI dependencies
#   bpfman   bpfman-rpc and bpfman 0.6.0 (`make deps-bpfman`) on the Debian
#            libraries they link (libc6, libgcc-s1, libssl3, zlib1g) and CA certificates
#   pause    Kubernetes' pause.c from the k8s.io/kubernetes module, gcc -static
#   echo-basic, coredns
#            the static binaries `make deps-cluster` builds, on a distroless-like
#            root (passwd, group, CA certificates, /tmp), as user nonroot (65532);
#            skipped with a note when those binaries are not built
#   bpfman-operator, bpfman-agent, csi-node-driver-registrar
#            bpfman-operator v0.6.0, its agent and our CSI registrar (`make
#            deps-cluster`), static binaries on the distroless-like root, each
#            where bpfman-operator's manifests run it (/bpfman-operator with
#            its ./config/bpfman-deployment payload, /bpfman-agent,
#            /csi-node-driver-registrar)
#   agnhost  Kubernetes' e2e test image (test/images/agnhost, built by `make
#            deps-cluster`) on a Debian root with the tools its Dockerfile adds
#            to Alpine (sh, bash, curl, nc, ip, dig), tagged as the e2e
#            framework names it
#
# Each root file system becomes one uncompressed layer (umoci raw add-layer),
# the image config is set with umoci, and skopeo writes a docker-archive
# tarball with every tag: $BLIXT_CACHE/images/<image>.tar, ready for
# `ctr -n k8s.io images import`. $BLIXT_CACHE/images/images.txt lists
# "name:tag file" for every tag, sorted. A stamp beside each tarball records
# the inputs it was built from; a changed input rebuilds that image only.
#
# Usage: images.sh [blixt|bpfman|pause|echo-basic|coredns|agnhost|bpfman-operator|bpfman-agent|csi-node-driver-registrar ...]
#        (default: all)
# Debian packages come from the host's Debian apt sources (the deb822 file
# /etc/apt/sources.list.d/debian.sources, else /etc/apt/sources.list);
# IMAGES_APT_SOURCES=FILE picks another sources file.
source "$(dirname "$0")/lib.sh"

OUT=$BLIXT_CACHE/images
SUITE=bookworm
BPFMAN_VERSION=${BPFMAN_VERSION:-0.6.0}
PAUSE_TAG=3.10.1
KUBE_VERSION=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$REPO_ROOT/tests/cluster/kube/go.mod")
# Where tests/deps/cluster.sh (`make deps-cluster`) leaves echo-basic and coredns.
if [ -z "${CLUSTER_BIN:-}" ]; then
  CLUSTER_BIN=$BLIXT_CACHE/cluster/bin
  [ -d "$CLUSTER_BIN" ] || CLUSTER_BIN=$BLIXT_CACHE/cluster-$KUBE_VERSION/bin
fi
# The tags Gateway API's conformance base manifests (v1.6.1) give echo-basic.
ECHO_BASIC_TAGS=(v1.5.1 v1.6.0-dev.2 v1.6.0-dev.3)
# The manifests (deploy/kustomize/base) name `blixt:latest`. A `latest` tag
# makes kubelet's default pull policy Always, so the image also carries the
# package version: set that tag in an overlay to run it without a registry.
BLIXT_VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_ROOT/pyproject.toml" | head -1)
[ -n "$BLIXT_VERSION" ] || { log "images: no version in pyproject.toml"; exit 1; }

# --- tools -----------------------------------------------------------------
# umoci, skopeo, mmdebstrap and setcap (libcap2-bin) are Debian packages; install the missing ones.
missing=()
for p in umoci skopeo mmdebstrap libcap2-bin; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "images: missing ${missing[*]} and not root: run 'make images' as root"; exit 1; }
  log "images: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ "$(id -u)" = 0 ] || { log "images: mmdebstrap --mode=root and chroot need root"; exit 1; }

if [ -n "${IMAGES_APT_SOURCES:-}" ]; then
  APT_SOURCES=$IMAGES_APT_SOURCES
elif [ -f /etc/apt/sources.list.d/debian.sources ]; then
  APT_SOURCES=/etc/apt/sources.list.d/debian.sources
else
  APT_SOURCES=/etc/apt/sources.list
fi

# Image timestamps (config "created", layer mtimes) come from the last commit,
# so an unchanged tree packs the same layer bytes.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO_ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
# Contents only: a hash over file names would differ between clones in other directories.
SCRIPT_HASH=$(cat "$0" "$REPO_ROOT/tests/deps/lib.sh" | sha256sum | cut -d' ' -f1)
mkdir -p "$OUT"
# Work directories (root file systems, OCI layouts) go away however the script ends.
WORKDIRS=()
trap 'rm -rf "${WORKDIRS[@]}"' EXIT
newwork() { mktemp -d "$OUT/.$1.XXXXXX"; }
# begin NAME: sets the caller's locals `start` (now) and `work` (a work
# directory for NAME, removed however the script ends).
begin() { start=$(date +%s); work=$(newwork "$1"); WORKDIRS+=("$work"); }

# Docs, man pages and translations are left out of the Debian roots.
DPKG_EXCLUDES=(
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
  --dpkgopt='path-exclude=/usr/share/bash-completion/*'
)

# prune ROOTFS: what a container does not need (dpkg's excludes also miss
# files that the extract variant unpacks without dpkg).
prune() {
  local r=$1
  rm -rf "$r"/usr/share/man "$r"/usr/share/info "$r"/usr/share/lintian "$r"/usr/share/bash-completion
  # glibc's iconv modules (8 MB): Python has its own codecs, the tools need none.
  rm -rf "$r"/usr/lib/x86_64-linux-gnu/gconv
  find "$r"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$r"/usr/share/doc -mindepth 1 -type d -empty -delete 2>/dev/null || true
  find "$r"/usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old
  rm -rf "$r"/var/log/* "$r"/tmp/* "$r"/run/* "$r"/dev/*
  # mmdebstrap copies the host's resolv.conf and hostname; the runtime provides both.
  rm -f "$r"/etc/resolv.conf "$r"/etc/hostname
}

# pack_layer ROOTFS LAYER.tar: one uncompressed layer, numeric owners, sorted,
# mtimes clamped to SOURCE_DATE_EPOCH, file capabilities kept.
pack_layer() {
  local r=$1 layer=$2
  (cd "$r" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort |
    tar --numeric-owner --sort=name --xattrs --xattrs-include=security.capability --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime \
        --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -cf "$layer" -T -)
}

# assemble NAME WORK LAYER TAG [TAG...] -- UMOCI_CONFIG_ARGS...
# Writes $OUT/NAME.tar (all tags) and $OUT/NAME.tags.
assemble() {
  local name=$1 work=$2 layer=$3; shift 3
  local tags=()
  while [ "$1" != -- ]; do tags+=("$1"); shift; done
  shift
  local oci=$work/oci
  rm -rf "$oci"
  umoci init --layout "$oci"
  umoci new --image "$oci:img"
  umoci raw add-layer --image "$oci:img" --history.created "$CREATED" \
    --history.created_by "tests/deps/images.sh ($name root file system)" "$layer"
  umoci config --image "$oci:img" --created "$CREATED" --history.created "$CREATED" \
    --history.created_by "tests/deps/images.sh ($name config)" \
    --config.label "org.opencontainers.image.title=$name" "$@"
  local extra=() t
  for t in "${tags[@]:1}"; do extra+=(--additional-tag "$t"); done
  rm -f "$OUT/$name.tar.new"
  skopeo copy -q "oci:$oci:img" "docker-archive:$OUT/$name.tar.new:${tags[0]}" "${extra[@]}"
  mv "$OUT/$name.tar.new" "$OUT/$name.tar"
  printf '%s\n' "${tags[@]}" > "$OUT/$name.tags"
}

# finish NAME ROOTFS START STAMP_VALUE: record sizes and build time, write the stamp.
finish() {
  local name=$1 rootfs=$2 start=$3 want=$4
  local secs=$(( $(date +%s) - start ))
  local rootfs_bytes archive_bytes
  rootfs_bytes=$(du -sb --apparent-size "$rootfs" | cut -f1)
  archive_bytes=$(stat -c %s "$OUT/$name.tar")
  {
    echo "tags: $(tr '\n' ' ' < "$OUT/$name.tags")"
    echo "archive_bytes: $archive_bytes"
    echo "rootfs_bytes: $rootfs_bytes"
    echo "build_seconds: $secs"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } > "$OUT/$name.info"
  echo "$want" > "$OUT/$name.stamp"
  log "images: $name built in ${secs}s: $(numfmt --to=iec "$archive_bytes") archive, $(numfmt --to=iec "$rootfs_bytes") root file system"
}

cached() {  # cached NAME STAMP_VALUE
  if stamp_matches "$OUT/$1.stamp" "$2" && [ -f "$OUT/$1.tar" ] && [ -f "$OUT/$1.tags" ]; then
    log "images: $1 cached in $OUT/$1.tar"
    return 0
  fi
  return 1
}

# check_libs ROOT FILE...: every shared library FILE needs resolves inside ROOT.
check_libs() {
  local r=$1 f out; shift
  for f in "$@"; do
    out=$(chroot "$r" /lib64/ld-linux-x86-64.so.2 --list "$f")
    if grep -q 'not found' <<< "$out"; then
      printf '%s:\n%s\n' "$f" "$out" >&2
      log "images: $f needs libraries its image lacks"; exit 1
    fi
  done
}

# --- blixt -------------------------------------------------------------------
# libstdc++6: grpcio's manylinux extension links it.
BLIXT_PACKAGES=(python3 nftables iproute2 conntrack ca-certificates libbpf1 libstdc++6)
# Needed only while the venv is made; purged afterwards with what they pulled in.
BLIXT_BUILD_PACKAGES=(python3-venv python3.11-venv python3-pip-whl python3-setuptools-whl python3-distutils python3-lib2to3)
# Parts of dependencies blixt does not import, left out of the image:
# kubernetes/aio is the asyncio client (68 MB with its bytecode); blixt uses
# the synchronous client. tests/images imports every blixt module in the image.
BLIXT_PRUNE=(kubernetes/aio)
# Commands in the root run with a clean environment (no host PIP_* settings).
IN_ROOT='env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8'

# wheelhouse PYTHON DIR: the wheels of blixt's dependencies, resolved from
# PyPI once per dependency list (pyproject.toml's [project] table) and kept
# in $OUT/wheelhouse; blixt's own wheel is built every time.
wheelhouse() {
  local py=$1 dir=$2 deps want
  deps=$(sed -n '/^\[project\]/,/^\[/p' "$REPO_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
  want="python $("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])'); project $deps"
  if ! stamp_matches "$OUT/wheelhouse/.stamp" "$want"; then
    log "images: blixt: resolving its dependencies from PyPI into $OUT/wheelhouse"
    rm -rf "$OUT/wheelhouse"
    env -u PIP_FIND_LINKS PIP_CACHE_DIR="$BLIXT_CACHE/pip" \
      "$py" -m pip wheel -q --disable-pip-version-check --prefer-binary --wheel-dir "$OUT/wheelhouse" "$dir/src"
    rm -f "$OUT"/wheelhouse/blixt-*.whl
    echo "$want" > "$OUT/wheelhouse/.stamp"
  fi
  env -u PIP_FIND_LINKS "$py" -m pip wheel -q --disable-pip-version-check --no-deps --wheel-dir "$dir/wheels" "$dir/src"
  cp "$OUT"/wheelhouse/*.whl "$dir/wheels/"
}

build_blixt() {
  # Inputs: the tracked files of the package (as they are in the work tree), the packages, this script.
  local src_hash want
  src_hash=$(cd "$REPO_ROOT" && git ls-files -z pyproject.toml README.md controller | LC_ALL=C sort -z |
    xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  want="blixt $BLIXT_VERSION; src $src_hash; $SUITE ${BLIXT_PACKAGES[*]}; script $SCRIPT_HASH"
  cached blixt "$want" && return 0

  local py=${PYTHON:-python3}
  local pyver
  pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  # bookworm's python3 is 3.11: the wheels resolved here must be for the same version.
  [ "$pyver" = 3.11 ] || { log "images: $py is Python $pyver; the wheelhouse needs 3.11 (set PYTHON=)"; exit 1; }

  local start work
  begin blixt

  log "images: blixt: wheels for blixt $BLIXT_VERSION and its dependencies"
  mkdir -p "$work/src" "$work/wheels"
  (cd "$REPO_ROOT" && git ls-files -z pyproject.toml README.md controller | xargs -0 cp --parents -t "$work/src")
  wheelhouse "$py" "$work"

  log "images: blixt: Debian $SUITE root (mmdebstrap), venv /opt/blixt"
  local inc prune_paths="" p
  inc=$(IFS=,; echo "${BLIXT_PACKAGES[*]},${BLIXT_BUILD_PACKAGES[0]}")
  for p in "${BLIXT_PRUNE[@]}"; do prune_paths+=" \"\$1\"/opt/blixt/lib/python3.11/site-packages/$p"; done
  # merged-usr: /bin, /lib, ... as symlinks made by the hook, so that apt does
  # not pick the usrmerge package (and perl with it) to do it.
  mmdebstrap --quiet --mode=root --variant=essential --format=directory \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --include="$inc" "${DPKG_EXCLUDES[@]}" \
    --customize-hook="copy-in $work/wheels /tmp" \
    --customize-hook="chroot \"\$1\" $IN_ROOT python3 -m venv /opt/blixt" \
    --customize-hook="chroot \"\$1\" $IN_ROOT /opt/blixt/bin/pip install -q --disable-pip-version-check --no-index --find-links /tmp/wheels blixt" \
    --customize-hook="chroot \"\$1\" $IN_ROOT /opt/blixt/bin/pip list --format=freeze --disable-pip-version-check --exclude pip --exclude setuptools > $work/packages.txt" \
    --customize-hook="chroot \"\$1\" $IN_ROOT /opt/blixt/bin/pip uninstall -q -y pip setuptools" \
    --customize-hook="chroot \"\$1\" $IN_ROOT dpkg --purge ${BLIXT_BUILD_PACKAGES[*]} >/dev/null" \
    --customize-hook="rm -rf$prune_paths" \
    --customize-hook='ln -s /opt/blixt/bin/blixt "$1/usr/local/bin/blixt"' \
    "$SUITE" "$work/rootfs" "$APT_SOURCES" 2> "$work/mmdebstrap.log" ||
    { cat "$work/mmdebstrap.log" >&2; log "images: blixt: mmdebstrap failed"; exit 1; }
  prune "$work/rootfs"
  # The extensions in the venv (grpcio, PyYAML, ...) and the tools blixt runs.
  mapfile -t sos < <(cd "$work/rootfs" && find opt/blixt -name '*.so*' -type f -printf '/%p\n')
  check_libs "$work/rootfs" "${sos[@]}" /usr/bin/python3.11 /usr/sbin/nft /usr/bin/ip /usr/sbin/conntrack
  cp "$work/packages.txt" "$OUT/blixt.packages"
  chroot "$work/rootfs" dpkg-query -W -f='${Package}=${Version}\n' > "$OUT/blixt.debs"

  pack_layer "$work/rootfs" "$work/layer.tar"
  assemble blixt "$work" "$work/layer.tar" "blixt:$BLIXT_VERSION" blixt:latest -- \
    --config.entrypoint blixt \
    --config.env PATH=/opt/blixt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env PYTHONDONTWRITEBYTECODE=1 \
    --config.env PYTHONUNBUFFERED=1 \
    --config.workingdir / \
    --config.user 0:0 \
    --config.label "org.opencontainers.image.version=$BLIXT_VERSION"
  finish blixt "$work/rootfs" "$start" "$want"
}

# --- bpfman ------------------------------------------------------------------
# What bpfman-rpc and bpfman link (ldd) plus CA certificates for image pulls.
BPFMAN_PACKAGES=(libc6 libgcc-s1 libssl3 zlib1g ca-certificates)

build_bpfman() {
  local bin=$BLIXT_CACHE/bpfman-$BPFMAN_VERSION/bin
  for b in bpfman-rpc bpfman; do
    [ -x "$bin/$b" ] || { log "images: $bin/$b missing: run 'make deps-bpfman'"; exit 1; }
  done
  local want
  local shim_src=$REPO_ROOT/tests/harness/memlock_shim.c
  want="bpfman $BPFMAN_VERSION $(cat "$bin/bpfman-rpc" "$bin/bpfman" | sha256sum | cut -d' ' -f1); $SUITE ${BPFMAN_PACKAGES[*]}; shim $(sha256sum < "$shim_src" | cut -d' ' -f1); script $SCRIPT_HASH"
  cached bpfman "$want" && return 0

  local start work
  begin bpfman

  # The extract variant unpacks the packages and nothing else: no shell, no
  # dpkg, no maintainer scripts. The binaries need only these libraries.
  log "images: bpfman: Debian $SUITE libraries (mmdebstrap, extract)"
  mmdebstrap --quiet --mode=root --variant=extract --format=directory \
    --include="$(IFS=,; echo "${BPFMAN_PACKAGES[*]}")" \
    "$SUITE" "$work/rootfs" "$APT_SOURCES" 2> "$work/mmdebstrap.log" ||
    { cat "$work/mmdebstrap.log" >&2; log "images: bpfman: mmdebstrap failed"; exit 1; }
  local r=$work/rootfs
  # Without maintainer scripts: the CA bundle update-ca-certificates would
  # write, from the package's certificates; the iconv modules and the
  # configuration tools (debconf) are not used by the binaries.
  mkdir -p "$r/etc/ssl/certs"
  cat "$r"/usr/share/ca-certificates/mozilla/*.crt > "$r/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$r"/usr/share/debconf "$r"/usr/share/perl5 \
    "$r"/usr/share/pixmaps "$r"/usr/bin/debconf* "$r"/usr/sbin/dpkg-preconfigure "$r"/usr/sbin/dpkg-reconfigure
  prune "$r"
  # Where upstream's image has them (its entrypoint is ./bpfman-rpc in /), and on PATH.
  install -m 0755 "$bin/bpfman-rpc" "$bin/bpfman" "$r/"
  ln -s /bpfman-rpc "$r/usr/bin/bpfman-rpc"
  ln -s /bpfman "$r/usr/bin/bpfman"
  # bpfman's own state and sockets; mounted over in a pod, present for a bare run.
  mkdir -p "$r/run/bpfman" "$r/run/bpfman-sock" "$r/var/lib/bpfman" "$r/tmp" "$r/etc/bpfman"
  chmod 1777 "$r/tmp"
  # Images here are unsigned: without this bpfman 0.6.0 refuses them (and
  # fetches sigstore's trust root first). bpfman-operator mounts its
  # ConfigMap bpfman-config over this file.
  printf '[signing]\nallow_unsigned = true\nverify_enabled = false\n' > "$r/etc/bpfman/bpfman.toml"
  # bpfman 0.6.0 refuses every request unless it can raise RLIMIT_MEMLOCK,
  # which root without CAP_SYS_RESOURCE (these machines, and so their pods)
  # cannot: tests/harness/memlock_shim.c, preloaded by the image's
  # environment (so also in the DaemonSet bpfman-operator makes, which sets
  # no LD_PRELOAD); it changes nothing where that setrlimit succeeds.
  mkdir -p "$r/usr/local/lib/blixt"
  gcc -shared -fPIC -O2 -Wall -Werror -o "$r/usr/local/lib/blixt/memlock_shim.so" "$shim_src" -ldl
  # Image pulls trust Debian's roots and, besides them, CA certificates in
  # /run/bpfman/registry-ca (OpenSSL hashed names, SSL_CERT_DIR below): the
  # DaemonSet bpfman-operator makes mounts the node's /run/bpfman and gives
  # no other way to trust a private registry's CA.
  # Mount points a runtime would otherwise create.
  mkdir -p "$r/proc" "$r/sys" "$r/dev"
  check_libs "$r" /bpfman-rpc /bpfman /usr/local/lib/blixt/memlock_shim.so

  pack_layer "$r" "$work/layer.tar"
  assemble bpfman "$work" "$work/layer.tar" "bpfman:$BPFMAN_VERSION" -- \
    --config.entrypoint /bpfman-rpc --config.entrypoint=--timeout=0 \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env LD_PRELOAD=/usr/local/lib/blixt/memlock_shim.so \
    --config.env SSL_CERT_DIR=/etc/ssl/certs:/run/bpfman/registry-ca \
    --config.workingdir / \
    --config.user 0:0 \
    --config.label "org.opencontainers.image.version=$BPFMAN_VERSION"
  finish bpfman "$r" "$start" "$want"
}

# --- pause -------------------------------------------------------------------
build_pause() {
  local kube_version=$KUBE_VERSION moddir
  moddir=$GOMODCACHE/k8s.io/kubernetes@$kube_version
  if [ ! -f "$moddir/build/pause/linux/pause.c" ]; then
    command -v go >/dev/null || { log "images: pause: go not found (needed to download k8s.io/kubernetes $kube_version)"; exit 1; }
    log "images: pause: go mod download k8s.io/kubernetes $kube_version"
    (cd "$REPO_ROOT/tests/cluster/kube" && go mod download k8s.io/kubernetes)
  fi
  local src=$moddir/build/pause/linux/pause.c
  local cflags="-Os -Wall -Werror -static -DVERSION=v$PAUSE_TAG"
  local want
  want="pause $PAUSE_TAG from k8s.io/kubernetes $kube_version $(sha256sum < "$src" | cut -d' ' -f1); gcc $(gcc -dumpfullversion) $cflags; script $SCRIPT_HASH"
  cached pause "$want" && return 0

  local start work
  begin pause
  log "images: pause: gcc $cflags pause.c (k8s.io/kubernetes $kube_version)"
  mkdir -p "$work/rootfs"
  # shellcheck disable=SC2086
  gcc $cflags -o "$work/rootfs/pause" "$src"
  strip "$work/rootfs/pause"
  chmod 0755 "$work/rootfs/pause"

  pack_layer "$work/rootfs" "$work/layer.tar"
  assemble pause "$work" "$work/layer.tar" "registry.k8s.io/pause:$PAUSE_TAG" -- \
    --config.entrypoint /pause \
    --config.user 65535:65535 \
    --config.label "org.opencontainers.image.version=$PAUSE_TAG"
  finish pause "$work/rootfs" "$start" "$want"
}

# --- echo-basic, coredns ------------------------------------------------------
# A root like the distroless "static" base upstream's images use: no shell,
# no libc; users root, nobody and nonroot (65532), /tmp, and Debian's CA
# certificates (bundled as update-ca-certificates would).
static_root() {
  local r=$1 work=$2
  if [ ! -f "$work/ca/etc/ssl/certs/ca-certificates.crt" ]; then
    mmdebstrap --quiet --mode=root --variant=extract --format=directory --include=ca-certificates \
      "$SUITE" "$work/ca" "$APT_SOURCES" 2> "$work/mmdebstrap.log" ||
      { cat "$work/mmdebstrap.log" >&2; log "images: mmdebstrap (ca-certificates) failed"; exit 1; }
    mkdir -p "$work/ca/etc/ssl/certs"
    cat "$work"/ca/usr/share/ca-certificates/mozilla/*.crt > "$work/ca/etc/ssl/certs/ca-certificates.crt"
  fi
  mkdir -p "$r/etc/ssl/certs" "$r/tmp" "$r/root" "$r/home/nonroot" "$r/proc" "$r/sys" "$r/dev"
  install -m 0644 "$work/ca/etc/ssl/certs/ca-certificates.crt" "$r/etc/ssl/certs/"
  chmod 1777 "$r/tmp"
  chmod 0700 "$r/root"
  chown 65532:65532 "$r/home/nonroot"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' > "$r/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' > "$r/etc/group"
  echo 'hosts: files dns' > "$r/etc/nsswitch.conf"
}

# cluster_binary NAME: its path, or nothing (and a note) when `make deps-cluster` has not built it.
cluster_binary() {
  if [ -x "$CLUSTER_BIN/$1" ]; then
    echo "$CLUSTER_BIN/$1"
  else
    log "images: $1: skipped, $CLUSTER_BIN/$1 not built (make deps-cluster)"
  fi
}

build_echo-basic() {
  local bin want
  bin=$(cluster_binary echo-basic)
  [ -n "$bin" ] || return 0
  want="echo-basic $(sha256sum < "$bin" | cut -d' ' -f1); tags ${ECHO_BASIC_TAGS[*]}; script $SCRIPT_HASH"
  cached echo-basic "$want" && return 0
  local start work tags=() t
  begin echo-basic
  static_root "$work/rootfs" "$work"
  install -m 0755 "$bin" "$work/rootfs/echo-basic"
  pack_layer "$work/rootfs" "$work/layer.tar"
  for t in "${ECHO_BASIC_TAGS[@]}"; do tags+=("registry.k8s.io/gateway-api/echo-basic:$t"); done
  # As upstream's image: /echo-basic as nonroot.
  assemble echo-basic "$work" "$work/layer.tar" "${tags[@]}" -- \
    --config.entrypoint /echo-basic \
    --config.workingdir / \
    --config.user 65532:65532
  finish echo-basic "$work/rootfs" "$start" "$want"
}

build_coredns() {
  local bin version want
  bin=$(cluster_binary coredns)
  [ -n "$bin" ] || return 0
  version=$("$bin" -version | sed -n 's/^CoreDNS-//p')
  [ -n "$version" ] || { log "images: coredns: $bin -version names no version"; exit 1; }
  want="coredns $version $(sha256sum < "$bin" | cut -d' ' -f1); script $SCRIPT_HASH"
  cached coredns "$want" && return 0
  local start work
  begin coredns
  static_root "$work/rootfs" "$work"
  install -m 0755 "$bin" "$work/rootfs/coredns"
  # As upstream's image: nonroot binds :53 through this file capability.
  setcap cap_net_bind_service=+ep "$work/rootfs/coredns"
  pack_layer "$work/rootfs" "$work/layer.tar"
  assemble coredns "$work" "$work/layer.tar" "registry.k8s.io/coredns/coredns:v$version" -- \
    --config.entrypoint /coredns \
    --config.exposedports 53/tcp --config.exposedports 53/udp \
    --config.workingdir / \
    --config.user 65532:65532 \
    --config.label "org.opencontainers.image.version=$version"
  finish coredns "$work/rootfs" "$start" "$want"
}

# --- agnhost -----------------------------------------------------------------
# Upstream's image is Alpine plus bind-tools, curl, netcat-openbsd, iproute2,
# iperf and bash (busybox gives it wget); the e2e tests run its shell commands (`nc -v -t -w 2`,
# `curl -g -q -s`, `wget -q -O - -T 1`, `ip`, `nslookup`) in exec pods. The same tools from Debian; not
# iperf (network performance tests only) and not the fake registry that
# upstream prepares with crane in a build stage (image pull tests only).
AGNHOST_PACKAGES=(bash curl wget netcat-openbsd iproute2 bind9-dnsutils ca-certificates)

build_agnhost() {
  local bin version src want
  bin=$(cluster_binary agnhost)
  [ -n "$bin" ] || return 0
  src=$GOMODCACHE/k8s.io/kubernetes@$KUBE_VERSION/test/images/agnhost
  [ -f "$src/VERSION" ] || { log "images: agnhost: $src/VERSION missing (make deps-cluster downloads it)"; exit 1; }
  version=$(cat "$src/VERSION")
  want="agnhost $version $(sha256sum < "$bin" | cut -d' ' -f1); $SUITE ${AGNHOST_PACKAGES[*]}; script $SCRIPT_HASH"
  cached agnhost "$want" && return 0
  local start work
  begin agnhost
  log "images: agnhost $version: Debian $SUITE root (mmdebstrap)"
  mmdebstrap --quiet --mode=root --variant=essential --format=directory \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --include="$(IFS=,; echo "${AGNHOST_PACKAGES[*]}")" "${DPKG_EXCLUDES[@]}" \
    "$SUITE" "$work/rootfs" "$APT_SOURCES" 2> "$work/mmdebstrap.log" ||
    { cat "$work/mmdebstrap.log" >&2; log "images: agnhost: mmdebstrap failed"; exit 1; }
  local r=$work/rootfs
  prune "$r"
  install -m 0755 "$bin" "$r/agnhost"
  # As upstream's Dockerfile: the entrypoint-tester's second name, porter's
  # TLS pair in /, /uploads, and the user and group a SupplementalGroups test
  # expects in the image.
  ln -s agnhost "$r/agnhost-2"
  install -m 0644 "$src/porter/localhost.crt" "$src/porter/localhost.key" "$r/"
  mkdir -p "$r/uploads" "$r/tmp" "$r/proc" "$r/sys" "$r/dev"
  chmod 1777 "$r/tmp"
  echo 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh' >> "$r/etc/passwd"
  echo 'user-defined-in-image:x:1000:' >> "$r/etc/group"
  echo 'group-defined-in-image:x:50000:user-defined-in-image' >> "$r/etc/group"
  check_libs "$r" /usr/bin/curl /usr/bin/wget /usr/bin/nc.openbsd /usr/bin/ip /usr/bin/dig /usr/bin/bash
  pack_layer "$r" "$work/layer.tar"
  assemble agnhost "$work" "$work/layer.tar" "registry.k8s.io/e2e-test-images/agnhost:$version" -- \
    --config.entrypoint /agnhost --config.cmd pause \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.exposedports 80/tcp --config.exposedports 8080/tcp --config.exposedports 8081/tcp \
    --config.exposedports 9376/tcp --config.exposedports 5000/tcp \
    --config.workingdir / \
    --config.user 0:0 \
    --config.label "org.opencontainers.image.version=$version"
  finish agnhost "$r" "$start" "$want"
}

# --- bpfman-operator, bpfman-agent, csi-node-driver-registrar -----------------
# Tagged with local names: bpfman-operator's Config (spec.agent.image,
# spec.daemon.csiRegistrarImage) and its Deployment's BPFMAN_AGENT_IMG name them.
OPERATOR_VERSION=0.6.0

# operator_image NAME BINARY PATH_IN_IMAGE USER [ROOT_SETUP_FUNCTION]
operator_image() {
  local name=$1 binary=$2 path=$3 user=$4 setup=${5:-} bin want extra=""
  bin=$(cluster_binary "$binary")
  [ -n "$bin" ] || return 0
  [ -z "$setup" ] || extra=$("$setup" hash)
  want="$name $OPERATOR_VERSION $(sha256sum < "$bin" | cut -d' ' -f1) $extra user $user; script $SCRIPT_HASH"
  cached "$name" "$want" && return 0
  local start work
  begin "$name"
  static_root "$work/rootfs" "$work"
  install -m 0755 "$bin" "$work/rootfs$path"
  [ -z "$setup" ] || "$setup" "$work/rootfs"
  pack_layer "$work/rootfs" "$work/layer.tar"
  assemble "$name" "$work" "$work/layer.tar" "$name:$OPERATOR_VERSION" -- \
    --config.entrypoint "$path" \
    --config.workingdir / \
    --config.user "$user" \
    --config.label "org.opencontainers.image.version=$OPERATOR_VERSION"
  finish "$name" "$work/rootfs" "$start" "$want"
}

# The operator reads ./config/bpfman-deployment/*.yaml from its working directory.
OPERATOR_CONFIG=$CLUSTER_BIN/../bpfman-operator/config/bpfman-deployment
operator_payload() {
  if [ "$1" = hash ]; then cat "$OPERATOR_CONFIG"/*.yaml | sha256sum | cut -d' ' -f1; return; fi
  mkdir -p "$1/config/bpfman-deployment"
  install -m 0644 "$OPERATOR_CONFIG"/*.yaml "$1/config/bpfman-deployment/"
}

# The operator's Deployment says runAsNonRoot without a user: nonroot (65532),
# as upstream's image. The agent and the registrar run as root in the
# privileged DaemonSet the operator makes.
build_bpfman-operator() { operator_image bpfman-operator bpfman-operator /bpfman-operator 65532:65532 operator_payload; }
build_bpfman-agent() { operator_image bpfman-agent bpfman-operator-agent /bpfman-agent 0:0; }
build_csi-node-driver-registrar() { operator_image csi-node-driver-registrar csi-registrar /csi-node-driver-registrar 0:0; }

# --- main --------------------------------------------------------------------
ALL=(blixt bpfman pause echo-basic coredns agnhost bpfman-operator bpfman-agent csi-node-driver-registrar)
want_images=("$@")
[ ${#want_images[@]} -gt 0 ] || want_images=("${ALL[@]}")
for img in "${want_images[@]}"; do
  case $img in
    blixt|bpfman|pause|echo-basic|coredns|agnhost|bpfman-operator|bpfman-agent|csi-node-driver-registrar) "build_$img" ;;
    *) log "images: unknown image '$img' (known: ${ALL[*]})"; exit 2 ;;
  esac
done

# The list of every tag and its tarball, stable across runs.
for img in "${ALL[@]}"; do
  [ -f "$OUT/$img.tags" ] && [ -f "$OUT/$img.tar" ] || continue
  sed "s|\$| $OUT/$img.tar|" "$OUT/$img.tags"
done | LC_ALL=C sort > "$OUT/images.txt.new"
mv "$OUT/images.txt.new" "$OUT/images.txt"
log "images: $(wc -l < "$OUT/images.txt") tags listed in $OUT/images.txt"
