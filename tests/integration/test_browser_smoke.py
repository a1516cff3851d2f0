"""The browser harness against a real daemon: a customer opens a rating link in headless
Chromium, presses the button, and is thanked; a bad link shows the not-found page."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

import tests.browser
from actors.notify.feedback import issue_token
from tests.browser import VIEWPORT, Screenshot, chromium_executable, harness_processes
from tests.conftest import SetStock, add_products
from tests.integration.daemon_harness import eventually, generic_body, generic_headers, request

MakeDaemon = Callable[..., Any]
FEEDBACK_SECRET = "feedback-secret"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def test_a_customer_rates_an_order_in_a_real_browser(
    make_daemon: MakeDaemon, pg: Any, set_stock: SetStock, page: Page, screenshot: Screenshot
) -> None:
    await add_products(pg, "SKU-B1")
    await set_stock({"SKU-B1": 5})
    daemon = make_daemon(ORDERD_FEEDBACK__SECRET=FEEDBACK_SECRET)
    body = generic_body("B-1", [("SKU-B1", 1)])
    assert request(f"{daemon.url}/webhooks/orders", body, generic_headers(body))[0] == 202

    async def stored() -> bool:
        return await pg.fetchval("SELECT id FROM orders WHERE external_id = 'B-1'") is not None

    await eventually(stored, what="the order to be stored")
    order_id = await pg.fetchval("SELECT id FROM orders WHERE external_id = 'B-1'")
    token = issue_token(order_id, FEEDBACK_SECRET, expires_at=datetime.now(UTC) + timedelta(1))

    # What an empty page weighs, to tell a rendered page's screenshot from a blank one.
    await page.goto("about:blank")
    blank = await screenshot(page, "blank")

    # Opening the link shows the score and a button, and records nothing.
    answer = await page.goto(f"{daemon.url}/feedback/{token}?score=4")
    assert answer is not None
    assert answer.status == 200
    await expect(page).to_have_title("Rate your order")
    stars = page.locator(".stars")
    await expect(stars).to_have_attribute("aria-label", "4 out of 5")
    await expect(stars).to_have_text("\u2605" * 4 + "\u2606")
    rating = await screenshot(page, "rating")
    assert await pg.fetchval("SELECT count(*) FROM feedback") == 0
    # The harness sees the browser's processes: the ones it ends afterwards.
    running = {os.path.basename(os.readlink(f"/proc/{pid}/exe")) for pid, _ in harness_processes()}
    assert {"node", "chromium"} <= running

    await page.get_by_role("button", name="Rate it 4 out of 5").click()
    await expect(page.get_by_role("heading")).to_have_text("Thank you")
    await expect(page.locator("body")).to_contain_text("You rated your order 4 out of 5.")
    assert page.url == f"{daemon.url}/feedback/{token}"
    thanks = await screenshot(page, "thanks")
    assert [r["score"] for r in await pg.fetch("SELECT score FROM feedback")] == [4]

    answer = await page.goto(f"{daemon.url}/feedback/nonsense?score=4")
    assert answer is not None
    assert answer.status == 404
    await expect(page.get_by_role("heading")).to_have_text("Page not found")
    await expect(page.get_by_role("button")).to_have_count(0)
    not_found = await screenshot(page, "not-found")

    for shot in (rating, thanks, not_found):
        assert shot.parent == screenshot.folder
        width, height = png_size(shot)
        assert width == VIEWPORT["width"]
        assert height >= VIEWPORT["height"]
        assert shot.stat().st_size > 1.5 * blank.stat().st_size
    with pytest.raises(ValueError, match="screenshot name"):
        await screenshot(page, "../elsewhere")


def test_a_missing_chromium_fails_the_test_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tests.browser, "SYSTEM_CHROMIUM", tmp_path / "chromium")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match=r"`make test` installs it"):
        chromium_executable()


def png_size(path: Path) -> tuple[int, int]:
    """A PNG's width and height, from its header; fails on anything that is not a PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height
