"""Lease tokens: of the width the scripts read, and never the same twice while it matters."""

from __future__ import annotations

import redis.asyncio as aioredis

from adapters.redis.keys import RuntimeKeys
from adapters.redis.leases import TOKEN_CHARS, Leases


def leases() -> Leases:
    # No call reaches a server: tokens are made here.
    client = aioredis.Redis.from_url("redis://127.0.0.1:1")
    return Leases(client, RuntimeKeys("t"), lease_ms=1000)


def test_tokens_are_of_the_width_the_scripts_read_and_hexadecimal() -> None:
    token = leases().new_token()
    assert len(token) == TOKEN_CHARS
    int(token, 16)


def test_a_process_never_gives_the_same_token_twice_in_a_long_run() -> None:
    book = leases()
    tokens = [book.new_token() for _ in range(200_000)]
    assert len(set(tokens)) == len(tokens)


def test_two_processes_give_different_tokens() -> None:
    first, second = leases(), leases()
    assert {first.new_token() for _ in range(100)}.isdisjoint(
        second.new_token() for _ in range(100)
    )
