"""Warehouse requests are leased to one sender by real time, whatever the daemon's clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from actors.ports.outboxes import QueuedRequest
from adapters.postgres import fulfillment
from adapters.postgres.writes import Writes
from tests.unit.test_printout import request


async def test_a_live_lease_holds_against_a_process_whose_scaled_clock_is_days_ahead(
    pg: Any,
) -> None:
    queued = request()
    writes = Writes()
    fulfillment.add_queued(writes, [QueuedRequest(queued, "http", queued.requested_at)])
    await writes.execute(pg)
    # Two processes at [clock] scale 86400, started a few seconds apart: their clocks are
    # days apart. The first takes the request for two minutes of real time.
    first_now = queued.requested_at + timedelta(minutes=1)
    taken = await fulfillment.claim_due(pg, first_now, 120.0, 10)
    assert [d.request.shipment_id for d in taken] == [queued.shipment_id]
    ahead = first_now + timedelta(days=5)
    assert await fulfillment.claim_due(pg, ahead, 120.0, 10) == []
    # A lease that did run out in real time (its sender died) is taken over.
    await pg.execute("UPDATE fulfillment_requests SET lease_until = now() - interval '1 second'")
    again = await fulfillment.claim_due(pg, first_now, 120.0, 10)
    assert [d.request.shipment_id for d in again] == [queued.shipment_id]
