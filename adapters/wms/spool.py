"""The spool warehouse: for a warehouse without a WMS, pick lists as files.

Each request becomes ``<shipment>.pdf`` (a printable pick list, in walking order) and
``<shipment>.csv`` in the spool directory. Files are written under a temporary name and
renamed, so a printer watching the directory never reads half a file, and a retried
delivery rewrites the same files. The packer confirms with ``orderd order packed``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from pathlib import Path

from actors.order.messages import Message
from actors.shipping.warehouse import FulfillmentRequest, WmsError
from adapters.wms.printout import render_pick_list_pdf

CSV_COLUMNS = ("shipment_id", "order", "line", "bin", "sku", "name", "quantity", "weight_g")


class SpoolWarehouse:
    name = "spool"
    delay_s = 0.0

    def __init__(self, *, directory: str | Path) -> None:
        self._directory = Path(directory)

    async def send(self, request: FulfillmentRequest) -> list[Message]:
        try:
            await asyncio.to_thread(self._write, request)
        except OSError as exc:
            # A full disk or a missing mount may come back; keep retrying.
            raise WmsError(f"cannot write pick list: {exc.strerror}", temporary=True) from None
        return []

    def _write(self, request: FulfillmentRequest) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        _replace(self._directory / f"{request.shipment_id}.csv", pick_list_csv(request))
        _replace(self._directory / f"{request.shipment_id}.pdf", render_pick_list_pdf(request))

    async def cancel(self, request: FulfillmentRequest) -> None:
        """Take the pick list away and leave a note where it was, for the packer."""
        try:
            await asyncio.to_thread(self._withdraw, request)
        except OSError as exc:
            raise WmsError(f"cannot withdraw pick list: {exc.strerror}", temporary=True) from None

    def _withdraw(self, request: FulfillmentRequest) -> None:
        for suffix in (".pdf", ".csv"):
            (self._directory / f"{request.shipment_id}{suffix}").unlink(missing_ok=True)
        order = request.order_name or request.order_id
        note = f"Order {order} was cancelled: do not pick or pack shipment {request.shipment_id}.\n"
        self._directory.mkdir(parents=True, exist_ok=True)
        _replace(self._directory / f"{request.shipment_id}.CANCELLED.txt", note.encode())

    async def close(self) -> None:
        return None


def pick_list_csv(request: FulfillmentRequest) -> bytes:
    """The pick list as CSV, one row per line, in walking order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    order = request.order_name or request.order_id
    for line in request.pick_list:
        writer.writerow(
            (
                request.shipment_id, order, line.line_no, line.bin, line.sku,
                _cell(line.name), line.quantity, line.weight_g,
            )
        )  # fmt: skip
    return out.getvalue().encode()


def _cell(text: str) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet: keep it text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _replace(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(path)
