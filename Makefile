# blixt build, test and demo entry points. Most targets need root.
SHELL := /bin/bash
.DEFAULT_GOAL := help

BLIXT_CACHE ?= /var/cache/blixt
export BLIXT_CACHE
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
BUILD := build
MULTIARCH := $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BPF_CFLAGS := -O2 -g -target bpf -Wall -Wextra -Wno-unused-parameter -Werror -I/usr/include/$(MULTIARCH)
PYTEST_ARGS ?=

.PHONY: help deps deps-apt deps-bpfman deps-kube deps-gateway-api deps-cluster test-cluster-deps venv proto bytecode bytecode-large bytecode-image test unit demo conformance conformance-services conformance-scenarios soak bench bench-dataplane bench-convergence bench-proxies clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

deps: deps-apt deps-bpfman deps-kube deps-gateway-api deps-cluster images venv ## install every tool the tests and demo need (root; cached)

deps-apt: ## Debian packages (clang, libbpf, nftables, docker-registry, ...)
	@tests/deps/apt.sh

deps-bpfman: deps-apt ## bpfman-rpc and bpfman 0.6.0 from crates.io
	@tests/deps/bpfman.sh

deps-kube: deps-apt ## kube-apiserver, kubectl and etcd from the Go module proxy
	@tests/deps/kube.sh

deps-gateway-api: deps-apt ## Gateway API CRDs from the Go module proxy
	@tests/deps/gateway-api.sh

# kubelet, containerd, runc, ... for a real one-node cluster.
deps-cluster: deps-apt deps-kube ## kubelet, containerd, runc, crictl, CNI, CoreDNS, echo-basic, upstream conformance binary, Kubernetes e2e + agnhost, bpfman-operator + its agent + a CSI registrar (Go module proxy)
	@tests/deps/cluster.sh

venv: $(VENV)/.stamp ## Python virtual environment with blixt installed (editable)

