"""``orderd order ...`` and ``orderd dlq ...``: what an operator does with single orders."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import msgspec

from actors.errors import OrderdError
from actors.order.behaviour import CANCELLABLE
from actors.order.holds import DeadLetterHold, Hold, ShipmentHold, describe
from actors.order.messages import (
    AddressCorrected,
    CancelRequested,
    HoldRelease,
    Packed,
    ResendRequested,
    RetryRequested,
    TrackingCorrected,
    decode_message,
)
from actors.order.states import TERMINAL, OrderState
from actors.order.types import Address
from actors.shipping.address import address_problems
from adapters.postgres import dead_letters, orders
from adapters.postgres import listing as listing_sql
from daemon.resources import open_resources
from daemon.settings import Settings, load_settings

_CANCEL_WAIT_S = 10.0


async def show(settings: Settings, ref: str, as_json: bool, say: Callable[[str], None]) -> None:
    async with open_resources(settings, pool_size=2) as res, res.pool.acquire() as conn:
        order_id = await _resolve(conn, ref, settings)
        view = await orders.view(conn, order_id)
    if as_json:
        say(msgspec.json.encode(view).decode())
        return
    name = f" {view['name']}" if view["name"] else ""
    origin = f"{view['source'] or '-'} {view['external_id'] or '-'}"
    say(f"{view['id']}{name} ({origin}): {view['state']}")
    if view["reason"]:
        say(f"  reason: {view['reason']}")
    if view["holds"]:
        say(f"  held for: {', '.join(view['holds'])}")
    for line in view["lines"]:
        shipped = "" if line["requires_shipping"] else " (not shipped)"
        say(f"  {line['sku']} x{line['quantity']}: reserved {line['reserved']}{shipped}")
    for shipment in view["shipments"]:
        carrier = " ".join(
            str(part)
            for part in (
                shipment["carrier_account"],
                shipment["service"],
                shipment["tracking_number"],
            )
            if part
        )
        eta = shipment["estimated_delivery"]
        say(
            f"  shipment {shipment['id']}: {shipment['status']}"
            + (f", {carrier}" if carrier else "")
            + (f", delivery by {eta}" if eta else "")
        )
        if shipment["problem"]:
            say(f"    problem: {shipment['problem']}")
        if shipment["label_path"]:
            say(f"    label: {shipment['label_path']}")
        tracking = shipment["tracking"]
        if tracking["status"]:
            say(f"    tracking: {tracking['status']} at {tracking['at']} ({tracking['detail']})")
        if shipment["delayed"] or shipment["delay_episodes"]:
            now = "delayed" if shipment["delayed"] else "was delayed"
            say(f"    {now} ({shipment['delay_episodes']} episode(s)): {shipment['delay_reason']}")
    for message in view["messages"]:
        sent = f" at {message['sent_at']}" if message["sent_at"] else ""
        error = f" ({message['last_error']})" if message["last_error"] else ""
        say(
            f"  message {message['kind']} by {message['channel']}: {message['status']}{sent}{error}"
        )
    for call in view["platform_calls"]:
        error = f" ({call['last_error']})" if call["last_error"] else ""
        result = f": {call['result']}" if call["result"] else ""
        say(f"  told the platform {call['key']}: {call['status']}{result}{error}")
    for event in view["events"]:
        say(f"  {event['at']}  {event['type']}")


def moment(flag: str, text: str | None) -> datetime | None:
    """An ISO date or time given on the command line (UTC unless it says otherwise)."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise OrderdError(f"{flag}: not an ISO date or time: {text!r}") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def listing(
    settings: Settings,
    *,
    state: str | None,
    held: bool,
    stuck: bool,
    since: str | None,
    limit: int,
    as_json: bool,
    say: Callable[[str], None],
) -> None:
    """Orders by state, held for a person, or stuck: a message stored longer ago than
    ``[runtime] max_pending_age_s`` and still not applied."""
    if state is not None and state not in {s.value for s in OrderState}:
        raise OrderdError(f"--state: no such state {state!r}; one of {_STATES}")
    after = moment("--since", since)
    stuck_after = timedelta(seconds=settings.runtime.max_pending_age_s) if stuck else None
    async with open_resources(settings, pool_size=1) as res, res.pool.acquire() as conn:
        found = await listing_sql.listed(
            conn, state=state, held=held, stuck_after=stuck_after, since=after, limit=limit
        )
    if as_json:
        say(msgspec.json.encode(found).decode())
        return
    if not found:
        say(f"no orders found ({searched(settings)})")
    for order in found:
        name = f" {order.name}" if order.name else ""
        reason = f": {order.reason}" if order.reason else ""
        holds = f" [held for: {', '.join(order.holds)}]" if order.holds else ""
        waiting = ""
        if order.unapplied:
            oldest = order.oldest_unapplied_at
            since_text = f" since {oldest.isoformat(timespec='seconds')}" if oldest else ""
            waiting = f" [{order.unapplied} message(s) not applied{since_text}]"
        say(f"{order.id}{name}  {order.state or 'not created'}{reason}{holds}{waiting}")


