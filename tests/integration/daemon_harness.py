"""Running real ``orderd run`` processes in tests, and talking to them as platforms do."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters.platforms.signatures import sign_generic, sign_shopify, sign_woocommerce
from daemon.demo import MailSink
from tests.conftest import ORDERD

SECRET = "shared-secret"
ADMIN_TOKEN = "admin-token"
PAYLOADS = Path(__file__).resolve().parents[1] / "unit" / "payloads"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Daemon:
    """One ``orderd run`` process on a port of its own."""

    def __init__(self, env: Mapping[str, str], log_path: Path, name: str) -> None:
        self.port = free_port()
        self.env = {
            **env,
            "ORDERD_HTTP__PORT": str(self.port),
            "ORDERD_DAEMON__CONSUMER_NAME": name,
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, http: bool = True) -> None:
        """Start and wait until ready: answering ``/readyz``, or (a process serving no
        HTTP, the actors role) having logged so."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(ORDERD), "run"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"orderd run exited: {self.log_path.read_text()[-2000:]}")
            if self._ready(http):
                return
            time.sleep(0.05)  # bounded wait for a process to open its port
        raise RuntimeError(f"orderd run did not become ready: {self.log_path.read_text()[-2000:]}")

    def _ready(self, http: bool) -> bool:
        if not http:
            return "orderd ready" in self.log_path.read_text()
        try:
            return get(f"{self.url}/readyz")[0] == 200
        except OSError:
            return False

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def wait(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.signal(signal.SIGTERM)
        try:
            return self.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


def request(
    url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, Any]:
    req = urllib.request.Request(  # noqa: S310 - a local test server
        url, data=body, headers=dict(headers or {}), method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:  # noqa: S310
            raw = answer.read()
            status = answer.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def get(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
    return request(url, None, headers)


def shopify_body(
    external_id: int = 820982911946154508, name: str = "#1001", **changes: Any
) -> bytes:
    data = json.loads((PAYLOADS / "shopify_orders_paid.json").read_text())
    data["id"] = external_id
    data["name"] = name
    data.update(changes)
    return json.dumps(data).encode()


def shopify_headers(
    body: bytes, topic: str = "orders/paid", webhook_id: str | None = None, secret: str = SECRET
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign_shopify(body, secret),
        "X-Shopify-Webhook-Id": webhook_id or f"w-{time.monotonic_ns()}",
        "X-Shopify-Event-Id": f"e-{time.monotonic_ns()}",
    }


def woocommerce_headers(body: bytes, topic: str = "order.updated") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Signature": sign_woocommerce(body, SECRET),
        "X-WC-Webhook-Delivery-ID": f"d-{time.monotonic_ns()}",
    }


def generic_headers(body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Orderd-Signature": sign_generic(body, SECRET)}


def generic_body(order_ref: str, lines: list[tuple[str, int]], status: str = "paid") -> bytes:
    return json.dumps(
        {
            "id": order_ref,
            "name": f"#{order_ref}",
            "status": status,
            "paid_at": "2026-11-26T09:00:00Z",
            "currency": "EUR",
            "customer": {"email": "c@example.com"},
            "shipping_address": {"name": "C", "line1": "Damrak 1", "city": "Amsterdam",
                                 "postal_code": "1012 LG", "country": "NL"},
            "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        }
    ).encode()  # fmt: skip


async def eventually(
    check: Callable[[], Awaitable[bool]], within_s: float = 20.0, what: str = "condition"
) -> None:
    """Wait until ``check`` holds: the daemon works in another process, at its own pace."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def daemon_env(test_env: Mapping[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERD_")}
    env.update(test_env)
    env.update(
        {
            "ORDERD_WEBHOOKS__SHOPIFY__ENABLED": "true",
            "ORDERD_WEBHOOKS__SHOPIFY__SECRET": SECRET,
            "ORDERD_WEBHOOKS__WOOCOMMERCE__ENABLED": "true",
            "ORDERD_WEBHOOKS__WOOCOMMERCE__SECRET": SECRET,
            "ORDERD_WEBHOOKS__GENERIC__ENABLED": "true",
            "ORDERD_WEBHOOKS__GENERIC__SECRET": SECRET,
            "ORDERD_ADMIN__TOKEN": ADMIN_TOKEN,
            "ORDERD_DAEMON__SHUTDOWN_GRACE_S": "5",
            "ORDERD_RUNTIME__CLAIM_IDLE_MS": "2000",
            "ORDERD_RUNTIME__LEASE_MS": "2000",
            # Orders stay with the sandbox warehouse unless a test lets it pack at once.
            "ORDERD_WMS__SANDBOX_DELAY_S": "3600",
        }
    )
    env.update(extra)
    return env


class SmtpSink(MailSink):
    """The demo's SMTP server, for tests: it can crash a sender mid-message."""

    def __init__(self) -> None:
        super().__init__()
        # Runs after a message is kept and before it is acknowledged (to crash a sender).
        self.on_message: Callable[[], None] | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if self.on_message is not None:
            self.on_message()
        return answer

    def __enter__(self) -> SmtpSink:
        super().__enter__()
        return self

    def env(self) -> dict[str, str]:
        """Settings that send orderd's mail here."""
        return {"ORDERD_EMAIL__HOST": "127.0.0.1", "ORDERD_EMAIL__PORT": str(self.port)}

    def of_kind(self, subject_part: str) -> list[Any]:
        return [m for m in self.messages if subject_part.lower() in str(m["Subject"]).lower()]


class RecordingWms:
    """A WMS endpoint on this machine: keeps what it is sent, fails when told to."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.failures: list[int] = []
        self.app = web.Application()
        self.app.router.add_post("/requests", self._take)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.url = ""

    async def _take(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((body, dict(request.headers)))
        if self.failures:
            return web.Response(status=self.failures.pop(0), text="busy")
        return web.json_response({"accepted": True}, status=202)

    async def __aenter__(self) -> RecordingWms:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/requests"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()
