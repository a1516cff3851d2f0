"""The runtime's keys: an order's partition is the same everywhere, and on a cluster each
partition's stream, dead letters and leases share one hash tag."""

from __future__ import annotations

from collections import Counter

import pytest
from redis.crc import key_slot

from adapters.redis.keys import RuntimeKeys


def test_one_plain_partition_keeps_the_first_names() -> None:
    keys = RuntimeKeys("orderd:")
    assert (keys.orders_stream, keys.dead_stream, keys.lease("o1")) == (
        "orderd:stream:orders",
        "orderd:stream:dead",
        "orderd:lease:o1",
    )
    assert keys.layout == "1 plain"


def test_an_order_keeps_its_partition_and_its_keys_share_the_partitions_slot() -> None:
    keys = RuntimeKeys("orderd:", tagged=True, partitions=4)
    for n in range(200):
        order = f"ord_{n}"
        k = keys.partition(order)
        # crc32, not Python's hash: the same in every process and every run.
        assert k == RuntimeKeys("orderd:", tagged=True, partitions=4).partition(order)
        slot = key_slot(keys.orders_stream_of(k).encode())
        assert key_slot(keys.lease(order).encode()) == slot
        assert key_slot(keys.dead_stream_of(k).encode()) == slot
    assert keys.orders_stream_of(2) == "orderd:{part.2}:stream:orders"
    assert keys.layout == "4 tagged"


def test_orders_spread_over_the_partitions() -> None:
    keys = RuntimeKeys("orderd:", tagged=True, partitions=4)
    counts = Counter(keys.partition(f"ord_{n:06d}") for n in range(4000))
    assert sorted(counts) == [0, 1, 2, 3]
    assert min(counts.values()) > 800  # about a quarter each


def test_partitions_need_tagged_keys() -> None:
    with pytest.raises(ValueError, match="tagged"):
        RuntimeKeys("orderd:", partitions=2)
    with pytest.raises(ValueError, match="tagged"):
        RuntimeKeys("orderd:", tagged=True, partitions=0)