_STATES = ", ".join(s.value for s in OrderState)


def searched(settings: Settings) -> str:
    """Where the command looked, for an operator who finds nothing: the database and the
    settings file (no user or password)."""
    dsn = urlsplit(settings.postgres.dsn)
    database = dsn.path.lstrip("/") or "the user's default"
    host = dsn.hostname or "the local socket"
    port = f":{dsn.port}" if dsn.port else ""
    overrides = sorted(name for name in os.environ if name.startswith("ORDERD_POSTGRES__"))
    also = f" with {', '.join(overrides)}" if overrides else ""
    return (
        f"looked in database {database} on {host}{port}, schema {settings.postgres.schema}; "
        f"settings: {settings.source}{also}"
    )


async def _resolve(conn: Any, ref: str, settings: Settings) -> str:
    try:
        return await orders.resolve(conn, ref)
    except orders.UnknownOrder as exc:
        raise orders.UnknownOrder(f"{exc} ({searched(settings)})") from None


async def cancel(settings: Settings, ref: str, reason: str, say: Callable[[str], None]) -> None:
    """Ask the order's actor to cancel, then wait a little for it to be done."""
    async with open_resources(settings, pool_size=2) as res:
        async with res.pool.acquire() as conn:
            order_id = await _resolve(conn, ref, settings)
            state = OrderState((await orders.view(conn, order_id))["state"])
        if state is OrderState.CANCELLED:
            say(f"{order_id} is already cancelled")
            return
        if state not in CANCELLABLE:
            raise OrderdError(f"{order_id} is {state.value}: it can no longer be cancelled")
        await res.mail.send(
            [CancelRequested(order_id=order_id, reason=reason, requested_by="operator")]
        )
        deadline = time.monotonic() + _CANCEL_WAIT_S
        while time.monotonic() < deadline:
            async with res.pool.acquire() as conn:
                state = OrderState((await orders.view(conn, order_id))["state"])
            if state is OrderState.CANCELLED:
                say(f"{order_id} cancelled; its stock is released")
                return
            await asyncio.sleep(0.2)  # the daemon applies it: wait a bounded while
    say(f"{order_id}: cancellation requested; the daemon applies it when it runs")


async def packed(
    settings: Settings,
    ref: str,
    shipment_id: str | None,
    weight_g: int | None,
    say: Callable[[str], None],
) -> None:
    """Confirm that a shipment was packed exactly as its pick list says (spool warehouses)."""
    if weight_g is not None and not 1 <= weight_g <= 1_000_000:
        raise OrderdError("--weight-g: from 1 to 1000000 grams")
    async with open_resources(settings, pool_size=2) as res:
        async with res.pool.acquire() as conn:
            order_id = await _resolve(conn, ref, settings)
            waiting = await conn.fetch(
                """
                SELECT id FROM shipments
                WHERE order_id = $1 AND status IN ('requested', 'picked', 'mismatch')
                  AND ($2::text IS NULL OR id = $2)
                ORDER BY seq
                """,
                order_id,
                shipment_id,
            )
            if not waiting:
                which = f"shipment {shipment_id}" if shipment_id else "no shipment"
                raise OrderdError(f"{order_id}: {which} waiting to be packed")
            if len(waiting) > 1:
                ids = ", ".join(r["id"] for r in waiting)
                raise OrderdError(f"{order_id} has several shipments to pack ({ids}): name one")
            chosen = waiting[0]["id"]
            lines = await conn.fetch(
                "SELECT sku, quantity FROM shipment_lines WHERE shipment_id = $1 ORDER BY line_no",
                chosen,
            )
        await res.mail.send(
            [
                Packed(
                    order_id=order_id,
                    shipment_id=chosen,
                    items=tuple((r["sku"], r["quantity"]) for r in lines),
                    weight_g=weight_g,
                    by="operator",
                )
            ]
        )
    say(f"{chosen} confirmed packed; the daemon buys its label next")


