"""Address pools, configured in a ConfigMap.

A GatewayClass may point `spec.parametersRef` at a core/v1 ConfigMap
(`group: ""`, `kind: ConfigMap`, `namespace` required); a Gateway may point
`spec.infrastructure.parametersRef` at a ConfigMap in its own namespace,
whose pool then replaces the class's for that Gateway. Format:

    apiVersion: v1
    kind: ConfigMap
    metadata: {name: blixt-pool, namespace: blixt-system}
    data:
      addresses: |
        10.10.0.0/28            # every address of the CIDR, .0 and .15 too
        10.10.1.10-10.10.1.20   # an inclusive range
        10.10.2.7               # one address

Entries are IPv4 only, separated by commas, spaces or newlines; `#` starts a
comment. The key `addresses` is required and must name at least one
address. Gateways that request no address (or an IPAddress entry without a
value) get one from the pool: the address they hold in status if it is
still in the pool and free, otherwise the lowest free one."""

from __future__ import annotations

import bisect
import ipaddress
import re

POOL_KEY = "addresses"


class PoolError(ValueError):
    pass


class Pool:
    """Sorted, merged, inclusive ranges of IPv4 addresses as integers."""

    def __init__(self, ranges: list[tuple[int, int]]):
        merged: list[list[int]] = []
        for lo, hi in sorted(ranges):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self.ranges = [(lo, hi) for lo, hi in merged]
        self._starts = [lo for lo, _ in self.ranges]
        self._cursor = 0  # see lowest_free

    def __contains__(self, addr: ipaddress.IPv4Address) -> bool:
        n = int(addr)
        i = bisect.bisect_right(self._starts, n) - 1
        return i >= 0 and n <= self.ranges[i][1]

    def rewind(self) -> None:
        """Forget the cursor: needed after taken addresses are given back."""
        self._cursor = 0

    def lowest_free(self, taken: set[ipaddress.IPv4Address]) -> ipaddress.IPv4Address | None:
        """The lowest address not in taken. Within one translation addresses
        are only ever taken, never freed, so a cursor that skips what was
        taken keeps a thousand allocations linear."""
        for lo, hi in self.ranges:
            n = max(lo, self._cursor)
            while n <= hi:
                addr = ipaddress.IPv4Address(n)
                if addr not in taken:
                    self._cursor = n
                    return addr
                n += 1
        self._cursor = 1 << 32
        return None


def _entry(text: str) -> tuple[int, int]:
    try:
        if "/" in text:
            net = ipaddress.IPv4Network(text, strict=False)
            return int(net.network_address), int(net.broadcast_address)
        if "-" in text:
            a, b = (ipaddress.IPv4Address(p.strip()) for p in text.split("-", 1))
            if int(a) > int(b):
                raise PoolError(f"range {text!r} runs backwards")
            return int(a), int(b)
        a = ipaddress.IPv4Address(text)
        return int(a), int(a)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError) as e:
        if isinstance(e, PoolError):
            raise
        raise PoolError(f"{text!r} is not an IPv4 address, CIDR or a-b range") from None


def parse_pool(text: str) -> Pool:
    """Parse the `addresses` value; raises PoolError naming the bad entry."""
    words = []
    for line in text.splitlines():
        words += [w for w in re.split(r"[,\s]+", line.split("#", 1)[0]) if w]
    if not words:
        raise PoolError("no addresses listed")
    return Pool([_entry(w) for w in words])


def pool_from_config_map(cm: dict) -> Pool:
    data = cm.get("data") or {}
    if POOL_KEY not in data:
        raise PoolError(f"data has no {POOL_KEY!r} key")
    return parse_pool(str(data[POOL_KEY]))
