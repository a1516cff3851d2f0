"""HTTP calls to a carrier's API, shared by the EasyPost and Shippo adapters.

One :class:`CarrierHttp` per adapter owns an ``aiohttp.ClientSession`` (made on first use,
inside the running loop). Every failure becomes a :class:`CarrierError`:

- no answer (connection refused or reset, timeout), HTTP 429 and 5xx: ``temporary``;
- any other 4xx: permanent, with the carrier's own error text;
- an answer that is not JSON, not the documented shape, or too large: permanent,
  "malformed answer from <carrier>".

The API key is sent only to the carrier's API, never to label URLs (those are storage
links such as S3), and is removed from any text that ends up in an error message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

import aiohttp
import msgspec

from actors.shipping.carriers import CarrierError, LabelFormat
from adapters.bounded import TooLarge, read_bounded

T = TypeVar("T")

# Shipments with every carrier's rates are tens of kilobytes; anything near this is wrong.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
# A 4x6 label is well under 1 MB even as a high-resolution PDF.
MAX_LABEL_BYTES = 10 * 1024 * 1024
_MAX_ERROR_TEXT = 300

_encode = msgspec.json.Encoder().encode


def _is_temporary(status: int) -> bool:
    return status == 429 or status >= 500


def _looks_like(label: bytes, label_format: LabelFormat) -> bool:
    """True when ``label`` starts as a file of ``label_format`` does (PDF or ZPL II)."""
    if label_format == "pdf":
        return label.startswith(b"%PDF-")
    return label.lstrip().startswith(b"^XA")


class CarrierHttp:
    """JSON calls to one carrier's API and label downloads, on a session of its own.

    ``error_text`` turns the body of a refused request into the carrier's message (or None
    when the body says nothing usable); ``secret`` is blanked out of every error message.
    """

    def __init__(
        self,
        *,
        carrier: str,
        base_url: str,
        authorization: str,
        secret: str,
        timeout_s: float,
        error_text: Callable[[bytes], str | None],
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        max_label_bytes: int = MAX_LABEL_BYTES,
    ) -> None:
        self.carrier = carrier
        self._base_url = base_url.rstrip("/")
        self._authorization = authorization
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._error_text = error_text
        self._max_answer_bytes = max_answer_bytes
        self._max_label_bytes = max_label_bytes
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError(f"the {self.carrier} client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "[redacted]") if self._secret else text

    def malformed(self) -> CarrierError:
        """The error for an answer that is not what the carrier documents."""
        return CarrierError(f"malformed answer from {self.carrier}", temporary=False)

    async def call(
        self,
        method: str,
        path: str,
        answer: type[T],
        *,
        body: object = None,
        params: Mapping[str, str] | None = None,
    ) -> T:
        """``method`` on ``path`` (below the base URL) with ``body`` as JSON; the answer
        decoded as ``answer``."""
        headers = {"Authorization": self._authorization, "Accept": "application/json"}
        data: bytes | None = None
        if body is not None:
            data = _encode(body)
            headers["Content-Type"] = "application/json"
        url = f"{self._base_url}{path}"
        status, content = await self._fetch(
            method, url, headers=headers, data=data, params=params, limit=self._max_answer_bytes
        )
        if not 200 <= status < 300:
            raise self._refused(status, content)
        try:
            return msgspec.json.decode(content, type=answer)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise self.malformed() from None

    async def fetch_label(self, url: str, label_format: LabelFormat) -> bytes:
        """The label file at ``url``, checked to be ``label_format``.

        The API key is not sent: label URLs point at file storage, not at the API.
        """
        if urlsplit(url).scheme not in ("http", "https"):
            raise self.malformed()
        status, content = await self._fetch(
            "GET", url, headers={}, data=None, params=None, limit=self._max_label_bytes
        )
        if not 200 <= status < 300:
            raise CarrierError(
                f"{self.carrier} label file not available (HTTP {status})",
                temporary=_is_temporary(status),
            )
        if not _looks_like(content, label_format):
            raise CarrierError(
                f"{self.carrier} label file is not {label_format.upper()}", temporary=False
            )
        return content

    async def _fetch(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        data: bytes | None,
        params: Mapping[str, str] | None,
        limit: int,
    ) -> tuple[int, bytes]:
        session = self._open_session()
        try:
            async with session.request(
                method, url, headers=headers, data=data, params=params
            ) as response:
                return response.status, await read_bounded(response, limit)
        except TooLarge:
            raise CarrierError(
                f"malformed answer from {self.carrier}: larger than {limit} bytes",
                temporary=False,
            ) from None
        except TimeoutError:
            raise CarrierError(f"{self.carrier} did not answer in time", temporary=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CarrierError(
                f"{self.carrier} unreachable: {type(exc).__name__}", temporary=True
            ) from None

    def _refused(self, status: int, content: bytes) -> CarrierError:
        text = self._error_text(content)
        detail = f": {self._redact(' '.join(text.split()))[:_MAX_ERROR_TEXT]}" if text else ""
        if _is_temporary(status):
            return CarrierError(f"{self.carrier} answered HTTP {status}{detail}", temporary=True)
        return CarrierError(
            f"{self.carrier} refused the request (HTTP {status}){detail}", temporary=False
        )

    async def close(self) -> None:
        """Close the session; the client cannot be used afterwards."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