async def retry(
    settings: Settings, ref: str, shipment_id: str | None, say: Callable[[str], None]
) -> None:
    """Send a packed shipment held without a label back to rate shopping and its label."""
    async with open_resources(settings, pool_size=2) as res:
        async with res.pool.acquire() as conn:
            order_id = await _resolve(conn, ref, settings)
            unlabelled = await conn.fetch(
                """
                SELECT id FROM shipments
                WHERE order_id = $1 AND status = 'packed' AND label_id IS NULL
                  AND ($2::text IS NULL OR id = $2)
                ORDER BY seq
                """,
                order_id,
                shipment_id,
            )
            # The order's own state says what holds it, in whichever form it was saved.
            snapshot = (await orders.load(conn, order_id)).snapshot
        holds = snapshot.holds if snapshot is not None else ()
        waiting = [r["id"] for r in unlabelled if ShipmentHold(r["id"]) in holds]
        if not waiting:
            raise OrderdError(f"{order_id}: no packed shipment held without its label")
        await res.mail.send([RetryRequested(order_id=order_id, shipment_id=s) for s in waiting])
    say(f"{', '.join(waiting)}: rates and label asked for again")


async def release(
    settings: Settings, ref: str, shipment_id: str | None, say: Callable[[str], None]
) -> None:
    """End what holds an order once its cause is fixed (a sku imported and stocked since,
    a refusal dealt with at the warehouse), then wait a little to say where it went."""
    async with open_resources(settings, pool_size=2) as res:
        async with res.pool.acquire() as conn:
            order_id = await _resolve(conn, ref, settings)
            snapshot = (await orders.load(conn, order_id)).snapshot
        holds = snapshot.holds if snapshot is not None else ()
        if shipment_id is not None:
            wanted: list[Hold] = [h for h in holds if h == ShipmentHold(shipment_id)]
            if not wanted:
                raise OrderdError(f"{order_id}: shipment {shipment_id} is not held")
        else:
            wanted = [h for h in holds if not isinstance(h, DeadLetterHold)]
        if not wanted:
            letters = [describe(h) for h in holds if isinstance(h, DeadLetterHold)]
            if letters:
                raise OrderdError(
                    f"{order_id} is held only for {', '.join(letters)}: see `orderd dlq list`, "
                    "and `orderd dlq replay` once its cause is fixed"
                )
            raise OrderdError(f"{order_id} is not held")
        posted = await res.mail.send(
            [HoldRelease(order_id=order_id, hold=hold, by="operator") for hold in wanted]
        )
        what = ", ".join(describe(h) for h in wanted)
        view = await _applied(res, order_id, max(p.seq for p in posted))
    if view is None:
        say(f"{order_id}: release of the {what} hold asked for; the daemon applies it")
        return
    if view["state"] == OrderState.NEEDS_ATTENTION.value:
        say(f"{order_id}: the {what} hold was released, and it is held again: {view['reason']}")
        return
    say(f"{order_id}: the {what} hold was released; it is {view['state']} now")


async def resend(
    settings: Settings, ref: str, shipment_id: str | None, say: Callable[[str], None]
) -> None:
    """Deliver a shipment's pick list to the warehouse system again, after what made it
    refuse the request is fixed there (or it lost it): only a shipment it has not started."""
    async with open_resources(settings, pool_size=2) as res:
        async with res.pool.acquire() as conn:
            order_id = await _resolve(conn, ref, settings)
            found = await conn.fetch(
                """
                SELECT s.id, r.status, r.last_error FROM shipments s
                LEFT JOIN fulfillment_requests r ON r.shipment_id = s.id AND r.kind = 'request'
                WHERE s.order_id = $1 AND s.status = 'requested'
                  AND ($2::text IS NULL OR s.id = $2)
                ORDER BY s.seq
                """,
                order_id,
                shipment_id,
            )
        if not found:
            which = f"shipment {shipment_id}" if shipment_id else "no shipment"
            raise OrderdError(
                f"{order_id}: {which} waiting at the warehouse to be picked (a shipment it "
                "picked, packed or that is cancelled is not sent again)"
            )
        again = [r["id"] for r in found if r["status"] in ("failed", "sent")]
        if not again:
            ids = ", ".join(r["id"] for r in found)
            raise OrderdError(f"{order_id}: the request of {ids} is on its way to the warehouse")
        posted = await res.mail.send(
            [ResendRequested(order_id=order_id, shipment_id=s) for s in again]
        )
        view = await _applied(res, order_id, max(p.seq for p in posted))
    sent = ", ".join(again)
    if view is None:
        say(f"{order_id}: {sent} to be sent to the warehouse again; the daemon does it")
    else:
        say(f"{order_id}: {sent} sent to the warehouse again; the order is {view['state']}")


