// SPDX-License-Identifier: GPL-2.0
/* blixt TC programs: classify IPv4 TCP/UDP packets addressed to a service,
 * pick a backend, and write the decision into skb->mark. The kernel's
 * conntrack and the agent's nftables table do the translation.
 *
 * bpfman v0.6.0 accepts only "classifier" sections and names programs by C
 * function name. Both programs live in one object so one bpfman Load shares
 * the maps. Neither ever drops: a decision is a mark, and every packet goes on
 * to the next program (TC_ACT_PIPE behind bpfman's dispatcher, TCX_NEXT). */
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

#define IP_MF     0x2000
#define IP_OFFSET 0x1fff
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

/* Load-time configuration, overridden through bpfman's global data. */
const volatile struct blixt_config blixt_cfg = {
	.id_shift = BLIXT_DEFAULT_ID_SHIFT,
	.id_mask = BLIXT_DEFAULT_ID_MASK,
	.masq_mark = BLIXT_DEFAULT_MASQ_MARK,
	.reject_mark = BLIXT_DEFAULT_REJECT_MARK,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BLIXT_MAX_SERVICES);
	__type(key, struct blixt_service_key);
	__type(value, struct blixt_service);
} blixt_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BLIXT_MAX_SLOTS);
	__type(key, struct blixt_slot_key);
	__type(value, struct blixt_slot);
} blixt_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BLIXT_MAX_MEMBERS);
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
	__type(key, __u32);
	__type(value, struct blixt_stats);
} blixt_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BLIXT_MAX_LOCAL_ADDRS);
	__type(key, __be32);
	__type(value, __u32);
} blixt_local_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BLIXT_MAX_UDP_FLOWS);
	__type(key, struct blixt_flow_key);
	__type(value, __u64);
} blixt_udp_flows SEC(".maps");

struct packet {
	struct blixt_flow_key flow;
	__u8 tcp_flags;
};

/* Parse through bpf_skb_load_bytes so non-linear skbs work too. Returns 0 for
 * a first (or only) IPv4 fragment of TCP or UDP with its ports readable. */
static __always_inline int parse(struct __sk_buff *skb, struct packet *pkt)
{
	__be16 proto;
	struct iphdr ip;
	__be16 ports[2];
	__u32 l4;

	if (bpf_skb_load_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, sizeof(proto)))
		return -1;
	if (proto != bpf_htons(ETH_P_IP))
		return -1;
	if (bpf_skb_load_bytes(skb, sizeof(struct ethhdr), &ip, sizeof(ip)))
		return -1;
	if (ip.version != 4 || ip.ihl < 5)
		return -1;
	/* Later fragments carry no ports; conntrack reassembles before NAT. */
	if (ip.frag_off & bpf_htons(IP_OFFSET))
		return -1;
	if (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP)
		return -1;
	l4 = sizeof(struct ethhdr) + ip.ihl * 4;
	if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)))
		return -1;
	pkt->tcp_flags = 0;
	if (ip.protocol == IPPROTO_TCP) {
		/* A TCP header shorter than 20 bytes is not ours to judge. */
		if (bpf_skb_load_bytes(skb, l4 + 13, &pkt->tcp_flags, 1))
			return -1;
		if (l4 + 20 > skb->len)
			return -1;
	}
	pkt->flow.saddr = ip.saddr;
	pkt->flow.daddr = ip.daddr;
	pkt->flow.sport = ports[0];
	pkt->flow.dport = ports[1];
	pkt->flow.proto = ip.protocol;
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
static __always_inline __u32 flow_hash(const struct blixt_flow_key *f)
{
	__u32 h = mix32(f->proto + 0x9e3779b9);

	h = mix32(h ^ f->saddr);
	h = mix32(h ^ f->daddr);
	h = mix32(h ^ (((__u32)f->sport << 16) | f->dport));
	return h;
}

static __always_inline struct blixt_service *find_service(const struct blixt_flow_key *f)
{
	struct blixt_service_key key = {
		.addr = f->daddr,
		.port = f->dport,
		.proto = f->proto,
	};
	struct blixt_service *svc = bpf_map_lookup_elem(&blixt_services, &key);

	if (svc)
		return svc;
	if (!bpf_map_lookup_elem(&blixt_local_addrs, &f->daddr))
		return NULL;
	key.addr = 0;
	return bpf_map_lookup_elem(&blixt_services, &key);
}

static __always_inline int is_new_flow(const struct packet *pkt, __u64 now)
{
	__u64 *last;

	if (pkt->flow.proto == IPPROTO_TCP)
		return (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	last = bpf_map_lookup_elem(&blixt_udp_flows, &pkt->flow);
	if (last && now - *last < BLIXT_UDP_FLOW_IDLE_NS) {
		*last = now;
		return 0;
	}
	bpf_map_update_elem(&blixt_udp_flows, &pkt->flow, &now, BPF_ANY);
	return 1;
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

/* The backend for this packet, or NULL when a slot table update is mid-flip. */
static __always_inline const struct blixt_slot *
pick(const struct blixt_service *svc, const struct packet *pkt, __u64 now)
{
	struct blixt_slot_key sk = {
		.service_id = svc->id,
		.gen = svc->gen,
		.slot = flow_hash(&pkt->flow) % svc->slot_count,
	};
	struct blixt_affinity_key ak = {
		.client = pkt->flow.saddr,
		.service_id = svc->id,
	};
	const struct blixt_slot *slot;

	if (svc->flags & BLIXT_SVC_AFFINITY) {
		struct blixt_affinity *aff = bpf_map_lookup_elem(&blixt_affinity, &ak);

		if (aff && now - aff->last_seen_ns < (__u64)svc->affinity_timeout * 1000000000ull) {
			struct blixt_member_key mk = {
				.service_id = svc->id,
				.backend_id = aff->slot.backend_id,
			};
			/* Members carry current flags, so a backend that became
			 * remote is masqueraded from now on. */
			const struct blixt_slot *member = bpf_map_lookup_elem(&blixt_members, &mk);

			if (member) {
				aff->last_seen_ns = now;
				return member;
			}
		}
	}
	slot = bpf_map_lookup_elem(&blixt_slots, &sk);
	if (slot && (svc->flags & BLIXT_SVC_AFFINITY)) {
		struct blixt_affinity fresh = { .slot = *slot, .last_seen_ns = now };

		bpf_map_update_elem(&blixt_affinity, &ak, &fresh, BPF_ANY);
	}
	return slot;
}

static __always_inline void classify(struct __sk_buff *skb)
{
	struct packet pkt = {};
	struct blixt_service *svc;
	const struct blixt_slot *slot;
	__u32 field = blixt_cfg.id_mask | blixt_cfg.masq_mark | blixt_cfg.reject_mark;
	__u32 decision;
	__u64 now;

	if (parse(skb, &pkt))
		return;
	svc = find_service(&pkt.flow);
	if (!svc)
		return;
	now = bpf_ktime_get_ns();
	count(svc->id, skb, is_new_flow(&pkt, now));
	if (svc->slot_count == 0) {
		decision = blixt_cfg.reject_mark;
	} else {
		slot = pick(svc, &pkt, now);
		if (!slot) {
			/* The table flipped between the two lookups and the old
			 * generation is gone: read the service again, once. */
			svc = find_service(&pkt.flow);
			if (!svc || svc->slot_count == 0)
				return;
			slot = pick(svc, &pkt, now);
			if (!slot)
				return;
		}
		decision = (slot->backend_id << blixt_cfg.id_shift) & blixt_cfg.id_mask;
		if (slot->flags & BLIXT_SLOT_MASQ)
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
