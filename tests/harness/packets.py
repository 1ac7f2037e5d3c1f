"""Crafted Ethernet frames for BPF_PROG_TEST_RUN."""

from __future__ import annotations

import ipaddress
import struct

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
SRC_MAC = bytes.fromhex("020000000001")
DST_MAC = bytes.fromhex("020000000002")


def eth(proto: int, payload: bytes) -> bytes:
    return DST_MAC + SRC_MAC + struct.pack("!H", proto) + payload


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes, options: bytes = b"",
         frag_offset: int = 0, more_fragments: bool = False, ttl: int = 64) -> bytes:
    if len(options) % 4:
        raise ValueError("IPv4 options must be padded to 4 bytes")
    ihl = 5 + len(options) // 4
    flags_frag = (0x2000 if more_fragments else 0) | (frag_offset & 0x1FFF)
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(payload), 1, flags_frag,
                         ttl, proto, 0, ipaddress.IPv4Address(src).packed,
                         ipaddress.IPv4Address(dst).packed) + options
    header = header[:10] + struct.pack("!H", _csum(header)) + header[12:]
    return header + payload


def tcp(sport: int, dport: int, flags: int = 0x02, payload: bytes = b"") -> bytes:
    # Checksum left zero: the classifier never checks it.
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes = b"x") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp_frame(src: str, dst: str, sport: int, dport: int, flags: int = 0x02, **ip_kw) -> bytes:
    return eth(ETH_P_IP, ipv4(src, dst, 6, tcp(sport, dport, flags), **ip_kw))


def udp_frame(src: str, dst: str, sport: int, dport: int, **ip_kw) -> bytes:
    return eth(ETH_P_IP, ipv4(src, dst, 17, udp(sport, dport), **ip_kw))


def icmp_frame(src: str, dst: str) -> bytes:
    return eth(ETH_P_IP, ipv4(src, dst, 1, struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"ping"))


def arp_frame() -> bytes:
    return eth(ETH_P_ARP, bytes(28))


def ipv6_frame() -> bytes:
    return eth(ETH_P_IPV6, bytes(40) + tcp(1234, 80))