$(VENV)/.stamp: pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	@PIP_CACHE_DIR=$(BLIXT_CACHE)/pip $(VPY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

proto: venv ## regenerate the bpfman gRPC stubs from proto/bpfman.proto
	$(VPY) -m grpc_tools.protoc -Iblixt/bpfman/v1=proto --python_out=controller --pyi_out=controller \
		--grpc_python_out=controller proto/bpfman.proto

bytecode: $(BUILD)/blixt.bpf.o ## compile the TC programs

$(BUILD)/blixt.bpf.o: bytecode/blixt.bpf.c bytecode/blixt.h
	@mkdir -p $(BUILD)
	clang $(BPF_CFLAGS) -c $< -o $@

# The same program with other map capacities (blixt.h's BLIXT_MAX_*; the agent
# reads them from the loaded maps). large: 100,000 frontends (bench-proxies'
# largest size; more locked memory at empty, BUILD.md); small: a few entries,
# for the tests that fill maps to the brim.
LARGE_MAPS := -DBLIXT_MAX_SERVICES=262144 -DBLIXT_MAX_MEMBERS=524288
SMALL_MAPS := -DBLIXT_MAX_SERVICES=8 -DBLIXT_MAX_SLOTS=32 -DBLIXT_MAX_MEMBERS=16
bytecode-large: $(BUILD)/blixt-large.bpf.o ## compile the TC programs with maps for 100,000 frontends

$(BUILD)/blixt-large.bpf.o $(BUILD)/blixt-small.bpf.o: $(BUILD)/blixt-%.bpf.o: bytecode/blixt.bpf.c bytecode/blixt.h
	@mkdir -p $(BUILD)
	clang $(BPF_CFLAGS) $(if $(filter large,$*),$(LARGE_MAPS),$(SMALL_MAPS)) -c $< -o $@

BYTECODE_IMAGE ?= localhost:5443/blixt/bytecode:latest
REGISTRY_CA ?=
bytecode-image: bytecode venv ## build the bpfman OCI image from the object and push it to BYTECODE_IMAGE (REGISTRY_CA=ca.crt)
	$(VPY) -m blixt.bytecode_image --object $(BUILD)/blixt.bpf.o --push $(BYTECODE_IMAGE) $(if $(REGISTRY_CA),--ca-file $(REGISTRY_CA))

# bpfman-rpc insists on raising RLIMIT_MEMLOCK; see tests/harness/memlock_shim.c.
$(BUILD)/memlock_shim.so: tests/harness/memlock_shim.c
	@mkdir -p $(BUILD)
	gcc -shared -fPIC -O2 -Wall -Werror -o $@ $< -ldl

# Four pytest sessions: the cluster tiers' bpfman must not meet the bpfman-rpc
# the other tiers keep for their whole session (tests/harness/optin.py);
# tests/cluster_proxy (without kube-proxy) and tests/cluster_operator (bpfman
# run by bpfman-operator) each make a cluster of their own.
CLUSTER_TIERS := tests/cluster_deps tests/images tests/cluster_node tests/cluster
test: deps bytecode $(BUILD)/rrbench ## run every test tier against the real components, then the cluster tiers (root)
	@rc=0; $(VPY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	BLIXT_CLUSTER=1 $(VPY) -m pytest $(CLUSTER_TIERS) $(PYTEST_ARGS) || rc=$$?; \
	BLIXT_CLUSTER=1 $(VPY) -m pytest tests/cluster_proxy $(PYTEST_ARGS) || rc=$$?; \
	BLIXT_CLUSTER=1 $(VPY) -m pytest tests/cluster_operator $(PYTEST_ARGS) || rc=$$?; \
	exit $$rc

unit: venv ## the unprivileged unit tests only
	$(VPY) -m pytest tests/unit $(PYTEST_ARGS)

test-cluster-deps: deps-cluster venv ## check every binary deps-cluster built (tests/cluster_deps alone; also in `make test`)
	BLIXT_CLUSTER=1 $(VPY) -m pytest tests/cluster_deps $(PYTEST_ARGS)

demo: deps ## local single-node setup: apiserver, bpfman, controller, agent, netns pods; traffic through samples/ (root)
	$(VPY) tests/demo.py $(DEMO_ARGS)

conformance: venv ## the upstream Gateway API v1.6.1 suite (GATEWAY-TCP, GATEWAY-UDP) on `make cluster` with blixt deployed; build/conformance-report.yaml and a table (root)
	$(VPY) tests/conformance/upstream.py --workdir $(CLUSTER_DIR) --report $(BUILD)/conformance-report.yaml $(if $(RUN_TEST),--run-test $(RUN_TEST))

conformance-services: deps-cluster images bytecode venv ## Kubernetes' own [sig-network] Services e2e tests on a fresh one-node cluster served by blixt alone (SERVICES_PROXIES="blixt kube-proxy" compares); JUnit, logs and a table in build/conformance-services (root)
	$(VPY) tests/conformance/services.py $(foreach p,$(SERVICES_PROXIES),--proxy $(p)) $(SERVICES_ARGS)

conformance-scenarios: deps ## blixt's own L4 scenarios (tests/conformance, no kubelet), as a pass/fail table (root)
	@mkdir -p $(BUILD)
	-$(VPY) -m pytest tests/conformance -q --junitxml=$(BUILD)/conformance.xml $(PYTEST_ARGS)
	$(VPY) tests/conformance/report.py $(BUILD)/conformance.xml

soak: deps bytecode ## the reliability tier's long runs (tests/reliability with BLIXT_SOAK=1: 2,000,000 fuzzed frames, a 60 s apiserver outage, 10 kills of a 10,000-frontend apply, ...) (root)
	BLIXT_SOAK=1 $(VPY) -m pytest tests/reliability $(PYTEST_ARGS)

bench: bench-dataplane bench-convergence bench-proxies ## every benchmark
	$(VPY) tests/bench/translate_bench.py

bench-convergence: deps bytecode ## p50/p90/p99 from an API change to traffic on the new backend (root)
	$(VPY) tests/bench/convergence.py $(BENCH_ARGS)

bench-proxies: deps bytecode $(BUILD)/blixt-large.bpf.o $(BUILD)/rrbench ## blixt vs kube-proxy (nftables, iptables): programming, RSS, CRR at 10/10k/100k frontends (100k: blixt alone, large build), RR/UDP_RR/STREAM, convergence; tables + plots into tests/bench/README.md (root)
	$(VPY) tests/bench/proxies.py $(BENCH_ARGS)

bench-dataplane: deps bytecode $(BUILD)/rrbench ## TCP_RR/TCP_CRR vs direct veth and nft DNAT; 10k x 10 programming time (root)
	$(VPY) tests/bench/dataplane.py $(BENCH_ARGS)

$(BUILD)/rrbench: tests/bench/rrbench.c
	@mkdir -p $(BUILD)
	gcc -O2 -Wall -Wextra -Werror -pthread -o $@ $<

clean: ## remove build outputs (not the cache in $(BLIXT_CACHE))
	rm -rf $(BUILD)

# Container images without a registry (not part of deps/test yet); BUILD.md "Images".
.PHONY: images test-images
images: deps-apt deps-bpfman deps-cluster ## blixt, bpfman, pause, echo-basic, coredns as docker-archive tarballs in $(BLIXT_CACHE)/images (root)
	@tests/deps/images.sh

test-images: images venv ## check those tarballs: tags, config, entrypoints run from the unpacked images (root)
	$(VPY) -m pytest tests/images $(PYTEST_ARGS)

# A real one-node cluster (not part of deps/test): etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd, kubelet, kube-proxy (nftables) and CoreDNS in a "node" netns,
# a "client" netns beside it (tests/harness/node.py; /work/shared/CLUSTER.md).
.PHONY: cluster cluster-down test-cluster
CLUSTER_DIR ?= /run/blixt-cluster
PROXY ?= kube-proxy
SERVICES_PROXIES ?= blixt
cluster: deps-cluster images bytecode venv ## start the one-node cluster in netns blixt-node (client netns blixt-client; state in CLUSTER_DIR; PROXY=blixt: no kube-proxy) (root)
	$(VPY) tests/harness/node.py up --workdir $(CLUSTER_DIR) --proxy $(PROXY)

cluster-down: venv ## stop `make cluster` and remove everything it made (processes, mounts, netns, cgroups, sysctls, bpfman's programs and dirs) (root)
	$(VPY) tests/harness/node.py down --workdir $(CLUSTER_DIR)

test-cluster: deps-cluster images bytecode venv ## the cluster tiers alone: tests/cluster_node and tests/cluster (blixt deployed, upstream suite), tests/cluster_proxy (no kube-proxy), tests/cluster_operator (under bpfman-operator) (root)
	@rc=0; BLIXT_CLUSTER=1 $(VPY) -m pytest tests/cluster_node tests/cluster $(PYTEST_ARGS) || rc=$$?; \
	BLIXT_CLUSTER=1 $(VPY) -m pytest tests/cluster_proxy $(PYTEST_ARGS) || rc=$$?; \
	BLIXT_CLUSTER=1 $(VPY) -m pytest tests/cluster_operator $(PYTEST_ARGS) || rc=$$?; \
	exit $$rc
