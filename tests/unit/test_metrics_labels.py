"""Held orders are counted by a bounded set of reasons, read from the words of each."""

from __future__ import annotations

import pytest

from daemon.metrics import reason_label


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("cannot ship: address: city is missing", "address"),
        (
            "the shipping address changed after the pick list was sent (ord_x-1)",
            "changed_after_pick_list",
        ),
        (
            "the lines changed on shopify after the pick list was sent (ord_x-1)",
            "changed_after_pick_list",
        ),
        ("unknown sku 'NEW-1'", "unknown_sku"),
        ("the warehouse refused shipment ord_x-1: no such bin", "warehouse_refused"),
        ("shipment ord_x-1 packed wrong: MUG x1 missing", "packed_wrong"),
        ("no carrier for shipment ord_x-1: nothing meets the promise", "no_carrier"),
        ("no label for shipment ord_x-1: address refused", "no_label"),
        ("message 3 dead-lettered: ValueError: x", "dead_letter"),
        ("shipment ord_x-1 returned: to sender", "delivery_failed"),
        ("message 2 for an unknown order", "unknown_order"),
        ("something new", "other"),
        (None, "other"),
    ],
)
def test_each_hold_reason_has_a_bounded_label(reason: str | None, label: str) -> None:
    assert reason_label(reason) == label
