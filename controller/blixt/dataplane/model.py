"""The desired dataplane of one node: what the Gateway/Service translation
produces and the dataplane manager applies. Plain values, no I/O."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Iterable

from .layout import PROTOCOLS
MAX_WEIGHT = 1_000_000


def _addr(value) -> ipaddress.IPv4Address:
    if type(value) is ipaddress.IPv4Address:  # already parsed: the translation's usual case
        return value
    addr = ipaddress.ip_address(value)
    if not isinstance(addr, ipaddress.IPv4Address):
        raise ValueError(f"only IPv4 is supported, got {value}")
    return addr


def _port(value: int, what: str) -> int:
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{what} port must be 1..65535, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True, order=True)
class Backend:
    """An endpoint: where conntrack DNATs to. masquerade: SNAT to the node
    (remote backend under externalTrafficPolicy Cluster, or hairpin)."""

    address: ipaddress.IPv4Address
    port: int
    weight: int = 1
    masquerade: bool = False

    def __post_init__(self):
        object.__setattr__(self, "address", _addr(self.address))
        _port(self.port, f"backend {self.address}")
        if not isinstance(self.weight, int) or not 0 <= self.weight <= MAX_WEIGHT:
            raise ValueError(f"backend {self.address}:{self.port} weight must be 0..{MAX_WEIGHT}, got {self.weight!r}")

    @property
    def endpoint(self) -> tuple[ipaddress.IPv4Address, int]:
        return (self.address, self.port)


SCOPES = ("any", "pod")
# Who is masqueraded besides what Backend.masquerade and hairpin ask for.
MASQUERADE = ("", "all", "off-pod")


@dataclasses.dataclass(frozen=True)
class Service:
    """A frontend: packets to address:port/protocol are balanced over backends.
    address None is a wildcard: any of the node's local addresses (NodePort).
    No backends with weight > 0: new connections are rejected (dropped with
    drop_when_empty).

    scope "pod": serves, in place of the scope "any" entry with the same
    address, port and protocol, the sources in Dataplane.pod_cidrs.
    masquerade "all": every flow; "off-pod": sources outside the pod CIDRs.
    source_ranges: when set, other sources are dropped.
    affinity_group: entries naming the same group (a Service port's
    frontends) share client-IP affinity."""

    address: ipaddress.IPv4Address | None
    port: int
    protocol: str
    backends: tuple[Backend, ...] = ()
    affinity_timeout: int = 0  # seconds of client-IP affinity; 0 = none
    name: str = ""  # for logs and metrics, e.g. "gateway/ns/name/listener"
    scope: str = "any"
    masquerade: str = ""
    drop_when_empty: bool = False
    source_ranges: tuple[ipaddress.IPv4Network, ...] = ()
    affinity_group: str = ""  # entries with the same group share client-IP affinity

    def __post_init__(self):
        if self.address is not None:
            object.__setattr__(self, "address", _addr(self.address))
        if self.scope not in SCOPES:
            raise ValueError(f"service {self.name or self.address} scope must be one of {SCOPES}, got {self.scope!r}")
        if self.masquerade not in MASQUERADE:
            raise ValueError(f"service {self.name or self.address} masquerade must be one of {MASQUERADE}")
        ranges = tuple(ipaddress.ip_network(r) for r in self.source_ranges)
        if any(not isinstance(r, ipaddress.IPv4Network) for r in ranges):
            raise ValueError(f"service {self.name or self.address} source ranges must be IPv4")
        object.__setattr__(self, "source_ranges", tuple(sorted(set(ranges))))
        _port(self.port, f"service {self.name or self.address}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"service {self.key_text} protocol must be tcp or udp, got {self.protocol!r}")
        object.__setattr__(self, "backends", tuple(self.backends))
        seen = set()
        for b in self.backends:
            ep = (b.address._ip, b.port)  # an int: IPv4Address hashes in Python code
            if ep in seen:
                raise ValueError(f"service {self.key_text} lists backend {b.address}:{b.port} twice")
            seen.add(ep)
        if not isinstance(self.affinity_timeout, int) or not 0 <= self.affinity_timeout <= 86400:
            raise ValueError(f"service {self.key_text} affinity_timeout must be 0..86400 s")
        # `key` with the address as an int, for sets and dicts over many
        # services: an IPv4Address hashes in Python code, an int in C.
        object.__setattr__(self, "fast_key", (int(self.address) if self.address is not None else -1,
                                              self.port, self.protocol, self.scope))

    @property
    def key(self) -> tuple[ipaddress.IPv4Address | None, int, str, str]:
        return (self.address, self.port, self.protocol, self.scope)

    @property
    def key_text(self) -> str:
        scope = " (from pods)" if self.scope == "pod" else ""
        return f"{self.address or '*'}:{self.port}/{self.protocol}{scope}"


@dataclasses.dataclass(frozen=True)
class Dataplane:
    """local_addresses: what a wildcard (NodePort) service matches.
    pod_cidrs: the cluster's pod networks (kube-proxy's --cluster-cidr)."""

    services: tuple[Service, ...] = ()
    local_addresses: frozenset[ipaddress.IPv4Address] = frozenset()
    pod_cidrs: frozenset[ipaddress.IPv4Network] = frozenset()

    def __post_init__(self):
        object.__setattr__(self, "services", tuple(self.services))
        object.__setattr__(self, "local_addresses", frozenset(_addr(a) for a in self.local_addresses))
        cidrs = frozenset(ipaddress.ip_network(c) for c in self.pod_cidrs)
        if any(not isinstance(c, ipaddress.IPv4Network) for c in cidrs):
            raise ValueError("pod CIDRs must be IPv4")
        object.__setattr__(self, "pod_cidrs", cidrs)
        seen = set()
        for s in self.services:
            if s.fast_key in seen:
                raise ValueError(f"service {s.key_text} appears twice")
            seen.add(s.fast_key)
        for s in self.services:
            if s.scope == "pod" and (*s.fast_key[:3], "any") not in seen:
                raise ValueError(f"service {s.key_text} has no entry for other sources")

    @classmethod
    def of(cls, services: Iterable[Service], local_addresses: Iterable = (), pod_cidrs: Iterable = ()) -> "Dataplane":
        return cls(tuple(services), frozenset(local_addresses), frozenset(pod_cidrs))
