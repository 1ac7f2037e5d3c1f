"""Set and map elements written and deleted over nf_tables netlink, without `nft`.

`nft -f` parses every element as text: 100,000 elements of the output
path's slot maps took it about 2 s, most of a first sync at 10,000
frontends. The kernel takes the same elements as binary in one netlink
batch (one transaction, all or nothing, as `nft -f` sends them) in a small
fraction of that. Only elements go this way; tables, chains and rules stay
with the `nft` CLI (blixt.node.nft), whose text is what an operator reads.

Elements are raw bytes in the kernel's layout: a concatenation puts each
field in its own 32-bit register (zero padded); addresses and ports in
network order, marks and `numgen` results in host order."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import socket
import struct
import sys
import threading
from typing import Iterable

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 16, 17
NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM = 12, 14
NFT_MSG_NEWGEN, NFT_MSG_GETGEN = 15, 16
NFTA_GEN_ID = 1
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
NLMSG_ERROR = 2
NFPROTO_IPV4 = 2
NLA_F_NESTED = 0x8000
# nf_tables.h attribute numbers
SET_ELEM_LIST_TABLE, SET_ELEM_LIST_SET, SET_ELEM_LIST_ELEMENTS = 1, 2, 3
LIST_ELEM = 1
SET_ELEM_KEY, SET_ELEM_DATA = 1, 2
DATA_VALUE, DATA_VERDICT = 1, 2
VERDICT_CODE, VERDICT_CHAIN = 1, 2
NF_DROP, NFT_GOTO = 0, -4

PER_MESSAGE = 1000  # elements per NEWSETELEM message; all messages are one batch
SO_SNDBUFFORCE = 32
TIMEOUT = 60.0
CLONE_NEWNET = 0x40000000


class NetlinkError(OSError):
    """The kernel refused the batch (nothing of it was applied)."""


# -- element encoding ---------------------------------------------------------

def addr(value: int) -> bytes:
    return value.to_bytes(4, "big")


def proto(number: int) -> bytes:
    return bytes((number, 0, 0, 0))


def port(number: int) -> bytes:
    return number.to_bytes(2, "big") + b"\0\0"


def host32(value: int) -> bytes:
    return value.to_bytes(4, sys.byteorder)


class Verdict:
    """A verdict map's data: `goto <chain>`, or drop."""

    __slots__ = ("code", "chain")

    def __init__(self, code: int, chain: str = ""):
        self.code, self.chain = code, chain

    @classmethod
    def parse(cls, text: str) -> "Verdict":
        if text == "drop":
            return cls(NF_DROP)
        verb, _, chain = text.partition(" ")
        if verb != "goto" or not chain:
            raise ValueError(f"verdict {text!r}: only drop and goto <chain> are written over netlink")
        return cls(NFT_GOTO, chain)

    def __repr__(self) -> str:
        return "drop" if self.code == NF_DROP else f"goto {self.chain}"


def _attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * (-n & 3)


def _data(value: bytes | Verdict) -> bytes:
    if isinstance(value, Verdict):
        inner = _attr(VERDICT_CODE, struct.pack("!i", value.code))
        if value.chain:
            inner += _attr(VERDICT_CHAIN, value.chain.encode() + b"\0")
        return _attr(DATA_VERDICT | NLA_F_NESTED, inner)
    return _attr(DATA_VALUE, value)


@functools.lru_cache(maxsize=64)
def _frame(klen: int, dlen: int) -> tuple[bytes, bytes]:
    """The attribute headers around an element's key and value of these
    lengths (multiples of 4: no padding), made once: at 100,000 elements,
    packing each header anew was most of the batch's cost."""
    key_attr = 8 + klen
    data_attr = 8 + dlen if dlen else 0
    head = struct.pack("=HHHHHH", 4 + key_attr + data_attr, LIST_ELEM | NLA_F_NESTED,
                       key_attr, SET_ELEM_KEY | NLA_F_NESTED, 4 + klen, DATA_VALUE)
    mid = struct.pack("=HHHH", data_attr, SET_ELEM_DATA | NLA_F_NESTED, 4 + dlen, DATA_VALUE) if dlen else b""
    return head, mid


def _element(key: bytes, data: bytes | Verdict | None) -> bytes:
    if not len(key) & 3:
        if data is None:
            return _frame(len(key), 0)[0] + key
        if type(data) is bytes and data and not len(data) & 3:
            head, mid = _frame(len(key), len(data))
            return head + key + mid + data
    body = _attr(SET_ELEM_KEY | NLA_F_NESTED, _attr(DATA_VALUE, key))
    if data is not None:
        body += _attr(SET_ELEM_DATA | NLA_F_NESTED, _data(data))
    return _attr(LIST_ELEM | NLA_F_NESTED, body)


def _message(kind: int, flags: int, seq: int, family: int, res_id: int, payload: bytes) -> bytes:
    body = struct.pack("!BBH", family, 0, res_id) + payload
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


# -- the batch ----------------------------------------------------------------

