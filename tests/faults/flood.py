"""A flood of signed order webhooks, sent the way a platform sends them.

Many deliveries go out at once over a bounded number of connections. A delivery answered
503, or lost to a refused, reset or timed-out connection, is sent again with the same
body and delivery id after a short back-off, as a platform retries, until it is answered
202 or 200, or its attempts or the flood's time run out. Every answer is recorded, per
delivery and per order, so a test can tell what the daemon said and when.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.integration.daemon_harness import generic_body, generic_headers

Lines = list[tuple[str, int]]

# Answers a platform stops at: taken, or refused for good.
DONE = frozenset({200, 202, 400, 401, 404, 413, 415})


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery of an order, to one daemon."""

    ref: str  # the platform's order id
    key: str  # names this delivery in the record
    url: str
    body: bytes
    headers: Mapping[str, str]
    paid: bool = True  # a paid order, not its cancellation


def order_body(ref: str, lines: Lines, status: str = "paid") -> bytes:
    """A generic order whose customer left no contact: no customer message is due, so the
    outbox (and a mail server nobody runs here) stays out of the flood's way."""
    data = json.loads(generic_body(ref, lines, status))
    data.pop("customer", None)
    return json.dumps(data).encode()


def paid(ref: str, lines: Lines, url: str, delivery_id: str | None = None) -> Delivery:
    """A paid generic order; without ``delivery_id`` the daemon names the delivery by its
    body, so a retry of the same body is recognised as the same delivery."""
    body = order_body(ref, lines)
    headers = generic_headers(body)
    if delivery_id is not None:
        headers["X-Orderd-Delivery-Id"] = delivery_id
    return Delivery(ref, f"{ref}:paid:{delivery_id or ''}", url, body, headers)


def cancelled(ref: str, lines: Lines, url: str) -> Delivery:
    """The platform's cancellation of an order."""
    body = order_body(ref, lines, status="cancelled")
    return Delivery(ref, f"{ref}:cancel", url, body, generic_headers(body), paid=False)


# A job is the deliveries of one order, in stages: the deliveries of a stage go out at
# once, and the next stage starts once every one of them has its final answer.
Job = Sequence[Sequence[Delivery]]


@dataclass(frozen=True)
class Attempt:
    """One try of a delivery: an HTTP answer, or why there was none."""

    at: float  # time.monotonic() when the answer (or failure) came
    status: int | None  # None: no HTTP answer
    outcome: str | None = None  # the answer's "status" field: accepted, duplicate, ...
    error: str | None = None  # refused, reset, timeout


