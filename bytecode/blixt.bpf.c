// SPDX-License-Identifier: GPL-2.0
/* blixt TC programs: classify IPv4 TCP/UDP packets addressed to a service,
 * pick a backend, and write the decision into skb->mark. The kernel's
 * conntrack and the agent's nftables table do the translation; the table acts
 * only on packets to frontends it knows, so a mark alone never triggers NAT.
 *
 * bpfman v0.6.0 accepts only "classifier" sections and names programs by C
 * function name. Both programs live in one object so one bpfman Load shares
 * the maps. Neither ever drops: a decision is a mark, and every packet goes on
 * to the next program (TC_ACT_PIPE behind bpfman's dispatcher, TCX_NEXT).
 *
 * Map values are read through pointers that a concurrent update may recycle
 * (a hash map reuses a replaced element), so every value the decision uses
 * is copied to the stack once and validated there. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "blixt.h"

/* TCX return codes; older uapi headers do not name them. */
#define BLIXT_TCX_NEXT (-1)

#define IP_OFFSET 0x1fff
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

/* One load of a field: the compiler may not re-read it from the map later. */
#define READ_ONCE(x) (*(const volatile typeof(x) *)&(x))

/* Load-time configuration, overridden through bpfman's global data. */
const volatile struct blixt_config blixt_cfg = {
	.id_shift = BLIXT_DEFAULT_ID_SHIFT,
	.id_mask = BLIXT_DEFAULT_ID_MASK,
	.masq_mark = BLIXT_DEFAULT_MASQ_MARK,
	.reject_mark = BLIXT_DEFAULT_REJECT_MARK,
};

/* Hash maps are not preallocated: memory follows what is programmed, not the
 * capacity. The LRU map (affinity) is always preallocated by the kernel. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BLIXT_MAX_SERVICES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct blixt_service_key);
	__type(value, struct blixt_service);
} blixt_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BLIXT_MAX_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct blixt_slot_key);
	__type(value, struct blixt_slot);
} blixt_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BLIXT_MAX_MEMBERS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct blixt_member_key);
	__type(value, struct blixt_slot);
} blixt_members SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BLIXT_MAX_AFFINITY);
	__type(key, struct blixt_affinity_key);
	__type(value, struct blixt_affinity);
} blixt_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, BLIXT_MAX_SERVICES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct blixt_stats);
} blixt_stats SEC(".maps");

/* The cluster's pod CIDRs (the agent's --cluster-cidr): kube-proxy's
 * ClusterCIDR local-traffic detector. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, BLIXT_MAX_POD_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct blixt_cidr_key);
	__type(value, __u32);
} blixt_pod_cidrs SEC(".maps");

/* loadBalancerSourceRanges of services with BLIXT_SVC_SOURCE_RANGES. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, BLIXT_MAX_SOURCE_RANGES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct blixt_source_range_key);
	__type(value, __u32);
} blixt_source_ranges SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BLIXT_MAX_LOCAL_ADDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __be32);
	__type(value, __u32);
} blixt_local_addrs SEC(".maps");

struct packet {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 new_conn;        /* TCP SYN without ACK; always 1 for UDP (see pick) */
};

/* Parse from the network header (BPF_HDR_START_NET), so the same code works
 * on Ethernet devices and on layer-3 devices (ipip, wireguard, tun) whose
 * packets start with the IP header; through bpf_skb_load_bytes_relative so
 * non-linear skbs work too. Returns 0 for a first (or only) IPv4 fragment of
 * TCP or UDP with a complete transport header. */
