"""A peer behind a layer-3 (tun) device, run inside the namespace that holds
the device: `python -m harness.tunpeer DEV SRC DST PORT --sport P`.

It writes one UDP datagram SRC:P -> DST:PORT into the device, so the kernel
receives it on DEV as from a tunnel (no Ethernet header: TC sees the IP
header first), and prints as JSON the first UDP reply to SRC:P that the
kernel routes back out of DEV. Only tun devices can be made on these
machines (no ipip, gre or wireguard modules), hence a userspace peer.
"""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import json
import os
import select
import struct
import sys
import time

from harness import packets

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def exchange(dev: str, src: str, dst: str, port: int, sport: int, timeout: float) -> dict:
    fd = open_tun(dev)
    try:
        os.write(fd, packets.ipv4(src, dst, 17, packets.udp(sport, port, b"hello\n")))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            pkt = os.read(fd, 65535)
            if len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != 17:
                continue
            ihl = (pkt[0] & 0xF) * 4
            psrc, pdst = (str(ipaddress.IPv4Address(pkt[o:o + 4])) for o in (12, 16))
            s_port, d_port = struct.unpack("!HH", pkt[ihl:ihl + 4])
            if pdst == src and d_port == sport:
                return {"from": f"{psrc}:{s_port}", "payload": pkt[ihl + 8:].decode(errors="replace").strip()}
        return {"from": None, "payload": None}
    finally:
        os.close(fd)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="harness.tunpeer")
    p.add_argument("dev")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("port", type=int)
    p.add_argument("--sport", type=int, default=40000)
    p.add_argument("--timeout", type=float, default=3.0)
    a = p.parse_args(argv)
    json.dump(exchange(a.dev, a.src, a.dst, a.port, a.sport, a.timeout), sys.stdout)


if __name__ == "__main__":
    main()
