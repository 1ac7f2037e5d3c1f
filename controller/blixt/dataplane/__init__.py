"""The node dataplane: BPF map layouts and access, the nftables NAT table, and
the manager that loads programs through bpfman and keeps both in step."""