@dataclass
class Flood:
    """Send ``jobs`` with at most ``concurrency`` requests in flight."""

    jobs: Sequence[Job]
    concurrency: int = 32
    max_attempts: int = 400
    within_s: float = 90.0
    timeout_s: float = 5.0  # a platform's own patience (Shopify waits 5 s)
    backoff_s: float = 0.05
    backoff_max_s: float = 1.0
    record: dict[str, list[Attempt]] = field(default_factory=dict)
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    accepted: int = 0  # deliveries answered 202
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition, init=False)
    _started: float = field(default=0.0, init=False)

    async def run(self) -> None:
        """Send every job; returns when each delivery has its final answer or gave up."""
        self._started = time.monotonic()
        queue: asyncio.Queue[Job] = asyncio.Queue()
        for job in self.jobs:
            queue.put_nowait(job)
        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            workers = [
                asyncio.create_task(self._worker(session, queue))
                for _ in range(min(self.concurrency, len(self.jobs)) or 1)
            ]
            await asyncio.gather(*workers)

    async def _worker(self, session: aiohttp.ClientSession, queue: asyncio.Queue[Job]) -> None:
        while not queue.empty():
            job = queue.get_nowait()
            for stage in job:
                await asyncio.gather(*(self._deliver(session, d) for d in stage))

    async def _deliver(self, session: aiohttp.ClientSession, delivery: Delivery) -> None:
        self.deliveries[delivery.key] = delivery
        attempts = self.record.setdefault(delivery.key, [])
        deadline = self._started + self.within_s
        pause = self.backoff_s
        for _ in range(self.max_attempts):
            attempt = await self._post(session, delivery)
            attempts.append(attempt)
            async with self._changed:
                if attempt.status == 202:
                    self.accepted += 1
                self._changed.notify_all()
            if attempt.status in DONE or time.monotonic() + pause > deadline:
                return
            # A platform's retry back-off, not a wait for anything in the daemon.
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.backoff_max_s)

    async def _post(self, session: aiohttp.ClientSession, delivery: Delivery) -> Attempt:
        url = f"{delivery.url}/webhooks/orders"
        try:
            async with session.post(url, data=delivery.body, headers=delivery.headers) as answer:
                try:
                    data: Any = await answer.json(content_type=None)
                except ValueError:
                    data = None
                outcome = data.get("status") if isinstance(data, dict) else None
                return Attempt(time.monotonic(), answer.status, outcome)
        except TimeoutError:
            return Attempt(time.monotonic(), None, error="timeout")
        except aiohttp.ClientConnectorError:
            return Attempt(time.monotonic(), None, error="refused")
        except (aiohttp.ClientError, OSError) as exc:
            return Attempt(time.monotonic(), None, error=type(exc).__name__)

    async def wait_accepted(self, count: int, within_s: float) -> bool:
        """Wait until ``count`` deliveries were answered 202; False if the time ran out
        (or the flood finished) first."""

        def reached() -> bool:
            return self.accepted >= count

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(reached), within_s)
            except TimeoutError:
                return False
        return True

    # -- what the record says ----------------------------------------------------------

    def final(self, key: str) -> Attempt | None:
        attempts = self.record.get(key)
        return attempts[-1] if attempts else None

    def refs(self) -> list[str]:
        """Every order the flood delivered, in the order the jobs name them."""
        seen: dict[str, None] = {}
        for job in self.jobs:
            for stage in job:
                for delivery in stage:
                    seen.setdefault(delivery.ref, None)
        return list(seen)

    def accepted_refs(self) -> set[str]:
        """Orders whose paid delivery was answered 202 at least once."""
        return {
            self.deliveries[key].ref
            for key, attempts in self.record.items()
            if self.deliveries[key].paid and any(a.status == 202 for a in attempts)
        }

    def taken_refs(self) -> set[str]:
        """Orders whose paid delivery ended 202 or 200 (accepted, or known already)."""
        taken = set()
        for key, attempts in self.record.items():
            delivery = self.deliveries[key]
            if delivery.paid and any(a.status in (200, 202) for a in attempts):
                taken.add(delivery.ref)
        return taken

    def unanswered(self) -> list[str]:
        """Deliveries without a final 202 or 200: given up, or refused for good."""
        return sorted(
            key
            for key in self.deliveries
            if (last := self.final(key)) is None or last.status not in (200, 202)
        )

    def accepted_twice(self) -> list[str]:
        """Orders answered 202 more than once (over all their paid deliveries)."""
        counts: Counter[str] = Counter()
        for key, attempts in self.record.items():
            if self.deliveries[key].paid:
                counts[self.deliveries[key].ref] += sum(a.status == 202 for a in attempts)
        return sorted(ref for ref, n in counts.items() if n > 1)

    def final_answers(self, *, paid: bool) -> dict[str, list[tuple[int | None, str | None]]]:
        """Per order, the final (status, outcome) of each of its paid (or cancelling)
        deliveries."""
        answers: dict[str, list[tuple[int | None, str | None]]] = {}
        for key, delivery in self.deliveries.items():
            last = self.final(key)
            if delivery.paid == paid and last is not None:
                answers.setdefault(delivery.ref, []).append((last.status, last.outcome))
        return answers

    def answers(self, since: float = 0.0, until: float = float("inf")) -> Counter[str]:
        """How often each answer came (``503``, ``202``, ``refused``...) in a time window."""
        counted: Counter[str] = Counter()
        for attempts in self.record.values():
            for a in attempts:
                if since <= a.at <= until:
                    counted[str(a.status) if a.status is not None else a.error or "none"] += 1
        return counted

    def summary(self) -> str:
        return (
            f"flood: {len(self.deliveries)} deliveries of {len(self.refs())} orders, "
            f"answers {dict(self.answers())}, {len(self.unanswered())} without 202/200 "
            f"(first: {self.unanswered()[:5]}), accepted twice: {self.accepted_twice()[:5]}"
        )


def single_jobs(orders: Iterable[tuple[str, Lines]], urls: Sequence[str]) -> list[Job]:
    """One paid delivery per order, spread over ``urls`` in turn."""
    return [[[paid(ref, lines, urls[n % len(urls)])]] for n, (ref, lines) in enumerate(orders)]
