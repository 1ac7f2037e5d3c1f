"""Test harness: starts the real components (bpfman-rpc, etcd, kube-apiserver,
a TLS OCI registry, network namespaces) for the tests and for `make demo`."""
