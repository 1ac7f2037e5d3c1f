"""blixt: a layer-4 load balancer for Kubernetes with an eBPF data plane loaded by bpfman."""

__version__ = "0.1.0"