static __always_inline int parse(struct __sk_buff *skb, struct packet *pkt)
{
	struct iphdr ip;
	__be16 ports[2];
	__u8 tcp[20];
	__u32 l4;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return -1;
	if (bpf_skb_load_bytes_relative(skb, 0, &ip, sizeof(ip), BPF_HDR_START_NET))
		return -1;
	if (ip.version != 4 || ip.ihl < 5)
		return -1;
	/* Later fragments carry no ports; conntrack reassembles before NAT. */
	if (ip.frag_off & bpf_htons(IP_OFFSET))
		return -1;
	l4 = ip.ihl * 4;
	if (ip.protocol == IPPROTO_TCP) {
		/* A TCP header shorter than 20 bytes is not ours to judge. */
		if (bpf_skb_load_bytes_relative(skb, l4, tcp, sizeof(tcp), BPF_HDR_START_NET))
			return -1;
		__builtin_memcpy(ports, tcp, sizeof(ports));
		pkt->new_conn = (tcp[13] & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	} else if (ip.protocol == IPPROTO_UDP) {
		if (bpf_skb_load_bytes_relative(skb, l4, ports, sizeof(ports), BPF_HDR_START_NET))
			return -1;
		pkt->new_conn = 1;
	} else {
		return -1;
	}
	pkt->saddr = ip.saddr;
	pkt->daddr = ip.daddr;
	pkt->sport = ports[0];
	pkt->dport = ports[1];
	pkt->proto = ip.protocol;
	return 0;
}

static __always_inline __u32 mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* Same flow, same hash: every packet of a connection picks the same slot. */
static __always_inline __u32 flow_hash(const struct packet *p)
{
	__u32 h = mix32(p->proto + 0x9e3779b9);

	h = mix32(h ^ p->saddr);
	h = mix32(h ^ p->daddr);
	h = mix32(h ^ (((__u32)p->sport << 16) | p->dport));
	return h;
}

/* The entry behind v copied into *svc, if it is still key's: 0 when it does
 * not validate (an element recycled for another service mid-update). */
static __always_inline int copy_service(const struct blixt_service *v, const struct blixt_service_key *key,
					struct blixt_service *svc)
{
	svc->key_addr = READ_ONCE(v->key_addr);
	svc->key_port = READ_ONCE(v->key_port);
	svc->key_proto = READ_ONCE(v->key_proto);
	svc->key_scope = READ_ONCE(v->key_scope);
	asm volatile("" ::: "memory");
	svc->id = READ_ONCE(v->id);
	svc->gen = READ_ONCE(v->gen);
	svc->slot_count = READ_ONCE(v->slot_count);
	svc->flags = READ_ONCE(v->flags);
	svc->affinity_timeout = READ_ONCE(v->affinity_timeout);
	svc->affinity_id = READ_ONCE(v->affinity_id);
	asm volatile("" ::: "memory");
	/* The key again, after the fields: an element recycled for another
	 * service while we copied it fails one of the two checks. Nothing
	 * reads *v again. */
	if (svc->key_addr != key->addr || svc->key_port != key->port || svc->key_proto != key->proto ||
	    svc->key_scope != key->scope || READ_ONCE(v->key_addr) != key->addr ||
	    READ_ONCE(v->key_port) != key->port || READ_ONCE(v->key_proto) != key->proto ||
	    READ_ONCE(v->key_scope) != key->scope)
		return 0;
	return svc->id != 0 && svc->slot_count <= BLIXT_MAX_SLOTS_PER_SERVICE;
}

static __always_inline int from_pod_cidr(__be32 addr)
{
	struct blixt_cidr_key k = { .prefixlen = 32, .addr = addr };

	return bpf_map_lookup_elem(&blixt_pod_cidrs, &k) != NULL;
}

/* The service for this packet, copied into *svc; 0 when there is none or its
 * entry does not validate. *from_pod: the source is in blixt_pod_cidrs (only
 * looked up when the entry's flags need it). */
static __always_inline int find_service(const struct packet *p, struct blixt_service *svc, int *from_pod)
{
	struct blixt_service_key key = {
		.addr = p->daddr,
		.port = p->dport,
		.proto = p->proto,
		.scope = BLIXT_SCOPE_ANY,
	};
	struct blixt_service *v = bpf_map_lookup_elem(&blixt_services, &key);

	if (!v) {
		if (!bpf_map_lookup_elem(&blixt_local_addrs, &p->daddr))
			return 0;
		key.addr = 0;
		v = bpf_map_lookup_elem(&blixt_services, &key);
		if (!v)
			return 0;
	}
	if (!copy_service(v, &key, svc))
		return 0;
	*from_pod = (svc->flags & (BLIXT_SVC_POD_VARIANT | BLIXT_SVC_MASQ_OFF_POD)) && from_pod_cidr(p->saddr);
	if (!((svc->flags & BLIXT_SVC_POD_VARIANT) && *from_pod))
		return 1;
	key.scope = BLIXT_SCOPE_POD;
	v = bpf_map_lookup_elem(&blixt_services, &key);
	return v && copy_service(v, &key, svc);
}

static __always_inline int source_allowed(__u32 service_id, __be32 saddr)
{
	struct blixt_source_range_key k = { .prefixlen = 64, .service_id = service_id, .addr = saddr };

	return bpf_map_lookup_elem(&blixt_source_ranges, &k) != NULL;
}

static __always_inline void count(__u32 service_id, struct __sk_buff *skb, int new_flow)
{
	struct blixt_stats *st = bpf_map_lookup_elem(&blixt_stats, &service_id);

	if (!st) {
		struct blixt_stats zero = {};

		bpf_map_update_elem(&blixt_stats, &service_id, &zero, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&blixt_stats, &service_id);
		if (!st)
			return;
	}
	/* Per-CPU values: no other CPU writes this copy. */
	st->packets += 1;
	st->bytes += skb->len;
	st->new_flows += new_flow;
}

/* A slot or member entry copied to *to, if it is one of service_id's. */
static __always_inline int copy_slot(const struct blixt_slot *from, __u32 service_id, struct blixt_slot *to)
{
	if (!from)
		return 0;
	to->service_id = READ_ONCE(from->service_id);
	asm volatile("" ::: "memory");
	to->backend_id = READ_ONCE(from->backend_id);
	to->flags = READ_ONCE(from->flags);
	to->addr = READ_ONCE(from->addr);
	asm volatile("" ::: "memory");
	return to->backend_id != 0 && to->service_id == service_id &&
	       READ_ONCE(from->service_id) == service_id;
}

/* The backend for this packet in *out; 0 when a slot table update is
 * mid-flip. Client-IP affinity as kube-proxy keeps it: consulted, refreshed
 * and created only by new connections, so a long flow neither extends nor
 * moves it. The program cannot see conntrack, so every UDP packet counts as
 * new (a UDP flow keeps its client's affinity alive while it sends). */
static __always_inline int pick(const struct blixt_service *svc, const struct packet *pkt,
				__u64 now, struct blixt_slot *out)
{
	struct blixt_slot_key sk = {
		.service_id = svc->id,
		.gen = svc->gen,
		.slot = flow_hash(pkt) % svc->slot_count,
	};
	struct blixt_affinity_key ak = {
		.client = pkt->saddr,
		.service_id = svc->affinity_id ? svc->affinity_id : svc->id,
	};
	int sticky = (svc->flags & BLIXT_SVC_AFFINITY) && pkt->new_conn;
	int kept = 0;

	if (sticky) {
		struct blixt_affinity *aff = bpf_map_lookup_elem(&blixt_affinity, &ak);

		if (aff) {
			__u64 seen = READ_ONCE(aff->last_seen_ns);
			struct blixt_member_key mk = {
				.service_id = svc->id,
				.backend_id = READ_ONCE(aff->slot.backend_id),
			};

			/* Members carry current flags, so a backend that became
			 * remote is masqueraded from now on. */
			kept = now - seen < (__u64)svc->affinity_timeout * 1000000000ull &&
			       copy_slot(bpf_map_lookup_elem(&blixt_members, &mk), svc->id, out);
		}
	}
	if (!kept && !copy_slot(bpf_map_lookup_elem(&blixt_slots, &sk), svc->id, out))
		return 0;
	if (sticky) {  /* refresh a kept entry, or start one */
		struct blixt_affinity fresh = { .slot = *out, .last_seen_ns = now };

		bpf_map_update_elem(&blixt_affinity, &ak, &fresh, BPF_ANY);
	}
	return 1;
}

static __always_inline void classify(struct __sk_buff *skb)
{
	struct packet pkt = {};
	struct blixt_service svc;
	struct blixt_slot slot;
	__u32 field = blixt_cfg.id_mask | blixt_cfg.masq_mark | blixt_cfg.reject_mark;
	__u32 drop = blixt_cfg.reject_mark | blixt_cfg.masq_mark;
	__u32 decision;
	int from_pod = 0;
	__u64 now;

	if (parse(skb, &pkt))
		return;
	if (!find_service(&pkt, &svc, &from_pod))
		return;
	now = bpf_ktime_get_ns();
	count(svc.id, skb, pkt.proto == IPPROTO_TCP && pkt.new_conn);
	if ((svc.flags & BLIXT_SVC_SOURCE_RANGES) && !source_allowed(svc.id, pkt.saddr)) {
		decision = drop;  /* kube-proxy drops, before NAT, what the ranges do not allow */
	} else if (svc.slot_count == 0) {
		decision = (svc.flags & BLIXT_SVC_DROP_EMPTY) ? drop : blixt_cfg.reject_mark;
	} else {
		if (!pick(&svc, &pkt, now, &slot)) {
			/* The table flipped between the two lookups and the old
			 * generation is gone: read the service again, once. */
			if (!find_service(&pkt, &svc, &from_pod) || svc.slot_count == 0)
				return;
			if (!pick(&svc, &pkt, now, &slot))
				return;
		}
		decision = (slot.backend_id << blixt_cfg.id_shift) & blixt_cfg.id_mask;
		if ((slot.flags & BLIXT_SLOT_MASQ) || slot.addr == pkt.saddr || (svc.flags & BLIXT_SVC_MASQ_ALL) ||
		    ((svc.flags & BLIXT_SVC_MASQ_OFF_POD) && !from_pod))
			decision |= blixt_cfg.masq_mark;
	}
	skb->mark = (skb->mark & ~field) | decision;
}

/* Legacy TC behind bpfman's dispatcher: TC_ACT_PIPE lets later programs run. */
SEC("classifier/blixt_tc")
int blixt_tc(struct __sk_buff *skb)
{
	classify(skb);
	return TC_ACT_PIPE;
}

/* TCX: TCX_NEXT hands the packet to the next program in the chain. */
SEC("classifier/blixt_tcx")
int blixt_tcx(struct __sk_buff *skb)
{
	classify(skb);
	return BLIXT_TCX_NEXT;
}

char LICENSE[] SEC("license") = "GPL";
