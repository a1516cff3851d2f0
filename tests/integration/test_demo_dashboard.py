"""``orderd demo --keep`` and its dashboard in a real browser: the demo runs its week, then
serves its dashboard; headless Chromium signs in through the form, and the page's figures,
charts and tables, and an order's page, match the durable record. Ctrl-C then ends the
demo: what was held is cancelled, the daemon stops, nothing stays reserved."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, expect

from adapters.postgres.pool import connection
from daemon import report
from tests.browser import Screenshot
from tests.conftest import ORDERD, POSTGRES_DSN
from tests.integration.test_cli import demo_environ, nothing_held_or_reserved


async def read_until_serving(stdout: asyncio.StreamReader) -> list[str]:
    """The demo's lines up to the one saying it serves."""
    lines: list[str] = []
    while not lines or lines[-1] != "demo: serving until Ctrl-C":
        line = await stdout.readline()
        assert line, f"the demo ended before serving: {lines[-5:]}"
        lines.append(line.decode().rstrip("\n"))
    return lines


async def _figure(page: Page, name: str) -> str:
    return (await page.locator(f'[data-figure="{name}"]').first.inner_text()).strip()


async def _expected(conn: Any, base: str, days: int) -> dict[str, Any]:
    """The figures the dashboard should show now, from the durable record."""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/healthz") as health:
        now = datetime.fromisoformat((await health.json())["time"])
    figures = await report.figures(conn, now - timedelta(days=days), now)
    return {
        "orders": sum(figures["orders"].values()),
        "held": figures["orders"].get("needs_attention", 0),
        "accuracy": report.percent(figures["shipping_accuracy"]),
        "csat": report.percent(figures["csat"]),
        "ratings": figures["ratings"],
        "shipped-p50": report.hours(figures["fulfillment_time_s"]["shipped_p50"]),
    }


@pytest.mark.timeout(200)  # a week of orders and their deliveries, then the browser
async def test_the_demo_serves_its_dashboard_and_chromium_shows_the_records_figures(
    test_env: dict[str, str],
    tmp_path: Path,
    pg_schema_name: str,
    page: Page,
    screenshot: Screenshot,
) -> None:
    with (tmp_path / "demo.err").open("wb") as errors:
        demo = await asyncio.create_subprocess_exec(
            str(ORDERD), "demo", "--orders", "12", "--keep",
            stdout=asyncio.subprocess.PIPE, stderr=errors, env=demo_environ(test_env),
            cwd=tmp_path,
        )  # fmt: skip
    try:
        assert demo.stdout is not None
        async with asyncio.timeout(150):
            lines = await read_until_serving(demo.stdout)
        # It showed its progress on the way.
        assert any(
            re.match(r"demo: \w{3} \d\d \w{3} \d\d:\d\d: \d+ of 12 orders", x) for x in lines
        )
        dashboard = next(line for line in lines if line.startswith("demo: dashboard: "))
        url = dashboard.removeprefix("demo: dashboard: ")
        found = re.fullmatch(r"(http://127\.0\.0\.1:\d+)/dashboard\?days=(\d+)", url)
        assert found is not None, url
        base, days = found.group(1), int(found.group(2))
        token = lines[lines.index(dashboard) + 1].removeprefix("demo: admin token: ")
        assert len(token) >= 32
        async with connection(POSTGRES_DSN, pg_schema_name) as conn:
            paid = sorted(r["paid_at"] for r in await conn.fetch("SELECT paid_at FROM orders"))
            # Orders came over the demo's week, not all at once.
            assert paid[-1] - paid[0] > timedelta(days=3)

            # Not signed in: the form. A wrong token is refused; the right one opens it.
            await page.goto(url)
            assert page.url == f"{base}/dashboard/login?next=%2Fdashboard%3Fdays%3D{days}"
            await page.get_by_label("Admin token").fill("not the token")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("alert")).to_have_text("That is not the token.")
            await page.get_by_label("Admin token").fill(token)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                f"Fulfillment over the last {days} days"
            )
            assert page.url == url  # back to the page asked for
            await expect(page.locator("svg.chart")).to_have_count(4)
            shot = await screenshot(page, "dashboard")
            expected = await _expected(conn, base, days)
            # The demo's clock runs at the wall clock's pace now: the page stays on its week.
            assert expected["orders"] == len(paid)
            for name, value in expected.items():
                assert await _figure(page, name) == str(value), name
            # Each chart is drawn, and the orders chart stacks every order paid.
            for chart in await page.locator("svg.chart").all():
                box = await chart.bounding_box()
                assert box is not None
                assert box["width"] > 300
            bars = page.locator('svg[data-chart="stacked"] rect[data-value]')
            stacked = [int(await bar.get_attribute("data-value") or 0) for bar in await bars.all()]
            assert sum(stacked) == len(paid)
            held = await conn.fetch(
                "SELECT id, name FROM orders WHERE state = 'needs_attention' ORDER BY id"
            )
            rows = page.locator('table[data-table="held"] tbody tr')
            await expect(rows).to_have_count(len(held))
            assert sorted(
                [await r.get_attribute("data-order") or "" for r in await rows.all()]
            ) == [r["id"] for r in held]

            # An order's page, reached by its link where one is held, else by its address.
            order = held[0] if held else await conn.fetchrow(
                "SELECT id, name FROM orders WHERE state = 'completed' LIMIT 1"
            )  # fmt: skip
            if held:
                await rows.first.get_by_role("link").click()
            else:
                await page.goto(f"{base}/dashboard/orders/{order['id']}")
            await expect(page.get_by_role("heading", level=1)).to_contain_text(order["name"])
            events = await conn.fetchval(
                "SELECT count(*) FROM order_events WHERE order_id = $1", order["id"]
            )
            await expect(page.locator('table[data-table="timeline"] tbody tr')).to_have_count(
                events
            )
            tracking = await conn.fetch(
                "SELECT tracking_number FROM shipments WHERE order_id = $1 "
                "AND tracking_number IS NOT NULL",
                order["id"],
            )
            for row in tracking:
                await expect(page.locator('table[data-table="parcels"]')).to_contain_text(
                    row["tracking_number"]
                )
            messages = await conn.fetchval(
                "SELECT count(*) FROM notifications WHERE order_id = $1", order["id"]
            )
            await expect(page.locator('table[data-table="messages"] tbody tr')).to_have_count(
                messages
            )
            order_shot = await screenshot(page, "order")
            for path in (shot, order_shot):
                assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
                assert path.stat().st_size > 20_000

        demo.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest = (await demo.stdout.read()).decode()
            assert await demo.wait() == 0, (tmp_path / "demo.err").read_text()
        assert "orders held for a person were cancelled" in rest
        assert "Traceback" not in (tmp_path / "demo.err").read_text()
        port = int(base.rsplit(":", 1)[1])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        async with connection(POSTGRES_DSN, pg_schema_name) as conn:
            await nothing_held_or_reserved(conn)
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGINT)  # the demo stops its daemon before it exits
            try:
                await asyncio.wait_for(demo.wait(), 60)
            except TimeoutError:
                demo.kill()
