/* blixt dataplane: map layouts and constants shared by the C programs and,
 * through the compiled object's BTF, checked against the Python side.
 * Every struct here is part of the ABI between agent and bytecode. */
#ifndef BLIXT_H
#define BLIXT_H

#include <linux/types.h>

/* Per-program packet counters, indexed by enum blixt_counter. */
enum blixt_counter {
	BLIXT_CNT_SEEN = 0,
	BLIXT_CNT_MAX,
};

#endif /* BLIXT_H */
