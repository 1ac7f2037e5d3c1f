"""blixt.translate.nodeports: kube-proxy's --nodeport-addresses, nftables mode."""

from __future__ import annotations

import ipaddress

import pytest

from blixt.translate import nodeports as N

pytestmark = pytest.mark.unit

NODE = ["127.0.0.1", "10.0.0.5", "192.168.1.5", "172.17.0.1"]
PRIMARY = ["10.0.0.5", "fd00::5"]


def pick(*values):
    return sorted(str(a) for a in N.addresses(N.parse(values), NODE, PRIMARY))


def test_the_default_is_the_primary_ips():
    assert N.parse([]) == N.PRIMARY
    assert pick() == pick("primary") == ["10.0.0.5"]


def test_cidrs_select_the_node_addresses_inside_them():
    assert pick("192.168.0.0/16", "172.16.0.0/12") == ["172.17.0.1", "192.168.1.5"]
    assert pick(" 10.0.0.5/32 ") == ["10.0.0.5"]


@pytest.mark.parametrize("values", [("0.0.0.0/0",), ("10.0.0.0/8", "0.0.0.0/0"), ("fd00::/64",)],
                         ids=["zero cidr", "zero among others", "no ipv4 cidr"])
def test_match_all_is_every_address_but_loopback(values):
    assert pick(*values) == ["10.0.0.5", "172.17.0.1", "192.168.1.5"]


def test_localhost_is_never_a_nodeport_address():
    assert pick("127.0.0.0/8") == []


@pytest.mark.parametrize("values", [("primary", "10.0.0.0/8"), ("10.0.0.0/33",), ("nonsense",)])
def test_bad_values_are_refused_with_the_flag_named(values):
    with pytest.raises(ValueError, match="--nodeport-addresses"):
        N.parse(values)


def test_addresses_are_ipv4_addresses():
    assert all(isinstance(a, ipaddress.IPv4Address) for a in N.addresses(N.PRIMARY, NODE, PRIMARY))