# The address fields an operator may set, as the CLI names them.
ADDRESS_FIELDS = ("name", "company", "line1", "line2", "city", "region", "postal_code",
                  "country", "phone")  # fmt: skip


async def set_address(
    settings: Settings, ref: str, changes: dict[str, str], say: Callable[[str], None]
) -> None:
    """Correct the shipping address of an order whose pick list has not gone to the
    warehouse; the order checks it again and goes on, or says why it cannot."""
    if not changes:
        raise OrderdError("name at least one field to change (--line1, --city, ...)")
    for field, value in changes.items():
        if len(value) > 200 or not value.isprintable():
            raise OrderdError(f"--{field.replace('_', '-')}: up to 200 printable characters")
    async with open_resources(settings, pool_size=2) as res:
        async with res.pool.acquire() as conn:
            order_id = await _resolve(conn, ref, settings)
            snapshot = (await orders.load(conn, order_id)).snapshot
        order = snapshot.order if snapshot is not None else None
        if snapshot is None or order is None:
            raise OrderdError(f"{order_id} has no order from its platform yet")
        if snapshot.state in TERMINAL:
            raise OrderdError(f"{order_id} is {snapshot.state.value}: its address stays")
        if snapshot.shipments:
            sent = ", ".join(s.id for s in snapshot.shipments)
            raise OrderdError(
                f"{order_id}: the pick list of {sent} went to the warehouse with the address "
                "on it; change it there, or cancel the order"
            )
        current = order.shipping_address or Address(country="")
        fields = {
            **{f: getattr(current, f) for f in ADDRESS_FIELDS},
            **{f: (v.upper() if f == "country" else v) for f, v in changes.items()},
        }
        if fields["phone"] == "":
            fields["phone"] = None
        try:
            address = msgspec.convert(fields, Address)
        except msgspec.ValidationError as exc:
            raise OrderdError(f"the address: {exc}") from None
        problems = address_problems(address)
        if problems:
            raise OrderdError(f"{order_id}: the address would not do: {'; '.join(problems)}")
        if address == order.shipping_address:
            say(f"{order_id} ships to that address already")
            return
        [posted] = await res.mail.send([AddressCorrected(order_id=order_id, address=address)])
        view = await _applied(res, order_id, posted.seq)
    if view is None:
        say(f"{order_id}: the address correction is stored; the daemon applies it")
    elif view["state"] == OrderState.NEEDS_ATTENTION.value:
        say(f"{order_id}: the address is corrected; the order is held: {view['reason']}")
    else:
        say(f"{order_id}: the address is corrected; it is {view['state']} now")


_TRACKING_NUMBER_CHARS = 100


async def set_tracking(
    settings: Settings,
    ref: str,
    shipment_id: str | None,
    number: str,
    url: str | None,
    say: Callable[[str], None],
) -> None:
    """A shipped parcel travels under another tracking number (labelled again by hand,
    same carrier): it is watched under that one, and the customer and the store told."""
    number = number.strip()
    if not number or len(number) > _TRACKING_NUMBER_CHARS or not number.isprintable():
        raise OrderdError(f"--number: 1 to {_TRACKING_NUMBER_CHARS} printable characters")
    if " " in number:
        raise OrderdError("--number: a tracking number has no spaces")
    if url is not None and (urlsplit(url).scheme not in ("http", "https") or " " in url):
        raise OrderdError("--url: an http(s):// address")
    async with open_resources(settings, pool_size=2) as res:
        async with res.pool.acquire() as conn:
            order_id = await _resolve(conn, ref, settings)
            snapshot = (await orders.load(conn, order_id)).snapshot
        shipped = [s for s in (snapshot.shipments if snapshot else ()) if s.status == "shipped"]
        if shipment_id is not None:
            shipped = [s for s in shipped if s.id == shipment_id]
        if not shipped:
            which = f"shipment {shipment_id}" if shipment_id else "no shipment"
            raise OrderdError(
                f"{order_id}: {which} on its way (only a parcel shipped and not yet "
                "delivered takes another tracking number)"
            )
        if len(shipped) > 1:
            ids = ", ".join(s.id for s in shipped)
            raise OrderdError(f"{order_id}: several parcels are on their way ({ids}): --shipment")
        [parcel] = shipped
        if parcel.tracking_number == number:
            say(f"{order_id}: {parcel.id} travels under {number} already")
            return
        message = TrackingCorrected(
            order_id=order_id, shipment_id=parcel.id, tracking_number=number, tracking_url=url
        )
        [posted] = await res.mail.send([message])
        view = await _applied(res, order_id, posted.seq)
    if view is None:
        say(f"{order_id}: the new tracking number of {parcel.id} is stored; the daemon applies it")
    else:
        say(
            f"{order_id}: {parcel.id} travels under {number} now (was {parcel.tracking_number}); "
            "the customer and the store are told"
        )


