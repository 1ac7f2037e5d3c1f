"""blixt.node.nftnl's encoding: the bytes nf_tables takes for set elements
(the kernel test is tests/dataplane/test_nft.py, which compares what the
kernel then lists with what `nft` itself wrote)."""

from __future__ import annotations

import struct

import pytest

from blixt.node import nftnl

pytestmark = pytest.mark.unit


def test_an_element_is_nested_attributes_with_register_padded_fields():
    key = nftnl.addr(0x0A600001) + nftnl.port(80) + nftnl.host32(3)  # ip daddr . tcp dport . numgen
    value = nftnl.addr(0x0AC80001) + nftnl.port(8080)
    assert key == bytes.fromhex("0a600001") + bytes.fromhex("00500000") + (3).to_bytes(4, "little")
    got = nftnl._element(key, value)
    want = (struct.pack("=HH", 4 + 20 + 16, 1 | 0x8000)  # NFTA_LIST_ELEM, nested
            + struct.pack("=HH", 20, 1 | 0x8000) + struct.pack("=HH", 16, 1) + key  # KEY { DATA_VALUE }
            + struct.pack("=HH", 16, 2 | 0x8000) + struct.pack("=HH", 12, 1) + value)  # DATA { DATA_VALUE }
    assert got == want


@pytest.mark.parametrize("key, data", [
    (b"\x01\x02\x03\x04", None),
    (b"\x06\x00\x00\x00\x00\x50\x00\x00", None),
    (bytes(12), bytes(8)),
    (bytes(12), nftnl.Verdict.parse("goto out_s_tcp_2")),
    (bytes(8), nftnl.Verdict.parse("drop")),
    (b"\x01\x02", b"\x03"),  # unaligned: the general path pads
])
def test_the_precomputed_frame_gives_the_general_encoding(key, data):
    body = nftnl._attr(nftnl.SET_ELEM_KEY | nftnl.NLA_F_NESTED, nftnl._attr(nftnl.DATA_VALUE, key))
    if data is not None:
        body += nftnl._attr(nftnl.SET_ELEM_DATA | nftnl.NLA_F_NESTED, nftnl._data(data))
    assert nftnl._element(key, data) == nftnl._attr(nftnl.LIST_ELEM | nftnl.NLA_F_NESTED, body)
    assert len(nftnl._element(key, data)) % 4 == 0


def test_a_batch_deletes_before_it_adds_and_names_each_message():
    e = nftnl.Elements("blixt")
    e.add("backends", [(bytes(4), bytes(8))] * 1500)
    e.delete("backends", [bytes(4)])
    batch, acks = e.messages(100)
    kinds, off = [], 0
    while off < len(batch):
        length, kind, flags, seq, _ = struct.unpack_from("=IHHII", batch, off)
        kinds.append((kind, seq))
        off += length
    nft = nftnl.NFNL_SUBSYS_NFTABLES << 8
    assert kinds == [(nftnl.NFNL_MSG_BATCH_BEGIN, 100), (nft | nftnl.NFT_MSG_DELSETELEM, 101),
                     (nft | nftnl.NFT_MSG_NEWSETELEM, 102), (nft | nftnl.NFT_MSG_NEWSETELEM, 103),
                     (nftnl.NFNL_MSG_BATCH_END, 104)]
    assert acks == {101: "backends (delete)", 102: "backends (add)", 103: "backends (add)"}


def test_only_drop_and_goto_are_verdicts_it_writes():
    assert repr(nftnl.Verdict.parse("goto refuse")) == "goto refuse"
    for text in ("accept", "jump x", "goto"):
        with pytest.raises(ValueError, match="only drop and goto"):
            nftnl.Verdict.parse(text)
