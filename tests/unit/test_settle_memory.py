"""The daemon's collector settings once it has started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from daemon.run import settle_memory


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_what_startup_made_is_left_out_of_collections() -> None:
    kept = [object() for _ in range(10)], {"startup": ["state"]}
    young, older, oldest = gc.get_threshold()
    settle_memory()
    assert gc.get_freeze_count() > 0
    # Frozen: in none of the generations a collection walks.
    walked = {id(o) for generation in range(3) for o in gc.get_objects(generation)}
    assert gc.is_tracked(kept)
    assert id(kept) not in walked
    assert gc.get_threshold() == (20_000, older, oldest)
    assert young < 20_000
