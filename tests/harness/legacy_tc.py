"""The one bpfman failure that turns the legacy TC tests into an xfail.

bpfman 0.6.0 loads a legacy TC program as a freplace (BPF_PROG_TYPE_EXT)
extension of a test dispatcher (bpfman src/lib.rs, `load_program`: for
Program::Tc, `TcDispatcher::get_test()` loads and pins a sched_cls
dispatcher, then `ext.load(fd, "compat_test")`). Some kernels refuse every
BTF-targeted load with EPERM and an empty verifier log. aya 0.13.1 reports
that as `ProgramError::LoadError { io_error, verifier_log }`, bpfman wraps
it as `BpfmanError::BpfProgramError` inside `ProgramsLoadFailure`, whose
message is `one or more programs failed to load: {0:?}` (bpfman
src/errors.rs), and bpfman-rpc sends that Display text as the ABORTED
status's message (bpfman-api src/bin/rpc/rpc.rs, `Status::aborted(format!("{e}"))`).

That text is the same whether the extension or the dispatcher (also a
BPF_PROG_LOAD) was refused, so the caller also says whether the test
dispatcher is pinned: get_test() pins it only after loading it, so a pinned
dispatcher means the refused load was the extension's.
"""

from __future__ import annotations

import pathlib

# Where bpfman 0.6.0 pins that test dispatcher (bpfman src/lib.rs,
# directories::RTDIR_FS_TEST_TC_DISPATCHER).
TEST_TC_DISPATCHER_PIN = pathlib.Path("/run/bpfman/fs/dispatcher-test/tc")

# The whole message for one program refused with EPERM (errno 1) and an empty
# verifier log: Rust's derived Debug of the error, with io::Error's Debug of
# an OS error. Anything else, even another EPERM, is a different failure.
FREPLACE_EPERM = ('one or more programs failed to load: [BpfProgramError(LoadError { io_error: '
                  'Os { code: 1, kind: PermissionDenied, message: "Operation not permitted" }, '
                  'verifier_log:  })]')


class UnexpectedLoadFailure(AssertionError):
    """bpfman failed to load the legacy TC program for another reason."""


def is_freplace_eperm(message: str) -> bool:
    """Whether bpfman's message is the EPERM-with-empty-log load refusal."""
    return message.strip() == FREPLACE_EPERM


def refusal_reason(message: str, dispatcher_loaded: bool) -> str:
    """The xfail reason, quoting bpfman, when `message` is the kernel's
    refusal of the freplace load; raises UnexpectedLoadFailure otherwise."""
    if not is_freplace_eperm(message):
        raise UnexpectedLoadFailure(f"bpfman could not load the legacy TC program, and not because "
                                    f"the kernel refused its freplace load with EPERM: {message}")
    if not dispatcher_loaded:
        raise UnexpectedLoadFailure(f"bpfman's BPF_PROG_LOAD failed with EPERM but its TC test dispatcher "
                                    f"is not pinned at {TEST_TC_DISPATCHER_PIN}, so the refused program "
                                    f"may be the dispatcher itself, not the freplace extension: {message}")
    return ("this kernel refuses freplace (BPF_PROG_TYPE_EXT) loads with EPERM, so bpfman cannot load "
            "legacy TC programs behind its dispatcher (the dispatcher itself loaded); bpfman said: " + message)