async def _applied(res: Any, order_id: str, seq: int) -> dict[str, Any] | None:
    """The order once its message ``seq`` is applied; None if the daemon did not apply it
    within a few seconds (it is stored: the daemon applies it when it runs)."""
    deadline = time.monotonic() + _CANCEL_WAIT_S
    while time.monotonic() < deadline:
        async with res.pool.acquire() as conn:
            applied = await conn.fetchval("SELECT last_seq FROM orders WHERE id = $1", order_id)
            if applied is not None and applied >= seq:
                view: dict[str, Any] = await orders.view(conn, order_id)
                return view
        await asyncio.sleep(0.2)  # the daemon applies it: wait a bounded while
    return None


async def dlq_list(settings: Settings, say: Callable[[str], None]) -> None:
    async with open_resources(settings, pool_size=2) as res, res.pool.acquire() as conn:
        letters = await dead_letters.listed(conn)
    if not letters:
        say("no dead letters")
    for letter in letters:
        say(
            f"{letter.id}  {letter.dead_at.isoformat(timespec='seconds')}  order {letter.order_id} "
            f"message {letter.seq} after {letter.deliveries} deliveries: {letter.error[:120]}"
        )


async def dlq_replay(settings: Settings, letter_id: int, say: Callable[[str], None]) -> None:
    async with open_resources(settings, pool_size=2) as res:
        async with res.pool.acquire() as conn:
            letter = await dead_letters.get(conn, letter_id)
        if letter is None:
            raise OrderdError(f"no dead letter {letter_id}")
        if letter.replayed_at is not None:
            raise OrderdError(f"dead letter {letter_id} was replayed already")
        try:
            message = decode_message(letter.payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise OrderdError(f"dead letter {letter_id} cannot be replayed: {exc}") from None
        async with res.pool.acquire() as conn:
            if not await dead_letters.mark_replayed(conn, letter_id):
                raise OrderdError(f"dead letter {letter_id} was replayed already")
        # The message again, then the end of the hold it put on its order: a replay that
        # fails once more is dead-lettered, and holds the order, anew.
        release = (
            [HoldRelease(order_id=message.order_id, hold=DeadLetterHold(seq=letter.seq))]
            if letter.seq is not None
            else []
        )
        await res.mail.send([message, *release])
    say(f"dead letter {letter_id} sent again to order {message.order_id}")


def add_commands(commands: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``order`` and ``dlq`` with the CLI's parser."""
    order = commands.add_parser(
        "order",
        help="orders: list, show, cancel, packed, retry, release, resend, set-address, "
        "set-tracking",
    )
    order_commands = order.add_subparsers(dest="order_command", required=True, metavar="ACTION")
    listed = add("list", cmd_order_list, "list orders: by state, held, stuck", order_commands)
    listed.add_argument("--state", help="only orders in this state")
    listed.add_argument("--held", action="store_true", help="only orders held for a person")
    listed.add_argument(
        "--stuck",
        action="store_true",
        help="only orders with a message not applied after [runtime] max_pending_age_s",
    )
    listed.add_argument("--since", help="only orders changed since this ISO date or time")
    listed.add_argument("--limit", type=int, default=100, help="at most this many (100)")
    listed.add_argument("--json", action="store_true", help="print JSON")
    shown = add("show", cmd_order_show, "show one order", order_commands)
    shown.add_argument("id", help="orderd's id, the platform's order id or its name (#1001)")
    shown.add_argument("--json", action="store_true", help="print JSON")
    cancelled = add("cancel", cmd_order_cancel, "cancel an order not yet shipped", order_commands)
    cancelled.add_argument("id", help="orderd's id, the platform's order id or its name")
    cancelled.add_argument("--reason", default="cancelled by an operator", help="why")
    pack = add("packed", cmd_order_packed, "confirm a shipment packed as listed", order_commands)
    pack.add_argument("id", help="orderd's id, the platform's order id or its name")
    pack.add_argument("--shipment", help="the shipment, when the order has several to pack")
    pack.add_argument("--weight-g", type=int, help="the packed parcel's weight in grams")
    again = add(
        "retry", cmd_order_retry, "shop rates and buy the label of a held shipment again",
        order_commands,
    )  # fmt: skip
    again.add_argument("id", help="orderd's id, the platform's order id or its name")
    again.add_argument("--shipment", help="one shipment (default: every one waiting)")

    freed = add(
        "release", cmd_order_release, "end an order's hold once its cause is fixed",
        order_commands,
    )  # fmt: skip
    freed.add_argument("id", help="orderd's id, the platform's order id or its name")
    freed.add_argument("--shipment", help="only this shipment's hold (default: every hold)")

    resent = add(
        "resend", cmd_order_resend,
        "send a shipment's pick list to the warehouse again (refused, or lost there)",
        order_commands,
    )  # fmt: skip
    resent.add_argument("id", help="orderd's id, the platform's order id or its name")
    resent.add_argument("--shipment", help="one shipment (default: every one not picked yet)")
    tracked = add(
        "set-tracking", cmd_order_set_tracking,
        "a shipped parcel's new tracking number (labelled again by hand, same carrier)",
        order_commands,
    )  # fmt: skip
    tracked.add_argument("id", help="orderd's id, the platform's order id or its name")
    tracked.add_argument("--shipment", help="the parcel, when several are on their way")
    tracked.add_argument("--number", required=True, help="the new tracking number")
    tracked.add_argument("--url", help="its tracking page (default: none)")
    moved = add(
        "set-address", cmd_order_set_address,
        "correct the shipping address before the pick list goes out", order_commands,
    )  # fmt: skip
    moved.add_argument("id", help="orderd's id, the platform's order id or its name")
    for field in ADDRESS_FIELDS:
        flag = field.replace("_", "-")
        moved.add_argument(f"--{flag}", dest=field, help=f"the new {flag} (default: as it is)")

    dlq = commands.add_parser("dlq", help="dead-lettered messages")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    add("list", cmd_dlq_list, "list dead letters not yet replayed", dlq_commands)
    replay = add("replay", cmd_dlq_replay, "send a dead letter to its order again", dlq_commands)
    replay.add_argument("id", type=int, help="the dead letter's number from `dlq list`")


def _say(line: str) -> None:
    print(line, flush=True)


async def cmd_order_list(args: argparse.Namespace) -> int:
    await listing(
        load_settings(args.config),
        state=args.state,
        held=args.held,
        stuck=args.stuck,
        since=args.since,
        limit=args.limit,
        as_json=args.json,
        say=_say,
    )
    return 0


async def cmd_order_show(args: argparse.Namespace) -> int:
    await show(load_settings(args.config), args.id, args.json, _say)
    return 0


async def cmd_order_cancel(args: argparse.Namespace) -> int:
    await cancel(load_settings(args.config), args.id, args.reason, _say)
    return 0


async def cmd_order_packed(args: argparse.Namespace) -> int:
    await packed(load_settings(args.config), args.id, args.shipment, args.weight_g, _say)
    return 0


async def cmd_order_retry(args: argparse.Namespace) -> int:
    await retry(load_settings(args.config), args.id, args.shipment, _say)
    return 0


async def cmd_order_release(args: argparse.Namespace) -> int:
    await release(load_settings(args.config), args.id, args.shipment, _say)
    return 0


async def cmd_order_resend(args: argparse.Namespace) -> int:
    await resend(load_settings(args.config), args.id, args.shipment, _say)
    return 0


async def cmd_order_set_address(args: argparse.Namespace) -> int:
    changes = {f: getattr(args, f) for f in ADDRESS_FIELDS if getattr(args, f) is not None}
    await set_address(load_settings(args.config), args.id, changes, _say)
    return 0


async def cmd_order_set_tracking(args: argparse.Namespace) -> int:
    await set_tracking(
        load_settings(args.config), args.id, args.shipment, args.number, args.url, _say
    )
    return 0


async def cmd_dlq_list(args: argparse.Namespace) -> int:
    await dlq_list(load_settings(args.config), _say)
    return 0


async def cmd_dlq_replay(args: argparse.Namespace) -> int:
    await dlq_replay(load_settings(args.config), args.id, _say)
    return 0
