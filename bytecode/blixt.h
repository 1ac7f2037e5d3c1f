/* blixt dataplane ABI: every map key/value layout and constant shared by the
 * TC programs and the agent. The Python mirrors (controller/blixt/dataplane/
 * layout.py) are checked against this object's BTF by a test, so change a
 * struct here and there together. All structs are naturally aligned with
 * explicit padding: no implicit holes, so a zeroed key hashes the same in C
 * and in Python. Addresses and ports are in network byte order. */
#ifndef BLIXT_H
#define BLIXT_H

#include <linux/types.h>

/* Map capacities (max_entries). A build may set the first three (clang
 * -D..., as `make bytecode-large` does): the agent reads them back from the
 * loaded maps. The defaults keep an empty dataplane's locked memory small. */
#ifndef BLIXT_MAX_SERVICES     /* blixt_services and blixt_stats */
#define BLIXT_MAX_SERVICES     65536
#endif
#ifndef BLIXT_MAX_SLOTS
#define BLIXT_MAX_SLOTS        (1 << 19)
#endif
#ifndef BLIXT_MAX_MEMBERS
#define BLIXT_MAX_MEMBERS      (1 << 18)
#endif
#define BLIXT_MAX_AFFINITY     32768
#define BLIXT_MAX_LOCAL_ADDRS  256
#define BLIXT_MAX_POD_CIDRS    64
#define BLIXT_MAX_SOURCE_RANGES 16384
/* Slots one service may use; the program refuses a larger slot_count, so a
 * torn or corrupt service entry can never index past its table. */
#define BLIXT_MAX_SLOTS_PER_SERVICE 4096

/* A service is found by destination address, port and protocol. An entry
 * with addr 0 is a wildcard: it matches any address in blixt_local_addrs
 * (NodePort-style: every node address). */
struct blixt_service_key {
	__be32 addr;
	__be16 port;
	__u8 proto;           /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 scope;           /* BLIXT_SCOPE_*: which sources the entry serves */
};

/* Scopes. A BLIXT_SCOPE_ANY entry serves every source; one with
 * BLIXT_SVC_POD_VARIANT hands sources in blixt_pod_cidrs to its
 * BLIXT_SCOPE_POD twin (same addr, port, proto): kube-proxy sends pod traffic
 * to an externalTrafficPolicy Local service's external address to all
 * endpoints, as if it went out to a load balancer and came back. */
#define BLIXT_SCOPE_ANY  0
#define BLIXT_SCOPE_POD  1

/* Service flags. */
#define BLIXT_SVC_AFFINITY      (1u << 0)  /* client-IP affinity, see affinity_timeout */
#define BLIXT_SVC_MASQ_ALL      (1u << 1)  /* masquerade every flow (externalTrafficPolicy
                                            * Cluster's external addresses, --masquerade-all) */
#define BLIXT_SVC_MASQ_OFF_POD  (1u << 2)  /* masquerade sources outside blixt_pod_cidrs
                                            * (a ClusterIP reached from off the cluster) */
#define BLIXT_SVC_DROP_EMPTY    (1u << 3)  /* no slots: drop, not reject (a Local policy
                                            * whose endpoints are all on other nodes) */
#define BLIXT_SVC_SOURCE_RANGES (1u << 4)  /* only sources in blixt_source_ranges under
                                            * this id; others are dropped */
#define BLIXT_SVC_POD_VARIANT   (1u << 5)  /* pod sources use the BLIXT_SCOPE_POD twin */

struct blixt_service {
	__u32 id;             /* >= 1; keys the slots, members, affinity and stats */
	__u32 gen;            /* generation of the slot table in use: updates write
	                       * slots under a new gen, then flip this field */
	__u32 slot_count;     /* 0: no backends, the packet gets the reject bit */
	__u32 flags;          /* BLIXT_SVC_* */
	__u32 affinity_timeout; /* seconds, with BLIXT_SVC_AFFINITY */
	__u32 affinity_id;    /* client-IP affinity is kept under this id, so the
	                       * frontends of one Service port share it, as
	                       * kube-proxy's per-endpoint sets are shared; 0: id */
	/* The entry's own key. A hash map hands a replaced element to the next
	 * update at once, so a reader can find another service's value behind
	 * its pointer; it checks these against the key it looked up. */
	__be32 key_addr;
	__be16 key_port;
	__u8 key_proto;
	__u8 key_scope;
};

struct blixt_slot_key {
	__u32 service_id;
	__u32 gen;
	__u32 slot;           /* 0 .. slot_count-1 */
};

/* Slot flags. */
#define BLIXT_SLOT_MASQ  (1u << 0)  /* masquerade: a remote backend (hairpin is
                                     * found from addr, per packet) */

/* What a slot (and an affinity or member entry) resolves to. */
struct blixt_slot {
	__u32 backend_id;     /* >= 1; the nftables map turns it into addr . port */
	__u32 flags;          /* BLIXT_SLOT_* */
	__u32 service_id;     /* the service it belongs to: checked like key_* above */
	__be32 addr;          /* the backend's address: a client that is the chosen
	                       * backend (hairpin) is masqueraded, or the reply would
	                       * bypass the reverse NAT */
};

/* Backends currently in a service: an affinity entry is honoured only while
 * its backend is still a member. */
struct blixt_member_key {
	__u32 service_id;
	__u32 backend_id;
};

struct blixt_affinity_key {
	__be32 client;
	__u32 service_id;
};

struct blixt_affinity {
	struct blixt_slot slot;
	__u64 last_seen_ns;   /* bpf_ktime_get_ns() */
};

/* Longest-prefix-match keys. prefixlen counts bits of what follows it. */
struct blixt_cidr_key {
	__u32 prefixlen;      /* 0..32 */
	__be32 addr;
};

/* A loadBalancerSourceRanges entry: prefixlen = 32 (the service id) + the
 * range's prefix length; looked up with 64. */
struct blixt_source_range_key {
	__u32 prefixlen;
	__u32 service_id;
	__be32 addr;
};

/* Per-service, per-CPU counters. new_flows counts TCP connection attempts
 * (SYN without ACK); a UDP packet cannot tell the program whether conntrack
 * already knows its flow, so UDP services count packets and bytes only. */
struct blixt_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
};

/* Where the decision goes in skb->mark. Set at load time through bpfman's
 * global data (variable blixt_cfg). The defaults stay clear of kube-proxy's
 * 0x4000/0x8000 and of the low 12 bits other CNIs use: backend ids take the
 * top 16 bits (65535 backends per node). */
struct blixt_config {
	__u32 id_shift;       /* backend id goes to (id << id_shift) & id_mask */
	__u32 id_mask;
	__u32 masq_mark;      /* one bit: masquerade */
	__u32 reject_mark;    /* one bit: no backends, reject; with masq_mark
	                       * (a pair no balanced flow carries): drop */
};

#define BLIXT_DEFAULT_ID_SHIFT    16
#define BLIXT_DEFAULT_ID_MASK     0xffff0000u
#define BLIXT_DEFAULT_MASQ_MARK   0x00001000u
#define BLIXT_DEFAULT_REJECT_MARK 0x00002000u

#endif /* BLIXT_H */
