"""Print the conformance run as a table of scenario -> result, from pytest's
JUnit XML: `python tests/conformance/report.py build/conformance.xml`.

The scenarios are blixt's own (tests/conformance), not the upstream Gateway
API conformance suite; each is named after the upstream test it mirrors."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET

# Our scenario -> the name of the upstream Gateway API v1.6.1 conformance test
# it mirrors ("(blixt)": no upstream test of that name).
NAMED_AFTER = {
    "test_invalid_backend_ref_nonexistent": "{kind}InvalidBackendRefNonexistent",
    "test_invalid_cross_namespace_backend_ref": "{kind}InvalidCrossNamespaceBackendRef",
    "test_invalid_listener_protocol": "{kind}InvalidNon{proto}Listener",
    "test_multiple_routes_attachment": "{kind}MultipleRoutesAttachment",
    "test_parent_ref_attach_all": "{kind}ParentRefAttachAll",
    "test_parent_ref_port_and_section_name": "{kind}ParentRefPortAndSectionName",
    "test_reference_grant": "{kind}ReferenceGrant",
    "test_weighted_routing": "{kind}WeightedRouting",
    "test_not_allowed_by_listeners": "{kind}NotAllowedByListeners",
    "test_udproute_simple": "UDPRoute",
    "test_gatewayclass_observed_generation_bump": "GatewayClassObservedGenerationBump",
    "test_gateway_observed_generation_bump": "GatewayObservedGenerationBump",
    "test_gateway_listener_unsupported_protocol": "GatewayListenerUnsupportedProtocol",
    "test_gateway_invalid_parameters_ref": "GatewayInvalidParametersRef",
    "test_gatewayclass_invalid_parameters_ref": "(blixt) GatewayClassInvalidParametersRef",
    "test_gateway_static_addresses": "GatewayStaticAddresses",
}


def rows(path: str) -> list[tuple[str, str, str]]:
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        m = re.fullmatch(r"(\w+)(?:\[(\w+)\])?", case.get("name", ""))
        func, param = (m[1], m[2]) if m else (case.get("name"), None)
        kind = param or ""
        name = NAMED_AFTER.get(func, func).format(kind=kind, proto=kind.replace("Route", ""))
        if case.find("failure") is not None or case.find("error") is not None:
            result = "FAIL"
        elif case.find("skipped") is not None:
            result = "XFAIL" if "xfail" in (case.find("skipped").get("type") or "") else "SKIP"
        else:
            result = "PASS"
        out.append((name, result, f"{case.get('time', '0')}s"))
    return sorted(out)


def main() -> int:
    table = rows(sys.argv[1])
    width = max(len(n) for n, _, _ in table)
    print("\nblixt's own L4 scenarios (tests/conformance), not the upstream Gateway API suite;")
    print("each is named after the Gateway API v1.6.1 conformance test it mirrors.\n")
    heading = "blixt scenario"
    width = max(width, len(heading))
    print(f"{heading:{width}}  result  time")
    for name, result, t in table:
        print(f"{name:{width}}  {result:6}  {t}")
    passed = sum(r == "PASS" for _, r, _ in table)
    print(f"\n{passed} passed, {len(table) - passed} failed")
    return 0 if passed == len(table) else 1


if __name__ == "__main__":
    raise SystemExit(main())
