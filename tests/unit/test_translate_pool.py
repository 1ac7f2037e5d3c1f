import ipaddress

import pytest

from blixt.translate import PoolError, parse_pool
from blixt.translate.pool import pool_from_config_map

pytestmark = pytest.mark.unit

A = ipaddress.IPv4Address


def test_cidr_range_and_single_address_with_comments_and_commas():
    pool = parse_pool("10.0.0.0/30, 10.0.1.5-10.0.1.6\n# a comment\n192.168.1.1  # trailing\n")
    assert pool.ranges == [(int(A("10.0.0.0")), int(A("10.0.0.3"))),
                           (int(A("10.0.1.5")), int(A("10.0.1.6"))),
                           (int(A("192.168.1.1")), int(A("192.168.1.1")))]
    assert A("10.0.0.3") in pool and A("10.0.1.6") in pool and A("10.0.1.7") not in pool


def test_overlapping_and_adjacent_entries_merge():
    pool = parse_pool("10.0.0.4-10.0.0.9 10.0.0.0/30 10.0.0.8/29")
    assert pool.ranges == [(int(A("10.0.0.0")), int(A("10.0.0.15")))]


def test_cidr_with_host_bits_is_taken_as_its_network():
    assert parse_pool("10.0.0.5/30").ranges == [(int(A("10.0.0.4")), int(A("10.0.0.7")))]


@pytest.mark.parametrize("text, fragment", [
    ("", "no addresses"),
    ("  # only a comment", "no addresses"),
    ("10.0.0.300", "10.0.0.300"),
    ("fd00::/64", "fd00::/64"),
    ("10.0.0.9-10.0.0.1", "backwards"),
    ("10.0.0.1-", "10.0.0.1-"),
    ("10.0.0.0/33", "10.0.0.0/33"),
    ("example.com", "example.com"),
])
def test_bad_pools_name_the_problem(text, fragment):
    with pytest.raises(PoolError, match=fragment.replace("(", r"\(")):
        parse_pool(text)


def test_config_map_needs_the_addresses_key():
    with pytest.raises(PoolError, match="addresses"):
        pool_from_config_map({"data": {"other": "10.0.0.1"}})
    with pytest.raises(PoolError, match="addresses"):
        pool_from_config_map({})
    assert A("10.0.0.1") in pool_from_config_map({"data": {"addresses": "10.0.0.1"}})


def test_lowest_free_skips_taken_and_crosses_ranges():
    pool = parse_pool("10.0.0.1-10.0.0.2, 10.0.0.10")
    taken = {A("10.0.0.1")}
    first = pool.lowest_free(taken)
    assert first == A("10.0.0.2")
    taken.add(first)
    second = pool.lowest_free(taken)
    assert second == A("10.0.0.10")
    taken.add(second)
    assert pool.lowest_free(taken) is None


def test_rewind_finds_addresses_given_back():
    pool = parse_pool("10.0.0.1-10.0.0.2")
    taken = {A("10.0.0.1"), A("10.0.0.2")}
    assert pool.lowest_free(taken) is None
    taken.discard(A("10.0.0.1"))
    pool.rewind()
    assert pool.lowest_free(taken) == A("10.0.0.1")
