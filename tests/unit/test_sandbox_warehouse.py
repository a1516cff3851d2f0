from __future__ import annotations

from actors.order.messages import Packed, Picked
from adapters.wms.sandbox import SandboxWarehouse
from tests.unit.test_printout import request


async def packed_items(warehouse: SandboxWarehouse) -> tuple[tuple[str, int], ...]:
    picked, packed = await warehouse.send(request())
    assert isinstance(picked, Picked)
    assert isinstance(packed, Packed)
    return packed.items


async def test_without_mispicks_the_pick_list_is_packed_as_it_is() -> None:
    items = await packed_items(SandboxWarehouse(delay_s=0, mispick_rate=0.0))
    assert items == (("SKU-0001", 2), ("SKU-0002", 1), ("SKU-0003", 3))


async def test_a_mispick_is_one_unit_off_on_the_first_line_and_the_same_when_sent_again() -> None:
    warehouse = SandboxWarehouse(delay_s=0, mispick_rate=1.0)
    items = await packed_items(warehouse)
    assert items == (("SKU-0001", 1), ("SKU-0002", 1), ("SKU-0003", 3))
    assert await packed_items(warehouse) == items
