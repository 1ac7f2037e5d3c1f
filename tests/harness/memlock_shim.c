/* LD_PRELOAD shim for bpfman-rpc in sandboxes without CAP_SYS_RESOURCE.
 *
 * bpfman 0.6.0 refuses every request unless it can raise RLIMIT_MEMLOCK to
 * infinity ("must be privileged to run bpfman"). Since Linux 5.11 BPF memory
 * is charged to the memory cgroup and RLIMIT_MEMLOCK no longer limits it, so
 * where the hard limit cannot be raised this shim reports that one request as
 * done. Every other call passes through untouched. The test harness uses it
 * only when the hard limit is finite and cannot be raised. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/resource.h>

typedef int (*setrlimit_fn)(__rlimit_resource_t, const struct rlimit *);

int setrlimit(__rlimit_resource_t resource, const struct rlimit *rlim)
{
	static setrlimit_fn real;
	int rc;

	if (!real)
		real = (setrlimit_fn)dlsym(RTLD_NEXT, "setrlimit");
	rc = real(resource, rlim);
	if (rc != 0 && errno == EPERM && resource == RLIMIT_MEMLOCK)
		return 0;
	return rc;
}
