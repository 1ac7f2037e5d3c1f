// SPDX-License-Identifier: GPL-2.0
/* blixt TC programs. bpfman v0.6.0 accepts only SEC("classifier") sections,
 * and names programs by C function name. Both programs live in one object so
 * a single bpfman Load shares the maps between them. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "blixt.h"

/* TCX return codes (linux/bpf.h names them only in newer uapi headers). */
#define BLIXT_TCX_NEXT (-1)

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BLIXT_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} blixt_counters SEC(".maps");

static __always_inline void count_seen(void)
{
	__u32 key = BLIXT_CNT_SEEN;
	__u64 *v = bpf_map_lookup_elem(&blixt_counters, &key);

	if (v)
		*v += 1;
}

/* Legacy TC behind bpfman's dispatcher: TC_ACT_PIPE lets later programs run. */
SEC("classifier/blixt_tc")
int blixt_tc(struct __sk_buff *skb)
{
	count_seen();
	return TC_ACT_PIPE;
}

/* TCX: TCX_NEXT hands the packet to the next program in the chain. */
SEC("classifier/blixt_tcx")
int blixt_tcx(struct __sk_buff *skb)
{
	count_seen();
	return BLIXT_TCX_NEXT;
}

char LICENSE[] SEC("license") = "GPL";
