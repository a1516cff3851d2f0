"""Customer SMS through Twilio's Messages API.

As Twilio documents it (twilio.com/docs/messaging/api/message-resource, "Twilio API
responses"):

- ``POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded ``To``,
  ``From`` and ``Body``; HTTP basic auth with the Account SID as user name and the Auth
  Token as password;
- a created message is answered ``201`` with the Message resource as JSON, of which orderd
  keeps ``sid`` (and reads ``status``, e.g. "queued" or "accepted");
- a refused request is answered with ``{"code", "message", "more_info", "status"}``, e.g.
  ``400`` and code 21211 for a 'To' number that is not valid.

Failures become :class:`~actors.notify.model.NotifyError`: no connection, timeouts, HTTP
429 and 5xx are ``temporary``; any other 4xx is permanent with Twilio's code and message;
an answer that is not the documented JSON is permanent ("malformed answer from twilio").
The Auth Token never appears in an error text, and the recipient's number is masked in
Twilio's message (which quotes it).

The Messages API takes no idempotency key: when an answer is lost after Twilio accepted the
message, a retry sends the SMS a second time; a generous timeout keeps that rare.
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import msgspec
from msgspec import Struct

from actors.notify.model import NotifyError, Outgoing, Sent
from actors.notify.rules import is_e164
from adapters.bounded import TooLarge, read_bounded
from adapters.notify.templates import TemplateError, Templates

# A Message resource is about 1 KB; anything near this is not Twilio.
MAX_ANSWER_BYTES = 256 * 1024
_MAX_ERROR_TEXT = 300


class _Created(Struct):
    sid: str
    status: str = ""


class _Refusal(Struct):
    code: int | None = None
    message: str = ""
    more_info: str = ""
    status: int | None = None


class TwilioSms:
    """Sends customer SMS from one Twilio number (or alphanumeric sender id)."""

    channel = "sms"

    def __init__(
        self,
        *,
        base_url: str = "https://api.twilio.com",
        account_sid: str,
        auth_token: str,
        sender: str,
        templates: Templates,
        timeout_s: float = 15.0,
    ) -> None:
        self._url = (
            f"{base_url.rstrip('/')}/2010-04-01/Accounts/{quote(account_sid, safe='')}"
            "/Messages.json"
        )
        self._authorization = aiohttp.encode_basic_auth(account_sid, auth_token)
        self._auth_token = auth_token
        self._sender = sender
        self._templates = templates
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the twilio client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def send(self, message: Outgoing) -> Sent:
        """Render ``message`` and have Twilio send it; the receipt is Twilio's message sid."""
        if message.channel != "sms":
            raise NotifyError(
                f"{message.kind} message for {message.channel} given to the SMS sender",
                temporary=False,
            )
        if not is_e164(message.to):
            raise NotifyError(
                f"{message.kind} message: the recipient is not an E.164 phone number",
                temporary=False,
            )
        try:
            body = self._templates.render_sms(message)
        except TemplateError as exc:
            raise NotifyError(str(exc), temporary=False) from None
        form = {"To": message.to, "From": self._sender, "Body": body}
        session = self._open_session()
        try:
            headers = {"Authorization": self._authorization, "Accept": "application/json"}
            async with session.post(self._url, data=form, headers=headers) as response:
                status = response.status
                content = await read_bounded(response, MAX_ANSWER_BYTES)
        except TooLarge:
            raise NotifyError(
                f"malformed answer from twilio: larger than {MAX_ANSWER_BYTES} bytes",
                temporary=False,
            ) from None
        except TimeoutError:
            raise NotifyError("twilio did not answer in time", temporary=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise NotifyError(f"twilio unreachable: {type(exc).__name__}", temporary=True) from None
        if status in (200, 201):
            try:
                created = msgspec.json.decode(content, type=_Created)
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise NotifyError("malformed answer from twilio", temporary=False) from None
            if not created.sid:
                raise NotifyError("malformed answer from twilio", temporary=False)
            return Sent(created.sid)
        raise self._refused(status, content, message.to)

    def _refused(self, status: int, content: bytes, recipient: str) -> NotifyError:
        detail = ""
        try:
            refusal = msgspec.json.decode(content, type=_Refusal)
        except (msgspec.DecodeError, msgspec.ValidationError):
            refusal = None
        if refusal is not None and (refusal.message or refusal.code is not None):
            text = " ".join(refusal.message.split())
            for secret, mask in (
                (self._auth_token, "[redacted]"),
                (recipient, "[recipient]"),
                (recipient.lstrip("+"), "[recipient]"),
            ):
                if secret:
                    text = text.replace(secret, mask)
            code = f"code {refusal.code}: " if refusal.code is not None else ""
            detail = f": {code}{text}"[: _MAX_ERROR_TEXT + 2]
        if status == 429 or status >= 500:
            return NotifyError(f"twilio answered HTTP {status}{detail}", temporary=True)
        return NotifyError(f"twilio refused the message (HTTP {status}){detail}", temporary=False)

    async def close(self) -> None:
        """Close the session; the sender cannot be used afterwards."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
