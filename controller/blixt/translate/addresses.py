"""Address assignment across all of our Gateways.

Order of precedence, each step over Gateways oldest first: requested static
addresses (a clash goes to the older Gateway), then pool addresses that
Gateways already hold in status (so addresses do not move), then the lowest
free pool address for whatever is still missing. Addresses are unique
across our Gateways whatever their class, so no two Gateways share a VIP."""

from __future__ import annotations

import dataclasses
import ipaddress

from .pool import Pool


@dataclasses.dataclass
class Request:
    key: tuple[str, str]
    static: list[str]  # values of IPAddress entries, spec order
    dynamic: int  # how many pool addresses
    pool: Pool | None
    held: list[str]  # status.addresses values now


@dataclasses.dataclass
class Assigned:
    addresses: list[str] = dataclasses.field(default_factory=list)
    reason: str = ""  # "" when assigned, else AddressNotUsable / AddressNotAssigned
    message: str = ""


def _ipv4(value: str) -> ipaddress.IPv4Address | str:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    if not isinstance(addr, ipaddress.IPv4Address):
        return f"{value} is IPv6; blixt serves IPv4 only"
    return addr


def assign(requests: list[Request]) -> dict:
    """requests oldest first; returns key -> Assigned."""
    owner: dict[ipaddress.IPv4Address, tuple[str, str]] = {}
    out = {r.key: Assigned() for r in requests}
    mine: dict[tuple[str, str], list[ipaddress.IPv4Address]] = {r.key: [] for r in requests}

    for r in requests:
        addrs, errors = [], []
        for value in dict.fromkeys(r.static):
            a = _ipv4(value)
            if isinstance(a, str):
                errors.append(a)
            elif a in owner:
                errors.append(f"{a} is already used by Gateway {owner[a][0]}/{owner[a][1]}")
            else:
                addrs.append(a)
        if errors:
            out[r.key] = Assigned([], "AddressNotUsable", "; ".join(errors))
            continue
        for a in addrs:
            owner[a] = r.key
        mine[r.key] = addrs

    dynamic = [r for r in requests if r.dynamic and not out[r.key].reason]
    wanting = {}
    for r in dynamic:
        kept = []
        for value in r.held:
            a = _ipv4(value)
            if len(kept) < r.dynamic and r.pool and not isinstance(a, str) and a in r.pool and a not in owner:
                owner[a] = r.key
                kept.append(a)
        mine[r.key] = mine[r.key] + kept
        wanting[r.key] = r.dynamic - len(kept)

    for r in dynamic:
        got = []
        for _ in range(wanting[r.key]):
            a = r.pool.lowest_free(owner) if r.pool else None
            if a is None:
                break
            owner[a] = r.key
            got.append(a)
        if len(got) < wanting[r.key]:
            # Give everything back so younger Gateways may still fit.
            for a in mine[r.key] + got:
                owner.pop(a, None)
            for p in {id(q.pool): q.pool for q in dynamic if q.pool}.values():
                p.rewind()
            msg = ("the GatewayClass has no address pool (parametersRef) and the Gateway requests no address"
                   if r.pool is None else "the address pool is exhausted")
            out[r.key] = Assigned([], "AddressNotAssigned", msg)
            continue
        mine[r.key] = mine[r.key] + got

    for r in requests:
        if not out[r.key].reason:
            out[r.key].addresses = [str(a) for a in mine[r.key]]
    return out