class Elements:
    """Element changes for one table of family ip, sent as one batch: all
    deletions first, then all additions (so an addition may replace what a
    deletion took out, as `nft` scripts do: a map element's value cannot be
    overwritten)."""

    def __init__(self, table: str):
        self.table = table
        self._ops: dict[tuple[int, str], list[bytes]] = {}  # (message type, set) -> encoded elements

    def add(self, set_name: str, items: Iterable[tuple[bytes, bytes | Verdict | None]]) -> None:
        self._ops.setdefault((NFT_MSG_NEWSETELEM, set_name), []).extend(_element(k, v) for k, v in items)

    def delete(self, set_name: str, keys: Iterable[bytes]) -> None:
        self._ops.setdefault((NFT_MSG_DELSETELEM, set_name), []).extend(_element(k, None) for k in keys)

    def __len__(self) -> int:
        return sum(map(len, self._ops.values()))

    def messages(self, seq: int) -> tuple[bytes, dict[int, str]]:
        """The batch (begin, DELSETELEM and NEWSETELEM messages, end), and
        the set each message that asks for an ack writes, by sequence number."""
        table = _attr(SET_ELEM_LIST_TABLE, self.table.encode() + b"\0")
        out = [_message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES, b"")]
        acks = {}
        for (op, name), elems in sorted(self._ops.items(), key=lambda kv: kv[0][0] != NFT_MSG_DELSETELEM):
            head = table + _attr(SET_ELEM_LIST_SET, name.encode() + b"\0")
            flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE if op == NFT_MSG_NEWSETELEM else 0)
            for i in range(0, len(elems), PER_MESSAGE):
                seq += 1
                acks[seq] = f"{name} ({'add' if op == NFT_MSG_NEWSETELEM else 'delete'})"
                listed = _attr(SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, b"".join(elems[i:i + PER_MESSAGE]))
                out.append(_message((NFNL_SUBSYS_NFTABLES << 8) | op, flags, seq, NFPROTO_IPV4, 0, head + listed))
        out.append(_message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 1, 0, NFNL_SUBSYS_NFTABLES, b""))
        return b"".join(out), acks


class Link:
    """A netfilter netlink socket in one namespace, kept between batches
    (closing one took the kernel about 14 ms), dropped after a failure."""

    def __init__(self, netns: str | None):
        self.netns = netns
        self._sock: socket.socket | None = None
        self._seq = 0

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def send(self, elements: Elements) -> None:
        """Apply the changes in one transaction. Raises NetlinkError naming
        the set and the kernel's errno if it refused them: then none was made."""
        if not len(elements):
            return
        batch, acks = elements.messages(self._seq + 1)
        self._seq += len(acks) + 2
        try:
            failed = self._exchange(batch, acks)
        except BaseException:
            self.close()  # its answers would be read as the next batch's
            raise
        if failed is not None:
            self.close()
            code, name = failed
            raise NetlinkError(code, f"nf_tables refused the elements of {elements.table} {name}: "
                                     f"{os.strerror(code)}")

    def generation(self) -> int:
        """The namespace's nf_tables generation: every committed
        transaction, of any table and any writer, moves it on by one."""
        self._seq += 1
        seq = self._seq
        try:
            sock = self._open()
            sock.sendto(_message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, NLM_F_REQUEST | NLM_F_ACK, seq,
                                 socket.AF_UNSPEC, 0, b""), (0, 0))
            gen = None
            while True:
                data = sock.recv(65536)
                off = 0
                while off + 16 <= len(data):
                    length, kind, _, got, _ = struct.unpack_from("=IHHII", data, off)
                    if got == seq and kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN:
                        gen = _u32_attr(data[off + 20:off + length], NFTA_GEN_ID)
                    elif got == seq and kind == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, off + 16)
                        if code:
                            raise NetlinkError(-code, f"nf_tables generation: {os.strerror(-code)}")
                        if gen is None:
                            raise NetlinkError(errno.EPROTO, "nf_tables sent no generation")
                        return gen
                    off += ((length + 3) & ~3) if length else len(data)
        except BaseException:
            self.close()
            raise

    def _open(self) -> socket.socket:
        if self._sock is None:
            self._sock = _socket(self.netns)
            self._sock.settimeout(TIMEOUT)
        return self._sock

    def _exchange(self, batch: bytes, acks: dict[int, str]) -> tuple[int, str] | None:
        sock = self._open()
        size = max(len(batch) + 65536, 1 << 20)  # the kernel takes a batch in one message
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, size)
        except PermissionError:  # without CAP_NET_ADMIN: what net.core.wmem_max allows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        sock.sendto(batch, (0, 0))
        while acks:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                raise NetlinkError(errno.ETIMEDOUT, f"no answer from nf_tables in {TIMEOUT:.0f}s") from None
            off = 0
            while off + 16 <= len(data):
                length, kind, _, seq, _ = struct.unpack_from("=IHHII", data, off)
                if kind == NLMSG_ERROR and seq in acks:
                    (code,) = struct.unpack_from("=i", data, off + 16)
                    if code:
                        return -code, acks[seq]
                    del acks[seq]
                off += ((length + 3) & ~3) if length else len(data)
        return None


def _u32_attr(attrs: bytes, kind: int) -> int | None:
    """A big-endian u32 attribute's value among `attrs`."""
    off = 0
    while off + 4 <= len(attrs):
        length, got = struct.unpack_from("=HH", attrs, off)
        if got & ~NLA_F_NESTED == kind and length >= 8:
            return struct.unpack_from("!I", attrs, off + 4)[0]
        off += max(4, (length + 3) & ~3)
    return None


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _socket(netns: str | None) -> socket.socket:
    """A netfilter netlink socket in `netns`: made in a thread of its own
    that enters the namespace (setns changes the calling thread only), so
    this process's other threads stay where they are."""
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    made: list = []

    def enter() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns into netns {netns}: {os.strerror(e)}")
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER))
        except OSError as e:
            made.append(e)

    t = threading.Thread(target=enter, name=f"netns-{netns}")
    t.start()
    t.join()
    if isinstance(made[0], OSError):
        raise made[0]
    return made[0]


__all__ = ["Elements", "Link", "NetlinkError", "Verdict", "addr", "host32", "port", "proto"]
