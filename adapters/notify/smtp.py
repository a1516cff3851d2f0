"""Customer email over SMTP, one connection per message (aiosmtplib).

``aiosmtplib.send`` connects, optionally upgrades, authenticates, sends and quits. As
aiosmtplib documents it: ``use_tls=True`` speaks TLS from the first byte (SMTPS, usually
port 465); ``start_tls=True`` upgrades a plain connection with STARTTLS (usually port 587)
and fails when the server does not offer it; ``start_tls=False`` never upgrades (the
default, ``None``, would upgrade only when offered, which an attacker can suppress).
Server certificates are checked against the system trust store; ``SSL_CERT_FILE`` names
another bundle, e.g. for a relay with a private CA.

Every message is multipart/alternative (plain text, then HTML). Its Message-ID is derived
from the message's idempotency key, so a resend after a crash carries the same Message-ID
and the recipient's mail system can recognise the duplicate.

Every failure becomes a :class:`~actors.notify.model.NotifyError`:

- no connection, a timeout, a dropped connection, a 4xx reply: ``temporary``;
- a 5xx reply (recipient refused, message refused, bad credentials), a server without
  STARTTLS or AUTH when they are configured, a certificate that is not trusted, an
  address that is not one, a template that does not render: permanent.

Error texts never carry the password, and the recipient's address is masked in the
server's own words (which often quote it).
"""

from __future__ import annotations

import hashlib
import re
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Literal

import aiosmtplib

from actors.notify.model import NotifyError, Outgoing, Sent
from adapters.errors import ConfigError
from adapters.notify.templates import TemplateError, Templates

# Deliberately loose: the server has the last word; this only keeps out what is plainly
# not one address (several addresses, display names, header tricks).
_ADDRESS = re.compile(r"[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+")
_MAX_REPLY_TEXT = 200


def message_id_for(idempotency_key: str, domain: str) -> str:
    """The Message-ID header value for the message with ``idempotency_key``.

    ``<first 32 hex digits of sha256(key)@domain>``: the same key always gives the same id,
    and the id reveals nothing about the order.
    """
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{domain}>"


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
    ) -> None:
        self._host = host
        self._port = port
        self._tls = tls
        self._username = username
        self._password = password
        self._sender = sender
        self._reply_to = reply_to
        self._templates = templates
        self._timeout_s = timeout_s
        # The envelope sender is the bare address; the From header keeps any display name.
        self._envelope_sender = parseaddr(sender)[1]
        if not _ADDRESS.fullmatch(self._envelope_sender):
            raise ConfigError(f"smtp sender {sender!r} is not an email address")
        self._domain = message_id_domain or self._envelope_sender.rpartition("@")[2]

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
        try:
            subject, text, body = self._templates.render_email(message)
        except TemplateError as exc:
            raise NotifyError(str(exc), temporary=False) from None
        message_id = message_id_for(message.idempotency_key, self._domain)
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = recipient
        if self._reply_to:
            mail["Reply-To"] = self._reply_to
        mail["Subject"] = subject
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["Message-ID"] = message_id
        # Which message this is, for the store's mail rules and its own checks.
        mail["X-Orderd-Kind"] = message.kind
        mail.set_content(text)
        mail.add_alternative(body, subtype="html")
        try:
            await aiosmtplib.send(
                mail,
                sender=self._envelope_sender,
                recipients=[recipient],
                hostname=self._host,
                port=self._port,
                use_tls=self._tls == "implicit",
                start_tls=self._tls == "starttls",
                username=self._username or None,
                password=self._password if self._username else None,
                timeout=self._timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._failure(exc, recipient) from None
        return Sent(message_id)

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
        """Nothing to release: every message has a connection of its own."""
