"""Browser tests: the system's headless Chromium (Debian's ``chromium``), driven by Playwright.

tests/conftest.py loads this module as a plugin, so any test may ask for ``page`` (and
``screenshot``)::

    async def test_the_page_shows_the_order(page: Page, screenshot: Screenshot) -> None:
        await page.goto(url)
        await screenshot(page, "order")

Nothing is downloaded: Playwright drives /usr/bin/chromium (``make test`` installs it when
it is missing), never a browser of its own. Each test gets a browser of its own, because
Playwright's objects belong to one event loop and each test runs in its own; when the test
ends, every Chromium process it started has exited, or is killed.

Screenshots are kept under ``.run/screenshots/<run id>/<test>/<name>.png`` (all workers of
one run share the run id); ``.run/screenshots/latest`` points at the newest run's folder.
Each screenshot's path is printed, so it shows in the report of a failed test (and of a
passed one with ``pytest -rP``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import playwright
import pytest
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import Error as PlaywrightError

SYSTEM_CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 900}
LAUNCH_TIMEOUT_MS = 30_000
NAVIGATION_TIMEOUT_MS = 15_000
ACTION_TIMEOUT_MS = 10_000
CLOSE_TIMEOUT_S = 5.0
EXIT_TIMEOUT_S = 5.0
# Root runs browsers too (CI, containers), and Chromium's sandbox refuses to run as root.
CHROMIUM_ARGS = ("--no-sandbox",)
# The node that runs Playwright's driver, a child of the test process.
PLAYWRIGHT_DRIVER = Path(playwright.__file__).resolve().parent / "driver" / "node"
SCREENSHOTS = Path(__file__).resolve().parent.parent / ".run" / "screenshots"
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

Process = tuple[int, int]  # pid, start time: a pid alone may be reused


def chromium_executable() -> Path:
    """The system's Chromium; the test fails, saying how to install it, if there is none."""
    if os.access(SYSTEM_CHROMIUM, os.X_OK):
        return SYSTEM_CHROMIUM
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            f"Chromium is not installed (no {SYSTEM_CHROMIUM}, no chromium on PATH): "
            "`make test` installs it (Debian: apt-get install chromium)",
            pytrace=False,
        )
    return Path(found)


@pytest.fixture
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    """A headless Chromium of this test's own, closed afterwards with all its processes."""
    executable = chromium_executable()
    # Chromium's crash reporter keeps its files under the XDG folders: the test's, not $HOME.
    home = tmp_path_factory.mktemp("chromium-home")
    env: dict[str, str | float | bool] = {
        **os.environ,
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }
    driver = await async_playwright().start()
    started: set[Process] = set()
    try:
        launched = await driver.chromium.launch(
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_ARGS),
            env=env,
            timeout=LAUNCH_TIMEOUT_MS,
        )
        try:
            yield launched
        finally:
            # Taken while the processes still hang below this one: once the browser exits,
            # what is left of it belongs to init and is not told from other Chromiums.
            started = harness_processes()
            await _bounded(launched.close())
    finally:
        await _bounded(driver.stop())
        await _end(started)


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh context: fixed viewport, locale and time zone, bounded waits."""
    context = await browser.new_context(
        viewport={"width": VIEWPORT["width"], "height": VIEWPORT["height"]},
        device_scale_factor=1,
        locale="en-US",
        timezone_id="UTC",
    )
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    try:
        yield await context.new_page()
    finally:
        await _bounded(context.close())


async def _bounded(closing: Awaitable[None]) -> None:
    """Wait for ``closing`` a while: a browser that hangs is killed afterwards instead."""
    with contextlib.suppress(PlaywrightError, TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await closing


class Screenshot:
    """Saves a page's screenshot as ``<folder>/<name>.png`` and answers its path."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def __call__(self, page: Page, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise ValueError(f"a screenshot name is letters, digits, '.', '_' or '-': {name!r}")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{name}.png"
        await page.screenshot(path=path, full_page=True)
        print(f"screenshot: {path}")
        return path


@pytest.fixture(scope="session")
def screenshot_run_folder() -> Path:
    """This run's screenshot folder, the same for every xdist worker of the run."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
    folder = SCREENSHOTS / run_id[:12]
    folder.mkdir(parents=True, exist_ok=True)
    # Replaced in one step, so a worker never sees the link missing while another renews it.
    link = SCREENSHOTS / f".latest-{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(folder.name)
    link.replace(SCREENSHOTS / "latest")
    return folder


@pytest.fixture
def screenshot(screenshot_run_folder: Path, request: pytest.FixtureRequest) -> Screenshot:
    """``await screenshot(page, name)`` keeps a PNG under this test's own folder."""
    test = f"{request.node.path.stem}.{request.node.name}"
    return Screenshot(screenshot_run_folder / _UNSAFE.sub("_", test))


def harness_processes() -> set[Process]:
    """Every process of Chromium or of Playwright's driver that descends from this one."""
    children: dict[int, list[Process]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                children.setdefault(stat[1], []).append((int(entry.name), stat[2]))
    found: set[Process] = set()
    below = [os.getpid()]
    while below:
        for process in children.get(below.pop(), []):
            below.append(process[0])
            if _of_harness(process[0]):
                found.add(process)
    return found


async def _end(processes: set[Process]) -> None:
    """Wait a little for ``processes`` to exit, then kill what is left of them."""
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    left = _alive(processes)
    while left and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # bounded wait for processes to exit on their own
        left = _alive(processes)
    for pid, _ in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(processes: set[Process]) -> set[Process]:
    alive = set()
    for pid, started in processes:
        stat = _stat(pid)
        if stat is not None and stat[2] == started and stat[0] != "Z":
            alive.add((pid, started))
    return alive


def _stat(pid: int) -> tuple[str, int, int] | None:
    """A process's state, parent pid and start time, or None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name, in parentheses, may itself hold spaces and parentheses.
    fields = raw.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[19])


def _of_harness(pid: int) -> bool:
    try:
        executable = Path(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return False
    return executable == PLAYWRIGHT_DRIVER or executable.name.startswith(
        ("chromium", "chrome", "headless_shell")
    )
