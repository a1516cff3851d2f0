"""Reading an HTTP answer from outside without letting it grow without bound."""

from __future__ import annotations

import aiohttp


class TooLarge(Exception):
    """The answer passed the limit; what was read is dropped."""


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or :class:`TooLarge` as soon as it passes ``limit`` bytes."""
    if response.content_length is not None and response.content_length > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def retry_after_seconds(header: str | None) -> float | None:
    """A ``Retry-After`` header's seconds (None when absent or a date)."""
    try:
        return max(0.0, float(header)) if header else None
    except ValueError:
        return None
