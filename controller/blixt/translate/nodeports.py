"""Which of a node's addresses serve NodePorts: kube-proxy's
--nodeport-addresses, with the meaning its nftables mode gives it (v1.35).

* "primary" (the default): the node's primary IPs, its Node object's
  InternalIPs of the family;
* CIDRs: every address of the node inside one of them (IPv4 ones only here);
  0.0.0.0/0, or no IPv4 CIDR at all, matches every address;
* never 127.0.0.0/8: nftables mode serves no NodePorts on localhost (that
  needs route_localnet, which only iptables mode sets).
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

PRIMARY = "primary"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


def parse(option: Iterable[str]) -> str | tuple[ipaddress.IPv4Network, ...]:
    """The flag's values -> PRIMARY or the IPv4 CIDRs; raises ValueError on a bad one."""
    values = [v.strip() for v in option if v.strip()]
    if not values or values == [PRIMARY]:
        return PRIMARY
    if PRIMARY in values:
        raise ValueError(f"--nodeport-addresses: {PRIMARY!r} cannot be combined with CIDRs")
    nets = []
    for v in values:
        try:
            net = ipaddress.ip_network(v, strict=False)
        except ValueError as e:
            raise ValueError(f"--nodeport-addresses: {v!r} is not a CIDR") from e
        if isinstance(net, ipaddress.IPv4Network):
            nets.append(net)
    return tuple(nets)


def addresses(option: str | tuple[ipaddress.IPv4Network, ...], node_addresses: Iterable,
              primary: Iterable) -> frozenset[ipaddress.IPv4Address]:
    """node_addresses: every IPv4 address on the node's interfaces; primary:
    the Node object's InternalIPs."""
    local = {ipaddress.IPv4Address(a) for a in node_addresses}
    if option == PRIMARY:
        chosen = {ipaddress.IPv4Address(a) for a in primary if ipaddress.ip_address(a).version == 4}
    elif not option or any(n.prefixlen == 0 for n in option):
        chosen = local
    else:
        chosen = {a for a in local if any(a in n for n in option)}
    return frozenset(a for a in chosen if a not in LOOPBACK)
