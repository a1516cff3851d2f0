"""Customer email over SMTP, through a few connections kept open between messages
(aiosmtplib).

Up to ``connections`` connections to the server are opened as messages need them and kept
for the next ones, so a connection's greeting, EHLO, TLS and login are paid for once, not
per message; no more messages are on their way at once than there are connections. A
connection unused for ``idle_s`` is closed with QUIT, and :meth:`SmtpNotifier.close` quits
them all. The EHLO name is ``ehlo_name``, or this host's fully qualified name, looked up
once.

TLS, as aiosmtplib documents it: ``use_tls=True`` speaks TLS from the first byte (SMTPS,
usually port 465); ``start_tls=True`` upgrades a plain connection with STARTTLS (usually
port 587) and fails when the server does not offer it; ``start_tls=False`` never upgrades
(the default, ``None``, would upgrade only when offered, which an attacker can suppress).
Server certificates and host names are checked against the system trust store, read when
the first connection opens; ``SSL_CERT_FILE`` names another bundle, e.g. for a relay with a
private CA.

Every message is multipart/alternative (plain text, then HTML), both bodies UTF-8 in
quoted-printable, so the message is 7-bit clean and reads the same through any server,
8BITMIME or not; non-ASCII header text is RFC 2047 encoded. A sender or recipient address
that is not ASCII needs a server offering SMTPUTF8, and the headers then go out in UTF-8.
Its Message-ID is derived from the message's idempotency key, so a resend after a crash
carries the same Message-ID and the recipient's mail system can recognise the duplicate.

A kept connection the server has closed meanwhile (its own idle timeout, a 421 reply, a
dropped connection) is replaced: one seen closed is never used, and when a message fails
on a kept connection because the server hung up before the message's DATA command, the
server cannot have taken it, so it goes once more over a new connection. From DATA on, the
server may have taken a message whose answer never came: such a failure is reported as
temporary and the message is not sent again here. After a failed transaction a connection
is reset (RSET) before it carries another message, or closed.

Every failure becomes a :class:`~actors.notify.model.NotifyError`:

- no connection, a timeout, a dropped connection, a 4xx reply: ``temporary``;
- a 5xx reply (recipient refused, message refused, bad credentials), a server without
  STARTTLS or AUTH when they are configured or without SMTPUTF8 when an address needs it,
  a certificate that is not trusted, an address that is not one, a template that does
  not render: permanent.

Error texts never carry the password, and the recipient's address is masked in the
server's own words (which often quote it).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import functools
import hashlib
import re
import socket
import ssl
from datetime import UTC, datetime
from email import quoprimime
from email.headerregistry import HeaderRegistry
from email.utils import format_datetime, parseaddr
from typing import Any, Literal

import aiosmtplib
from aiosmtplib.typing import Default

from actors.notify.model import NotifyError, Outgoing, Sent
from adapters.errors import ConfigError
from adapters.notify.templates import TemplateError, Templates

# Deliberately loose: the server has the last word; this only keeps out what is plainly
# not one address (several addresses, display names, header tricks).
_ADDRESS = re.compile(r"[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+")
_MAX_REPLY_TEXT = 200
# A connection is closed whether or not the server answers QUIT: shutting down does not
# wait on a slow server for long.
_QUIT_TIMEOUT_S = 2.0
_CLOSING = 421  # the server is closing the connection (RFC 5321 4.2.3)

# A message is written out here, header by header and part by part, to the very bytes
# email's generator writes for the same message built with the email.mime classes and
# the SMTP policies (a test holds the two to each other); the generator's walk over a
# message tree cost more than all the rest of sending one. Each header is folded by the
# policy, as the generator does: a plain value as it is unless too long, non-ASCII text as
# RFC 2047 encoded words (or UTF-8 as it is under SMTPUTF8). Registry headers are
# immutable, so the few that are the same on every message come from a cache. Keyed by
# whether the message needs SMTPUTF8.
_HEADERS = functools.lru_cache(maxsize=64)(HeaderRegistry())
_POLICIES = {
    utf8: email.policy.SMTP.clone(utf8=utf8, header_factory=_HEADERS) for utf8 in (False, True)
}
# Both bodies quoted-printable: 7-bit clean whatever the text, long lines wrapped, and
# never holding "=_", so a boundary starting with it needs no search of the bodies.
_BOUNDARY = "=_orderd_alternative"
_HEAD = f'Content-Type: multipart/alternative; boundary="{_BOUNDARY}"\r\nMIME-Version: 1.0\r\n'
_PART = (
    f"\r\n--{_BOUNDARY}\r\nMIME-Version: 1.0\r\n"
    'Content-Type: text/{subtype}; charset="utf-8"\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)
_END = f"\r\n--{_BOUNDARY}--\r\n"
_LINE_END = re.compile("\r\n|\r|\n")


def message_id_for(idempotency_key: str, domain: str) -> str:
    """The Message-ID header value for the message with ``idempotency_key``.

    ``<first 32 hex digits of sha256(key)@domain>``: the same key always gives the same id,
    and the id reveals nothing about the order.
    """
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{domain}>"


class _Connection(aiosmtplib.SMTP):
    """One kept connection, noting whether the current message reached its DATA command:
    from then on the server may have taken it."""

    data_begun = False

    async def data(
        self,
        message: str | bytes,
        /,
        *,
        # aiosmtplib's own signature, timeout included.
        timeout: float | Literal[Default.token] | None = Default.token,  # noqa: ASYNC109
    ) -> aiosmtplib.SMTPResponse:
        self.data_begun = True
        return await super().data(message, timeout=timeout)


def _folded(name: str, value: str, policy: email.policy.EmailPolicy[Any]) -> str:
    """The value of header ``name`` as ``policy`` writes it (encoded, folded), for a header
    that is the same on every message. Raises ValueError for a value holding a line break."""
    _, header = policy.header_store_parse(name, value)
    line: str = policy.fold(name, header)
    return line.removeprefix(f"{name}: ").removesuffix(policy.linesep)


def _text_part(content: str, subtype: str) -> str:
    """A body part as the message carries it: UTF-8 text, quoted-printable."""
    # As a utf-8 Charset with QP body encoding encodes a payload (email.charset).
    encoded = quoprimime.body_encode(content.encode("utf-8").decode("latin-1"))
    return _PART.format(subtype=subtype) + _LINE_END.sub("\r\n", encoded)


def _hung_up(exc: BaseException) -> bool:
    """Whether ``exc`` says the server closed the connection: dropped it, or answered 421
    (after which aiosmtplib closes it too)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return any(refused.code == _CLOSING for refused in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == _CLOSING
    return isinstance(exc, ConnectionError)


class SmtpNotifier:
    """Sends customer email through one SMTP server (a relay or the store's provider)."""

    channel = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: Literal["none", "starttls", "implicit"],
        username: str = "",
        password: str = "",
        sender: str,
        reply_to: str = "",
        templates: Templates,
        timeout_s: float = 15.0,
        message_id_domain: str | None = None,
        connections: int = 4,
        idle_s: float = 30.0,
        ehlo_name: str = "",
    ) -> None:
        self._host = host
        self._port = port
        self._tls = tls
        self._username = username
        self._password = password
        self._templates = templates
        self._timeout_s = timeout_s
        # The envelope sender is the bare address; the From header keeps any display name.
        self._envelope_sender = parseaddr(sender)[1]
        if not _ADDRESS.fullmatch(self._envelope_sender):
            raise ConfigError(f"smtp sender {sender!r} is not an email address")
        self._domain = message_id_domain or self._envelope_sender.rpartition("@")[2]
        # From and Reply-To as each policy writes them, worked out once.
        fixed = [("From", sender), *([("Reply-To", reply_to)] if reply_to else [])]
        try:
            self._fixed_headers = {
                utf8: [(name, _folded(name, value, policy)) for name, value in fixed]
                for utf8, policy in _POLICIES.items()
            }
        except ValueError as exc:
            raise ConfigError(f"smtp sender or reply-to address: {exc}") from None
        if connections < 1:
            raise ConfigError(f"smtp connections must be 1 or more, not {connections}")
        if idle_s <= 0:
            raise ConfigError(f"smtp idle time must be above 0 seconds, not {idle_s}")
        if not ehlo_name.isprintable() or any(char.isspace() for char in ehlo_name):
            raise ConfigError(f"smtp EHLO name {ehlo_name!r} is not a host name")
        self._idle_s = idle_s
        self._ehlo_name = ehlo_name
        # What every connection shares, settled when the first one opens: the EHLO name
        # (getfqdn may ask DNS) and the TLS context (reading the trust store takes a while).
        self._shared: tuple[str, ssl.SSLContext | None] | None = None
        self._sharing = asyncio.Lock()
        self._slots = asyncio.Semaphore(connections)
        # Most recently used last, and taken first: the others stay unused and run out.
        self._idle: list[tuple[_Connection, asyncio.TimerHandle]] = []
        self._quitting: set[asyncio.Task[None]] = set()
        self._closed = False

    async def send(self, message: Outgoing) -> Sent:
        """Render ``message`` and hand it to the SMTP server; the receipt is its Message-ID."""
        if message.channel != "email":
            raise NotifyError(
                f"{message.kind} message for {message.channel} given to the email sender",
                temporary=False,
            )
        recipient = message.to.strip()
        if not _ADDRESS.fullmatch(recipient):
            raise NotifyError(
                f"{message.kind} message: the recipient is not an email address", temporary=False
            )
        # As aiosmtplib's send_message decides: an address that is not ASCII needs SMTPUTF8.
        utf8 = not (self._envelope_sender.isascii() and recipient.isascii())
        message_id = message_id_for(message.idempotency_key, self._domain)
        try:
            content = self._compose(message, recipient, message_id, utf8)
        except TemplateError as exc:
            raise NotifyError(str(exc), temporary=False) from None
        async with self._slots:
            try:
                await self._transfer(content, recipient, ["SMTPUTF8"] if utf8 else [])
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise self._failure(exc, recipient) from None
        return Sent(message_id)

    def _compose(self, message: Outgoing, recipient: str, message_id: str, utf8: bool) -> bytes:
        """``message`` rendered and written out as it goes to the server."""
        subject, text, body = self._templates.render_email(message)
        # Never a header of its own smuggled in by a line break (templates make the
        # subject one line, and the addresses are checked): refused for good.
        if "\n" in subject or "\r" in subject:
            raise TemplateError("the Subject header holds a line break")
        policy = _POLICIES[utf8]
        headers = [
            *self._fixed_headers[utf8],
            ("To", recipient),
            # A plain value goes out as it is, so non-ASCII text takes the header
            # registry's way: RFC 2047 encoded words, or UTF-8 as it is under SMTPUTF8.
            (
                "Subject",
                subject if subject.isascii() else policy.header_factory("Subject", subject),
            ),
            ("Date", format_datetime(datetime.now(UTC))),
            ("Message-ID", message_id),
            # Which message this is, for the store's mail rules and its own checks.
            ("X-Orderd-Kind", message.kind),
        ]
        unsubscribe = message.context.get("unsubscribe_url")
        if unsubscribe:
            if any(c in unsubscribe for c in "<>\r\n "):
                raise TemplateError("the unsubscribe link is not a plain URL")
            # RFC 2369 and RFC 8058: the mail program's own unsubscribe button, one click.
            headers += [
                ("List-Unsubscribe", f"<{unsubscribe}>"),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ]
        written = "".join(
            [
                _HEAD,
                *(policy.fold(name, value) for name, value in headers),
                _text_part(text, "plain"),
                _text_part(body, "html"),
                _END,
            ]
        )
        return written.encode("utf-8") if utf8 else written.encode("ascii", "surrogateescape")

    async def _transfer(self, content: bytes, recipient: str, mail_options: list[str]) -> None:
        """Send ``content`` over a kept connection, or a new one; once more over a new one
        when the server hung up a kept one before the message began."""
        connection = self._take_idle()
        kept = connection is not None
        while True:
            if connection is None:
                connection = await self._connect()
            try:
                await connection.sendmail(
                    self._envelope_sender, [recipient], content, mail_options=mail_options
                )
            except Exception as exc:
                if kept and not connection.data_begun and _hung_up(exc):
                    connection.close()
                    connection, kept = None, False
                    continue
                await self._reset_or_close(connection)
                raise
            except BaseException:  # cut off mid-transaction: its state is unknown
                connection.close()
                raise
            self._keep(connection)
            return

    async def _connect(self) -> _Connection:
        ehlo_name, tls_context = await self._shared_settings()
        connection = _Connection(
            hostname=self._host,
            port=self._port,
            use_tls=self._tls == "implicit",
            start_tls=self._tls == "starttls",
            tls_context=tls_context,
            username=self._username or None,
            password=self._password if self._username else None,
            local_hostname=ehlo_name,
            timeout=self._timeout_s,
        )
        await connection.connect()
        return connection

    async def _shared_settings(self) -> tuple[str, ssl.SSLContext | None]:
        async with self._sharing:
            if self._shared is None:
                name = self._ehlo_name or await asyncio.to_thread(socket.getfqdn)
                context = None
                if self._tls != "none":
                    # As aiosmtplib builds it: certificates and host names checked.
                    context = await asyncio.to_thread(ssl.create_default_context)
                self._shared = (name, context)
            return self._shared

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection, expiry = self._idle.pop()
            expiry.cancel()
            if connection.is_connected:
                return connection
            connection.close()
        return None

    def _keep(self, connection: _Connection) -> None:
        """Keep ``connection`` for the next message, until it has been idle for idle_s."""
        if not connection.is_connected:
            connection.close()
            return
        if self._closed:
            self._quit_soon(connection)
            return
        connection.data_begun = False
        expiry = asyncio.get_running_loop().call_later(self._idle_s, self._expire, connection)
        self._idle.append((connection, expiry))

    async def _reset_or_close(self, connection: _Connection) -> None:
        """After a failed transaction: reset the connection for the next message, or close
        it. aiosmtplib resets after a refused command, but does not say if that worked."""
        if connection.is_connected:
            try:
                await connection.rset()
            except (aiosmtplib.SMTPException, OSError):
                pass
            except BaseException:
                connection.close()
                raise
            else:
                self._keep(connection)
                return
        connection.close()

    def _expire(self, connection: _Connection) -> None:
        self._idle = [(kept, expiry) for kept, expiry in self._idle if kept is not connection]
        self._quit_soon(connection)

    def _quit_soon(self, connection: _Connection) -> None:
        task = asyncio.get_running_loop().create_task(_quit(connection))
        self._quitting.add(task)
        task.add_done_callback(self._quitting.discard)

    def _failure(self, exc: Exception, recipient: str) -> NotifyError:
        where = f"mail server {self._host}:{self._port}"
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = [refused.code for refused in exc.recipients]
            reply = "; ".join(self._reply(r.code, r.message, recipient) for r in exc.recipients)
            return NotifyError(
                f"{where} refused the recipient: {reply}",
                temporary=all(400 <= code < 500 for code in codes),
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            what = {
                aiosmtplib.SMTPAuthenticationError: "refused the login",
                aiosmtplib.SMTPSenderRefused: "refused the sender",
                aiosmtplib.SMTPDataError: "refused the message",
            }.get(type(exc), "answered")
            reply = self._reply(exc.code, exc.message, recipient)
            return NotifyError(f"{where} {what}: {reply}", temporary=400 <= exc.code < 500)
        # Before OSError: an untrusted certificate or a TLS mode the port does not speak
        # will not fix itself.
        tls_failure = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
        if isinstance(tls_failure, ssl.SSLError):
            reason = tls_failure.reason or type(tls_failure).__name__
            return NotifyError(f"TLS with {where} failed: {reason}", temporary=False)
        if isinstance(exc, TimeoutError):
            return NotifyError(f"{where} did not answer in time", temporary=True)
        if isinstance(exc, OSError):
            return NotifyError(f"{where} unreachable: {type(exc).__name__}", temporary=True)
        # What is left is the server lacking something configured (STARTTLS, AUTH).
        return NotifyError(f"{where}: {self._redact(str(exc), recipient)}", temporary=False)

    def _reply(self, code: int, text: str, recipient: str) -> str:
        return f"{code} {self._redact(' '.join(text.split()), recipient)[:_MAX_REPLY_TEXT]}"

    def _redact(self, text: str, recipient: str) -> str:
        if self._password:
            text = text.replace(self._password, "[redacted]")
        return text.replace(recipient, "[recipient]")

    async def close(self) -> None:
        """Quit every kept connection; a message on its way meanwhile quits its own after."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection, expiry in idle:
            expiry.cancel()
            self._quit_soon(connection)
        while self._quitting:
            await asyncio.gather(*self._quitting)


async def _quit(connection: _Connection) -> None:
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        await connection.quit(timeout=_QUIT_TIMEOUT_S)
    connection.close()
