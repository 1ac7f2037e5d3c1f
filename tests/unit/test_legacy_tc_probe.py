"""The legacy TC probe xfails only on the kernel's refusal of bpfman's
freplace load; every other failure, EPERM or not, must fail it."""

import pytest

from harness import legacy_tc

pytestmark = pytest.mark.unit

# The message bpfman-rpc 0.6.0 returns when BPF_PROG_LOAD of the extension
# fails with EPERM and an empty verifier log (see harness/legacy_tc.py).
REFUSED = ('one or more programs failed to load: [BpfProgramError(LoadError { io_error: Os { code: 1, '
           'kind: PermissionDenied, message: "Operation not permitted" }, verifier_log:  })]')

OTHER_EPERMS = {
    # The verifier ran and refused the program: a bug of ours, not the kernel's policy.
    "verifier log": ('one or more programs failed to load: [BpfProgramError(LoadError { io_error: Os { code: 1, '
                     'kind: PermissionDenied, message: "Operation not permitted" }, verifier_log: 0: R1=ctx() '
                     'R10=fp0\n; int blixt_tc(struct __sk_buff *skb)\nR2 pointer comparison prohibited })]'),
    # Looking up the dispatcher's BTF, not loading the extension.
    "btf lookup": ('one or more programs failed to load: [BpfProgramError(SyscallError(SyscallError { call: '
                   '"bpf_btf_get_fd_by_id", io_error: Os { code: 1, kind: PermissionDenied, '
                   'message: "Operation not permitted" } }))]'),
    # Pinning, after a successful load.
    "pin": ('one or more programs failed to load: [UnableToPinProgram(SyscallError(SyscallError { call: '
            '"BPF_OBJ_PIN", io_error: Os { code: 1, kind: PermissionDenied, message: "Operation not permitted" } }))]'),
    # Opening bpfman's pinned test dispatcher, before the extension is loaded.
    "dispatcher pin open": ('one or more programs failed to load: [BpfProgramError(SyscallError(SyscallError { '
                            'call: "bpf_obj_get", io_error: Os { code: 1, kind: PermissionDenied, '
                            'message: "Operation not permitted" } }))]'),
    # EACCES, the verifier's usual refusal, is PermissionDenied too but not EPERM.
    "EACCES": ('one or more programs failed to load: [BpfProgramError(LoadError { io_error: Os { code: 13, '
               'kind: PermissionDenied, message: "Permission denied" }, verifier_log:  })]'),
    # Another errno from the same load.
    "EINVAL": ('one or more programs failed to load: [BpfProgramError(LoadError { io_error: Os { code: 22, '
               'kind: InvalidInput, message: "Invalid argument" }, verifier_log:  })]'),
    # Two programs refused: not the single-program probe's request.
    "two programs": ('one or more programs failed to load: [' + REFUSED.split("[", 1)[1][:-1] + ", "
                     + REFUSED.split("[", 1)[1]),
}


def test_the_refusal_matches_and_is_quoted():
    assert legacy_tc.is_freplace_eperm(REFUSED)
    reason = legacy_tc.refusal_reason(REFUSED, dispatcher_loaded=True)
    assert "freplace (BPF_PROG_TYPE_EXT)" in reason
    assert reason.endswith("bpfman said: " + REFUSED)


@pytest.mark.parametrize("name", sorted(OTHER_EPERMS))
def test_other_failures_do_not_match_and_raise(name):
    message = OTHER_EPERMS[name]
    assert not legacy_tc.is_freplace_eperm(message)
    with pytest.raises(legacy_tc.UnexpectedLoadFailure) as exc:
        legacy_tc.refusal_reason(message, dispatcher_loaded=True)
    assert message in str(exc.value)


def test_refusal_without_a_loaded_dispatcher_raises():
    # The same text, but the sched_cls dispatcher was never pinned: its own
    # load may be the one refused, which is not the refusal the xfail names.
    with pytest.raises(legacy_tc.UnexpectedLoadFailure, match="dispatcher"):
        legacy_tc.refusal_reason(REFUSED, dispatcher_loaded=False)
