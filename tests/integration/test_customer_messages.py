"""From paid to completed by itself: customer messages by real SMTP, tracking, delays,
the rating link."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.conftest import SetStock, add_products
from tests.integration.daemon_harness import (
    SmtpSink,
    eventually,
    get,
    request,
    shopify_body,
    shopify_headers,
)

MakeDaemon = Callable[..., Any]
SKUS = ("SKU2006-001", "SKU2006-020")
CUSTOMER = "jon@example.com"  # the Shopify sample order's customer

# A day passes in a second; follow-ups come a day and two days after delivery.
FAST = {
    "ORDERD_CLOCK__SCALE": "86400",
    "ORDERD_WMS__SANDBOX_DELAY_S": "0",
    "ORDERD_NOTIFY__REVIEW_AFTER_DAYS": "1",
    "ORDERD_NOTIFY__REPEAT_AFTER_DAYS": "2",
}


async def state_of(pg: Any, name: str = "#1001") -> str | None:
    state: str | None = await pg.fetchval("SELECT state FROM orders WHERE name = $1", name)
    return state


async def reaches(pg: Any, state: str, within_s: float = 45, name: str = "#1001") -> None:
    async def there() -> bool:
        return await state_of(pg, name) == state

    await eventually(there, within_s=within_s, what=f"the order to be {state}")


async def paid_order(
    pg: Any,
    set_stock: SetStock,
    daemon: Any,
    marketing: str = "subscribed",
    external_id: int = 820982911946154508,
    name: str = "#1001",
) -> None:
    if not await pg.fetchval("SELECT count(*) FROM products"):
        await add_products(pg, *SKUS)
        await set_stock(dict.fromkeys(SKUS, 5))
    # Paid at the daemon's time, which the scaled clock runs ahead of the wall clock.
    now = get(f"{daemon.url}/healthz")[1]["time"]
    customer = json.loads(shopify_body())["customer"]
    customer["email_marketing_consent"] = {"state": marketing, "opt_in_level": "single_opt_in"}
    body = shopify_body(external_id, name, processed_at=now, customer=customer)
    assert request(f"{daemon.url}/webhooks/shopify", body, shopify_headers(body))[0] == 202


def parts(message: Any) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


async def test_an_order_runs_from_paid_to_completed_and_the_customer_hears_each_step(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Any, set_stock: SetStock
) -> None:
    with SmtpSink() as sink:
        daemon = make_daemon(start=False, **FAST, **sink.env())
        daemon.env["ORDERD_NOTIFY__PUBLIC_URL"] = daemon.url  # where rating links lead
        daemon.start()
        await paid_order(pg, set_stock, daemon)
        await reaches(pg, "completed")

        async def all_sent() -> bool:
            return len(sink.messages) >= 4

        await eventually(all_sent, what="four messages")
    view = json.loads(run_orderd("order", "show", "#1001", "--json").stdout)
    [shipment] = view["shipments"]
    assert shipment["status"] == "delivered"
    assert shipment["delay_episodes"] == 0
    assert view["delivered_at"] is not None
    assert view["completed_at"] is not None
    events = [e["type"] for e in view["events"]]
    assert events.index("shipped") < events.index("delivered") < events.index("completed")
    assert "delayed" not in events

    # Exactly one of each, to the customer, each with both parts.
    for subject in ("on its way", "has arrived", "How was your", "top-up"):
        [message] = sink.of_kind(subject)
        assert message["To"] == CUSTOMER
        assert message["Message-ID"]
        text, html = parts(message)
        assert text.strip()
        assert "<html" in html.lower()
    [confirmation] = sink.of_kind("on its way")
    text, html = parts(confirmation)
    assert shipment["tracking_number"] in text
    assert shipment["tracking_number"] in html
    assert shipment["estimated_delivery"] in text
    statuses = {m["kind"]: m["status"] for m in view["messages"]}
    assert statuses == {
        "shipping_confirmation": "sent",
        "delivered": "sent",
        "review_request": "sent",
        "repeat_purchase": "sent",
    }

    # The review request's links open a page whose button rates the order; following a
    # link (as a mail scanner does) records nothing. The latest rating counts.
    [review] = sink.of_kind("How was your")
    text, _ = parts(review)
    links = re.findall(r"(http://\S+/feedback/\S+\?score=\d)", text)
    assert len(links) == 5
    for link in links:
        status, page = get(link)
        assert status == 200
        assert '<form method="post"' in str(page)
    assert await pg.fetchval("SELECT count(*) FROM feedback") == 0
    four = next(link for link in links if link.endswith("score=4"))
    token = four.split("/feedback/")[1].split("?")[0]
    _, page = get(four)
    action = re.search(r'action="([^"]+)"', str(page))
    assert action is not None
    assert action.group(1) == f"/feedback/{token}"
    assert '<textarea id="comment" name="comment"' in str(page)
    # A comment too long, or holding a NUL, is refused, and nothing is recorded.
    for comment in ("x" * 1001, "a\x00b"):
        form = {"score": "4", "comment": comment}
        status, page = post_form(f"{daemon.url}{action.group(1)}", form)
        assert status == 400
        assert "not recorded" in page
    assert await pg.fetchval("SELECT count(*) FROM feedback") == 0
    for score, comment in (("4", "  "), ("5", " Arrived early, well packed. ")):
        form = {"score": score, "comment": comment}
        status, page = post_form(f"{daemon.url}{action.group(1)}", form)
        assert status == 200
        assert "thank" in page.lower()
    scores = await pg.fetch("SELECT score, comment FROM feedback ORDER BY at, id")
    assert [(r["score"], r["comment"]) for r in scores] == [
        (4, None),
        (5, "Arrived early, well packed."),
    ]
    for bad in (
        f"/feedback/{token}?score=9",
        f"/feedback/{token[:-2]}xx?score=3",
        "/feedback/nonsense?score=3",
    ):
        status, page = get(f"{daemon.url}{bad}")
        assert status == 404
        assert "feedback" not in str(page).lower() or "not found" in str(page).lower()
        path, _, query = bad.partition("?")
        status, _ = post_form(f"{daemon.url}{path}", dict([query.split("=")]))
        assert status == 404
    assert await pg.fetchval("SELECT count(*) FROM feedback") == 2

    # The reminder sells: it carries an unsubscribe link and the one-click headers.
    [reminder] = sink.of_kind("top-up")
    text, html = parts(reminder)
    [unsubscribe] = re.findall(r"(http://\S+/unsubscribe/[A-Za-z0-9_-]+)", text)
    assert f'href="{unsubscribe}"' in html
    assert reminder["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert reminder["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    status, page = get(unsubscribe)  # a mail scanner following it unsubscribes no one
    assert status == 200
    assert '<form method="post"' in str(page)
    assert await pg.fetchval("SELECT count(*) FROM marketing_opt_outs") == 0
    # The mail program's one-click POST (RFC 8058).
    status, page = post_form(unsubscribe, {"List-Unsubscribe": "One-Click"})
    assert status == 200
    assert "no more reminders" in page
    assert await pg.fetchval("SELECT address FROM marketing_opt_outs") == CUSTOMER
    for bad in (unsubscribe[:-2] + "xx", f"{daemon.url}/unsubscribe/{token}"):  # a rating token
        assert post_form(bad, {})[0] == 404


async def test_the_repeat_purchase_reminder_needs_consent_and_respects_an_unsubscribe(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Any, set_stock: SetStock
) -> None:
    with SmtpSink() as sink:
        daemon = make_daemon(start=False, **FAST, **sink.env())
        daemon.start()
        # No consent to marketing email: the reminder is skipped.
        await paid_order(pg, set_stock, daemon, marketing="not_subscribed")
        await reaches(pg, "completed")
        # Consent, but the address unsubscribed meanwhile: skipped as well.
        await pg.execute(
            "INSERT INTO marketing_opt_outs (address, order_id, at) VALUES ($1, 'x', now())",
            CUSTOMER,
        )
        await paid_order(pg, set_stock, daemon, external_id=820982911946154509, name="#1002")
        await reaches(pg, "completed", name="#1002")
    # Without consent no reminder is made; to an unsubscribed address one is skipped.
    for name, reminder in (("#1001", "none"), ("#1002", "skipped")):
        view = json.loads(run_orderd("order", "show", name, "--json").stdout)
        statuses = {m["kind"]: m["status"] for m in view["messages"]}
        assert statuses.get("review_request") == "sent"
        assert statuses.get("repeat_purchase", "none") == reminder
    assert sink.of_kind("top-up") == []
    assert len(sink.of_kind("How was your")) == 2


async def test_a_delayed_parcel_brings_exactly_one_delay_alert(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Any, set_stock: SetStock
) -> None:
    with SmtpSink() as sink:
        quick = {
            **FAST,
            **sink.env(),
            "ORDERD_CARRIERS__SANDBOX__DELAY_RATE": "1",
            "ORDERD_NOTIFY__REVIEW_AFTER_DAYS": "0",
            "ORDERD_NOTIFY__REPEAT_AFTER_DAYS": "0",
        }
        daemon = make_daemon(**quick)
        await paid_order(pg, set_stock, daemon)
        await reaches(pg, "completed")

        async def delivered_message() -> bool:
            return bool(sink.of_kind("has arrived"))

        await eventually(delivered_message, what="the delivered message")
        assert len(sink.of_kind("running late")) == 1
    view = json.loads(run_orderd("order", "show", "#1001", "--json").stdout)
    [shipment] = view["shipments"]
    assert shipment["delay_episodes"] == 1
    assert shipment["delayed"] is False  # delivered: the episode is over
    assert [e["type"] for e in view["events"]].count("delayed") == 1
    [alert] = sink.of_kind("running late")
    text, _ = parts(alert)
    assert shipment["tracking"]["carrier_estimate"] in text


async def test_a_crash_between_sending_and_recording_resends_with_the_same_message_id(
    make_daemon: MakeDaemon, pg: Any, run_orderd: Any, set_stock: SetStock
) -> None:
    env = {
        "ORDERD_WMS__SANDBOX_DELAY_S": "0",
        "ORDERD_NOTIFY__REVIEW_AFTER_DAYS": "0",
        "ORDERD_NOTIFY__REPEAT_AFTER_DAYS": "0",
        # The dead sender's claim on the message runs out soon.
        "ORDERD_NOTIFY__RESEND_AFTER_S": "1",
    }
    with SmtpSink() as sink:
        first = make_daemon("d1", **env, **sink.env())
        # The server takes the message, and the sender dies before it hears so.
        sink.on_message = first.kill
        await paid_order(pg, set_stock, first)

        async def taken() -> bool:
            return len(sink.messages) == 1

        await eventually(taken, what="the confirmation to reach the server")
        assert first.process is not None
        assert first.process.wait(10) == -9
        sink.on_message = None
        make_daemon("d2", **env, **sink.env())

        async def recorded() -> bool:
            status = await pg.fetchval(
                "SELECT status FROM notifications WHERE kind = 'shipping_confirmation'"
            )
            return bool(status == "sent")

        await eventually(recorded, what="the confirmation to be recorded as sent")
    # At most a resend, and recognisably the same message.
    copies = sink.of_kind("on its way")
    assert len(copies) == 2
    assert copies[0]["Message-ID"] == copies[1]["Message-ID"]
    stored = await pg.fetchval("SELECT message_id FROM notifications")
    assert stored == copies[0]["Message-ID"]


def post_form(url: str, fields: dict[str, str]) -> tuple[int, str]:
    """A form posted as a browser does (application/x-www-form-urlencoded)."""
    body = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request(  # noqa: S310 - a local test server
        url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:  # noqa: S310
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()
