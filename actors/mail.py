"""Sending messages to order actors: stored in PostgreSQL first, then streamed.

A message is acknowledged to whoever sent it (a platform, an operator) once it is stored;
putting it on the Redis stream follows. If that fails or the process dies in between, the
pump streams it later: a message is never lost, and one streamed twice is recognised by
its sequence number.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from actors.batching import Coalescer
from actors.order.messages import BackorderFilled, Message
from actors.ports.mail import Mailbox, MessageStream, Posted
from actors.stock import Adjusted

log = logging.getLogger("orderd.mail")

_NOTE_EVERY_S = 0.25


class Mail:
    def __init__(self, mailbox: Mailbox, stream: MessageStream) -> None:
        self._mailbox = mailbox
        self._stream = stream
        # Noting "streamed" is bookkeeping for the pump, which leaves batches younger than
        # a few seconds alone: nobody waits for it, so the notes of a quarter of a second
        # share one statement. At a steady thousand webhooks a second, one statement per
        # batch of a few cost PostgreSQL as much as storing them.
        self._notes: Coalescer[Sequence[int], None] = Coalescer(
            self._note_streamed, max_in_flight=1, linger_s=_NOTE_EVERY_S
        )
        self._noting: set[asyncio.Task[None]] = set()

    async def send(self, messages: Sequence[Message]) -> list[Posted]:
        """Store and stream ``messages``; they are durable when this returns."""
        if not messages:
            return []
        posted = await self._mailbox.post(messages)
        await self.stream(posted)
        return posted

    async def stream(self, posted: Sequence[Posted]) -> None:
        """Put stored messages on the stream; on failure the pump retries them."""
        if not posted:
            return
        try:
            await self._stream.add(posted)
        except self._stream.failures as exc:
            log.warning("stream unavailable, %d message(s) left to the pump: %s", len(posted), exc)
            return
        batches = sorted({message.batch for message in posted if message.batch is not None})
        if not batches:
            return
        task = asyncio.create_task(self._note(batches))
        self._noting.add(task)
        task.add_done_callback(self._noting.discard)

    async def _note(self, batches: Sequence[int]) -> None:
        try:
            await self._notes.submit(batches)
        except Exception as exc:  # streamed already; a second copy later is harmless
            log.warning("could not note %d batch(es) as streamed: %s", len(batches), exc)

    async def _note_streamed(self, notes: Sequence[Sequence[int]]) -> list[None]:
        await self._mailbox.streamed([batch for batches in notes for batch in batches])
        return [None] * len(notes)

    async def drain(self) -> None:
        """Wait for the streamed notes still being written."""
        while self._noting:
            await asyncio.gather(*self._noting, return_exceptions=True)

    async def tell_filled(self, adjusted: Adjusted) -> None:
        """Tell each order whose backorder a stock arrival filled."""
        await self.send(
            [
                BackorderFilled(
                    order_id=fill.order_id, warehouse=adjusted.warehouse, lines=fill.lines
                )
                for fill in adjusted.fills
            ]
        )

    async def pump(self, older_than_s: float = 5.0, limit: int = 500) -> int:
        """Stream stored messages that are not known to be on the stream; return how many.

        Each batch goes on the stream once: it is noted as streamed before this returns, so
        the next call finds the batches after it. A failure (Redis or PostgreSQL away) is
        raised, for the caller to wait before trying again.
        """
        before = datetime.now(UTC) - timedelta(seconds=older_than_s)
        waiting = await self._mailbox.unstreamed(before, limit)
        if not waiting:
            return 0
        await self._stream.add(waiting)
        batches = sorted({message.batch for message in waiting if message.batch is not None})
        await self._mailbox.streamed(batches)
        return len(waiting)

    async def restream_order(self, order_id: str, before_seq: int) -> int:
        """Stream again the order's messages not applied yet and numbered before
        ``before_seq`` (one kept waiting for them); return how many."""
        missing = await self._mailbox.unapplied_of(order_id, before_seq)
        await self._stream.add(missing)
        return len(missing)
