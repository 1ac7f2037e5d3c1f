"""The node's side of the dataplane: adapters that do I/O (libbpf maps, the
nft table, conntrack) and the manager that drives them and bpfman from the
pure plan in blixt.dataplane."""
