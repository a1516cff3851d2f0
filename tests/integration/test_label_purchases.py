"""Label purchases made together share the label files' flush.

The sandbox carrier over this test's own PostgreSQL schema sells the labels; the order's
label effect keeps them through the same label store the daemon uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.order.behaviour import Buy, LabelBought
from actors.order.effects import Shipping
from actors.order.types import Address
from actors.shipping.carriers import (
    CarrierError,
    LabelFormat,
    Parcel,
    Purchase,
    Rate,
    RateRequest,
)
from adapters.carriers.sandbox import SandboxCarrier, load_rate_table
from adapters.label_files import LabelFiles
from adapters.postgres.catalog import PostgresCatalog
from adapters.postgres.pool import create_pool
from tests.conftest import POSTGRES_DSN, Clock
from tests.unit.test_label_files import Flushes, contents

PURCHASES = 24
WAREHOUSE = Address(
    name="Dock 4", line1="100 Freight Way", city="Reno", region="NV", postal_code="89501",
    country="US",
)  # fmt: skip


class SandboxTill(SandboxCarrier):
    """The sandbox carrier, remembering each label it sold. Once the ``expected``-th is
    sold, ``on_all_sold`` is called as soon as that purchase has gone on to its label."""

    def __init__(self, *, expected: int, on_all_sold: Any, **options: Any) -> None:
        super().__init__(**options)
        self.sold: dict[str, Purchase] = {}
        self._expected = expected
        self._on_all_sold = on_all_sold

    async def buy(self, rate: Rate, *, idempotency_key: str, label_format: LabelFormat) -> Purchase:
        purchase = await super().buy(
            rate, idempotency_key=idempotency_key, label_format=label_format
        )
        self.sold[rate.quote_id] = purchase
        if len(self.sold) == self._expected:
            # Runs after this task's next step: the label effect queues the file first.
            asyncio.get_running_loop().call_soon(self._on_all_sold)
        return purchase


@pytest.fixture
async def pool(pg: Any, pg_schema_name: str) -> AsyncIterator[Any]:
    pool = await create_pool(POSTGRES_DSN, pg_schema_name, min_size=1, max_size=8)
    yield pool
    await pool.close()


def customer(number: int) -> Address:
    return Address(
        name=f"Customer {number}", line1=f"{number} Main St", city="Austin", region="TX",
        postal_code="78701", country="US",
    )  # fmt: skip


async def quoted(carrier: SandboxCarrier, number: int) -> Buy:
    shipment_id = f"ord_{number:04d}-1"
    [rate, *_] = await carrier.rates(
        RateRequest(
            shipment_id=shipment_id,
            ship_from=WAREHOUSE,
            ship_to=customer(number),
            parcel=Parcel(weight_g=500 + number, length_cm=20, width_cm=15, height_cm=5),
        )
    )
    return Buy(shipment_id=shipment_id, rate=rate, label_format="pdf")


async def test_concurrent_label_purchases_share_a_flush_and_every_label_is_on_disk(
    pool: Any, tmp_path: Path, clock: Clock
) -> None:
    flushes = Flushes(hold_first=True)
    carrier = SandboxTill(
        expected=PURCHASES,
        on_all_sold=flushes.release,
        pool=pool,
        table=load_rate_table(),
        clock=clock,
    )
    directory = tmp_path / "labels"
    shipping = Shipping(
        catalog=PostgresCatalog(pool),
        carriers={"sandbox": carrier},
        ship_from={"main": WAREHOUSE},
        labels=LabelFiles(directory, flush=flushes),
        wms_adapter="sandbox",
    )
    try:
        buys = [await quoted(carrier, number) for number in range(PURCHASES)]
        # The first label's flush is held, as a slow disk holds it, until every other
        # purchase has been made and has asked for its file.
        first = asyncio.create_task(shipping.buy(buys[0]))
        await flushes.first_entered()
        results = await asyncio.gather(first, *(shipping.buy(buy) for buy in buys[1:]))
    finally:
        await shipping.close()

    assert flushes.sizes == [1, PURCHASES - 1]
    for buy, result in zip(buys, results, strict=True):
        assert isinstance(result, LabelBought)
        path = Path(result.label_path)
        assert path == directory.resolve() / f"{buy.shipment_id}.pdf"
        sold = carrier.sold[buy.rate.quote_id]
        assert result.tracking_number == sold.tracking_number
        assert contents(path) == sold.label
        assert sold.label.startswith(b"%PDF-1.4")
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        f"{buy.shipment_id}.pdf" for buy in buys
    )


async def test_purchases_made_together_each_get_their_own_quote_s_label(pool: Any) -> None:
    carrier = SandboxCarrier(pool=pool, table=load_rate_table())
    buys = await asyncio.gather(*(quoted(carrier, number) for number in range(6)))
    unknown = msgspec.structs.replace(buys[0].rate, quote_id="sbx_never_quoted")

    async def buy(rate: Rate, key: str) -> Purchase | BaseException:
        try:
            return await carrier.buy(rate, idempotency_key=key, label_format="pdf")
        except CarrierError as exc:
            return exc

    # The first quote is bought twice at once; one quote was never made.
    done = await asyncio.gather(
        *(buy(b.rate, f"k{n}") for n, b in enumerate(buys)),
        buy(buys[0].rate, "again"),
        buy(unknown, "unknown"),
    )
    *sold, twice, refused = done
    assert all(isinstance(p, Purchase) for p in sold)
    assert isinstance(twice, Purchase)
    assert isinstance(sold[0], Purchase)
    assert twice.tracking_number == sold[0].tracking_number
    numbers = {p.tracking_number for p in sold if isinstance(p, Purchase)}
    assert len(numbers) == 6
    assert isinstance(refused, CarrierError)
    assert "no quote" in str(refused)
    keys = await pool.fetch(
        "SELECT idempotency_key FROM sandbox_shipments WHERE bought_at IS NOT NULL "
        "ORDER BY quote_id"
    )
    assert [r["idempotency_key"] for r in keys] == [f"k{n}" for n in range(6)]


async def test_scans_are_reported_only_for_parcels_orderd_recorded_shipped(pool: Any) -> None:
    clock = Clock()
    carrier = SandboxCarrier(pool=pool, table=load_rate_table(), clock=clock)
    buys = await asyncio.gather(*(quoted(carrier, number) for number in range(3)))
    sold = [
        await carrier.buy(b.rate, idempotency_key=f"k{n}", label_format="pdf")
        for n, b in enumerate(buys)
    ]
    # The first two parcels left the warehouse as orderd recorded them; the third did not.
    await pool.executemany("INSERT INTO orders (id) VALUES ($1)", [(f"ord_{n}",) for n in range(3)])
    await pool.executemany(
        "INSERT INTO shipments (id, order_id, seq, warehouse, status, carrier, tracking_number)"
        " VALUES ($1, $2, 1, 'main', $3, 'sandbox', $4)",
        [
            (b.shipment_id, f"ord_{n}", "shipped" if n < 2 else "packed", p.tracking_number)
            for n, (b, p) in enumerate(zip(buys, sold, strict=True))
        ],
    )
    assert await carrier.news() == []  # nothing scanned yet
    clock.advance(3 * 3600)  # past the pick-up scan
    news = await carrier.news()
    assert sorted(update.tracking_number for _, _, _, update in news) == sorted(
        p.tracking_number for p in sold[:2]
    )
    # Each its first scan, and the news stops there: the next is due later.
    assert [count for _, count, _, _ in news] == [1, 1]
    assert all(later is not None and later > update.at for _, _, later, update in news)
