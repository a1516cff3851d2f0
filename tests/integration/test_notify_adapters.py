"""The SMTP and Twilio adapters against real local servers: aiosmtpd for email, an aiohttp
server speaking Twilio's Messages API for SMS."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import email.utils
import gc
import shutil
import socket
import ssl
import subprocess
import threading
import uuid
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from actors.notify.model import NotifyError, Outgoing
from adapters.errors import ConfigError
from adapters.notify.sms import TwilioSms
from adapters.notify.smtp import SmtpNotifier, message_id_for
from adapters.notify.templates import Templates

SENDER = "Example Goods <orders@shop.example>"
CUSTOMER = "ada@example.com"
PHONE = "+15552345678"
LOGIN, PASSWORD = "shop-relay", "pa55-w0rd-secret"
CONTEXT = {
    "store_name": "Example Goods",
    "customer_name": "Ada",
    "order_name": "#1001",
    "carrier": "UPS",
    "service": "Ground",
    "tracking_number": "1Z999AA10123456784",
    "tracking_url": "https://track.example/1Z999AA10123456784",
    "estimated_delivery": "Friday 14 March",
}


def _confirmation(**changes: Any) -> Outgoing:
    fields: dict[str, Any] = {
        "idempotency_key": "order-1001:shipping_confirmation:shp-1",
        "kind": "shipping_confirmation",
        "channel": "email",
        "to": CUSTOMER,
        "context": CONTEXT,
        "items": (("MUG-BLK", "Mug", 2),),
    }
    fields.update(changes)
    return Outgoing(**fields)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates()


# ---- SMTP ---------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str] = field(default_factory=list)

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


# A connection, by the client's address and port.
Peer = str


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps what it receives and notes, per connection, its
    EHLOs, MAIL commands, messages, resets and QUITs. ``rcpt_reply`` refuses recipients,
    ``rset_reply`` resets;
    ``mail_reply`` answers MAIL on a connection that already carried
    ``mail_reply_after`` messages;
    ``after_data`` says what the server does once it has a message; with ``hold_data``
    set, no message is answered until that many are waiting at once."""

    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    rcpt_reply: str | None = None
    rset_reply: str = "250 OK"
    mail_reply: Literal["421", "hang up"] | None = None
    mail_reply_after: int = 1
    after_data: Literal["answer", "answer and hang up", "hang up"] = "answer"
    hold_data: int = 0
    ehlos: list[tuple[Peer, str]] = field(default_factory=list)
    mails: list[Peer] = field(default_factory=list)
    taken: Counter[Peer] = field(default_factory=Counter)
    resets: list[Peer] = field(default_factory=list)
    quits: list[Peer] = field(default_factory=list)
    waiting: int = 0
    most_waiting: int = 0
    data_seen: threading.Event = field(default_factory=threading.Event)
    quit_seen: threading.Event = field(default_factory=threading.Event)
    _everyone_waiting: asyncio.Event | None = None

    def connections(self) -> set[Peer]:
        return {peer for peer, _ in self.ehlos}

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, answer: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.ehlos.append((str(session.peer), hostname))
        return answer

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.mails.append(str(session.peer))
        if self.mail_reply is not None and self.taken[str(session.peer)] >= self.mail_reply_after:
            if self.mail_reply == "hang up":
                await _hang_up(server)  # cancelled, never returns
            _close_after_answer(server)  # as a 421 says
            return "421 4.3.2 Service shutting down, closing transmission channel"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.received.append(
            Received(
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                content,
                list(envelope.mail_options),
            )
        )
        self.taken[str(session.peer)] += 1
        self.data_seen.set()
        if self.hold_data:
            await self._hold()
        if self.after_data == "hang up":
            await _hang_up(server)
        if self.after_data == "answer and hang up":
            _close_after_answer(server)
        return "250 Message accepted for delivery"

    async def _hold(self) -> None:
        if self._everyone_waiting is None:
            self._everyone_waiting = asyncio.Event()
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        if self.waiting >= self.hold_data:
            self._everyone_waiting.set()
        try:
            # Bounded, so that a client that never sends enough at once fails the test
            # (most_waiting says how many came) rather than hangs it.
            await asyncio.wait_for(self._everyone_waiting.wait(), 10)
        finally:
            self.waiting -= 1

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.resets.append(str(session.peer))
        return self.rset_reply

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits.append(str(session.peer))
        self.quit_seen.set()
        return "221 Bye"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        self.logins.append((login, password))
        # handled=False: aiosmtpd answers a failure with 535 itself.
        return AuthResult(success=(login, password) == (LOGIN, PASSWORD), handled=False)


async def _hang_up(server: SMTP) -> None:
    """Close the connection without a word; aiosmtpd cancels this wait once it is gone."""
    assert server.transport is not None
    server.transport.close()
    await asyncio.Event().wait()


def _close_after_answer(server: SMTP) -> None:
    """Close the connection once the answer the hook returns is written (aiosmtpd writes
    it before it next waits)."""
    assert server.transport is not None
    asyncio.get_running_loop().call_soon(server.transport.close)


@dataclass
class SmtpServer:
    inbox: Inbox
    port: int


@pytest.fixture
def start_smtp() -> Iterator[Callable[..., SmtpServer]]:
    """Start aiosmtpd servers on 127.0.0.1, each in its own thread (``auth=True`` checks
    logins against LOGIN and PASSWORD); all are stopped afterwards."""
    controllers: list[Controller] = []

    def start(*, auth: bool = False, **options: Any) -> SmtpServer:
        inbox = Inbox()
        if auth:
            options["authenticator"] = inbox.authenticate
        port = _free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        return SmtpServer(inbox, port)

    yield start
    for controller in controllers:
        controller.stop()
    # aiosmtpd's own readiness check leaves a TLS transport behind in the server's (now
    # closed) loop: collect it here, quietly, rather than in some later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def trust_certificate(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the test certificate the client's trust store, as an operator would for a relay
    with a private CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))


@pytest.fixture
async def make_smtp(templates: Templates) -> AsyncIterator[Callable[..., SmtpNotifier]]:
    """SMTP senders to a local port; each is closed afterwards."""
    made: list[SmtpNotifier] = []

    def make(port: int, **changes: Any) -> SmtpNotifier:
        options: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": port,
            "tls": "none",
            "sender": SENDER,
            "templates": templates,
            "timeout_s": 5.0,
        }
        options.update(changes)
        notifier = SmtpNotifier(**options)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        await notifier.close()


async def test_smtp_sends_a_shipping_confirmation_in_text_and_html(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp()
    notifier = make_smtp(server.port, reply_to="help@shop.example")
    message = _confirmation()

    sent = await notifier.send(message)

    [received] = server.inbox.received
    assert received.mail_from == "orders@shop.example"
    assert received.rcpt_tos == [CUSTOMER]
    mail = received.parsed()
    assert mail["To"] == CUSTOMER
    assert mail["From"] == SENDER
    assert mail["Reply-To"] == "help@shop.example"
    assert mail["Subject"] == "Your Example Goods order #1001 is on its way"
    assert mail["Date"]
    assert mail.get_content_type() == "multipart/alternative"
    text, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    assert "Tracking number: 1Z999AA10123456784" in text.get_content()
    assert "2 x Mug (MUG-BLK)" in text.get_content()
    assert "<strong>1Z999AA10123456784</strong>" in html.get_content()
    expected_id = message_id_for(message.idempotency_key, "shop.example")
    assert mail["Message-ID"] == expected_id
    assert sent.message_id == expected_id


def _assert_arrived_as(
    received: Received,
    message: Outgoing,
    templates: Templates,
    *,
    sender: str = SENDER,
    reply_to: str = "",
) -> EmailMessage:
    """``received`` parses into the headers and the decoded bodies ``message`` should have."""
    subject, text, html = templates.render_email(message)
    mail = received.parsed()
    names = ["From", "To", "Subject", "Date", "Message-ID", "X-Orderd-Kind", "MIME-Version"]
    names += ["Content-Type", *(["Reply-To"] if reply_to else [])]
    assert sorted(mail.keys()) == sorted(names)
    assert mail["From"] == sender
    assert mail["To"] == message.to
    assert mail["Reply-To"] == (reply_to or None)
    assert mail["Subject"] == subject
    assert mail["Message-ID"] == message_id_for(message.idempotency_key, "shop.example")
    assert mail["X-Orderd-Kind"] == message.kind
    assert mail["MIME-Version"] == "1.0"
    sent_at = email.utils.parsedate_to_datetime(str(mail["Date"]))
    assert abs(datetime.now(UTC) - sent_at) < timedelta(minutes=1)
    assert mail.get_content_type() == "multipart/alternative"
    parts = list(mail.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert [part.get_content_charset() for part in parts] == ["utf-8", "utf-8"]
    # SMTP ends lines with CRLF; the bodies went out with LF.
    assert parts[0].get_content().replace("\r\n", "\n") == text
    assert parts[1].get_content().replace("\r\n", "\n") == html
    head = received.content.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78  # folded as RFC 5322 asks
    return mail


NON_ASCII = {**CONTEXT, "store_name": "Café Crème", "customer_name": "Zoë"}
LONG_NAME = "The Example Goods Company for Kitchenware and Tableware and Everything Between"


@pytest.mark.parametrize(
    ("message", "sender"),
    [
        pytest.param(_confirmation(), SENDER, id="ascii"),
        pytest.param(
            _confirmation(context=NON_ASCII, items=(("MUG-BLK", "Tasse à café", 2),)),
            "Café Crème <orders@shop.example>",
            id="non-ascii subject, body and sender name",
        ),
        pytest.param(
            _confirmation(context={**CONTEXT, "store_name": LONG_NAME}),
            f"{LONG_NAME} <orders@shop.example>",
            id="long subject and sender name",
        ),
        pytest.param(
            _confirmation(context={**NON_ASCII, "store_name": f"Café Crème — {LONG_NAME}"}),
            SENDER,
            id="long non-ascii subject",
        ),
    ],
)
async def test_smtp_message_arrives_with_its_headers_and_both_bodies_intact(
    start_smtp: Callable[..., SmtpServer],
    make_smtp: Callable[..., SmtpNotifier],
    templates: Templates,
    message: Outgoing,
    sender: str,
) -> None:
    server = start_smtp()
    notifier = make_smtp(server.port, sender=sender, reply_to="help@shop.example")

    await notifier.send(message)

    [received] = server.inbox.received
    assert received.mail_from == "orders@shop.example"
    assert received.rcpt_tos == [CUSTOMER]
    _assert_arrived_as(received, message, templates, sender=sender, reply_to="help@shop.example")
    # Without SMTPUTF8 every header is ASCII: non-ASCII text is RFC 2047 encoded.
    assert received.content.split(b"\r\n\r\n", 1)[0].isascii()


async def test_smtp_bodies_holding_the_multipart_boundary_arrive_intact(
    start_smtp: Callable[..., SmtpServer],
    make_smtp: Callable[..., SmtpNotifier],
    tmp_path: Path,
) -> None:
    server = start_smtp()
    await make_smtp(server.port).send(_order(1))
    boundary = server.inbox.received[0].parsed().get_boundary()
    # Lines that would end the parts early, were the bodies written as they are.
    (tmp_path / "shipping_confirmation.txt").write_text(f"--{boundary}\n\n--{boundary}--\n")
    (tmp_path / "shipping_confirmation.html").write_text(f"<pre>\n--{boundary}--\n</pre>\n")
    templates = Templates(tmp_path)
    message = _order(2)

    await make_smtp(server.port, templates=templates).send(message)

    _assert_arrived_as(server.inbox.received[1], message, templates)


async def test_smtp_non_ascii_message_reaches_a_server_without_8bitmime_intact(
    start_smtp: Callable[..., SmtpServer],
    make_smtp: Callable[..., SmtpNotifier],
    templates: Templates,
) -> None:
    # Decoding data, aiosmtpd offers no 8BITMIME and refuses a message that is not ASCII.
    server = start_smtp(decode_data=True)
    notifier = make_smtp(server.port)
    message = _confirmation(context=NON_ASCII, items=(("MUG-BLK", "Tasse à café", 2),))

    await notifier.send(message)

    [received] = server.inbox.received
    assert received.content.isascii()
    _assert_arrived_as(received, message, templates)


async def test_smtp_sends_to_a_non_ascii_address_with_smtputf8(
    start_smtp: Callable[..., SmtpServer],
    make_smtp: Callable[..., SmtpNotifier],
    templates: Templates,
) -> None:
    server = start_smtp(enable_SMTPUTF8=True)
    notifier = make_smtp(server.port)
    message = _confirmation(to="zoë@exämple.com", context=NON_ASCII)

    await notifier.send(message)

    [received] = server.inbox.received
    assert received.rcpt_tos == ["zoë@exämple.com"]
    assert "SMTPUTF8" in received.mail_options
    _assert_arrived_as(received, message, templates)


async def test_smtp_non_ascii_address_to_a_server_without_smtputf8_is_permanent(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp(enable_SMTPUTF8=False)
    notifier = make_smtp(server.port)

    with pytest.raises(NotifyError, match="SMTPUTF8") as caught:
        await notifier.send(_confirmation(to="zoë@exämple.com"))

    assert caught.value.temporary is False
    assert server.inbox.received == []


async def test_smtp_resending_the_same_message_keeps_its_message_id(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp()
    notifier = make_smtp(server.port, message_id_domain="mail.shop.example")
    first = await notifier.send(_confirmation())
    again = await notifier.send(_confirmation())
    other = await notifier.send(_confirmation(idempotency_key="order-1002:shipping"))

    ids = [received.parsed()["Message-ID"] for received in server.inbox.received]
    assert ids[0] == ids[1] == first.message_id == again.message_id
    assert first.message_id == message_id_for(_confirmation().idempotency_key, "mail.shop.example")
    assert ids[2] == other.message_id != first.message_id


def test_message_id_is_the_key_hash_at_the_domain() -> None:
    # sha256("abc") begins ba7816bf8f01cfea414140de5dae2223.
    expected = "<ba7816bf8f01cfea414140de5dae2223@shop.example>"
    assert message_id_for("abc", "shop.example") == expected


async def test_smtp_logs_in_over_starttls(
    start_smtp: Callable[..., SmtpServer],
    make_smtp: Callable[..., SmtpNotifier],
    server_tls: ssl.SSLContext,
    trust_certificate: None,
) -> None:
    server = start_smtp(auth=True, tls_context=server_tls, require_starttls=True)
    notifier = make_smtp(server.port, tls="starttls", username=LOGIN, password=PASSWORD)

    await notifier.send(_confirmation())

    assert server.inbox.logins == [(LOGIN, PASSWORD)]
    [received] = server.inbox.received
    assert received.rcpt_tos == [CUSTOMER]


async def test_smtp_refused_login_is_permanent_and_hides_the_password(
    start_smtp: Callable[..., SmtpServer],
    make_smtp: Callable[..., SmtpNotifier],
    server_tls: ssl.SSLContext,
    trust_certificate: None,
) -> None:
    server = start_smtp(auth=True, tls_context=server_tls, require_starttls=True)
    wrong = "not-the-" + PASSWORD
    notifier = make_smtp(server.port, tls="starttls", username=LOGIN, password=wrong)

    with pytest.raises(NotifyError, match="refused the login") as caught:
        await notifier.send(_confirmation())

    assert caught.value.temporary is False
    assert wrong not in str(caught.value)
    assert server.inbox.received == []


async def test_smtp_sends_over_implicit_tls(
    start_smtp: Callable[..., SmtpServer],
    make_smtp: Callable[..., SmtpNotifier],
    server_tls: ssl.SSLContext,
    trust_certificate: None,
) -> None:
    server = start_smtp(ssl_context=server_tls)
    notifier = make_smtp(server.port, tls="implicit")

    await notifier.send(_confirmation())

    assert len(server.inbox.received) == 1


async def test_smtp_untrusted_certificate_is_permanent(
    start_smtp: Callable[..., SmtpServer],
    make_smtp: Callable[..., SmtpNotifier],
    server_tls: ssl.SSLContext,
) -> None:
    server = start_smtp(tls_context=server_tls, require_starttls=True)
    notifier = make_smtp(server.port, tls="starttls")

    with pytest.raises(NotifyError, match="TLS") as caught:
        await notifier.send(_confirmation())

    assert caught.value.temporary is False
    assert server.inbox.received == []


async def test_smtp_starttls_required_but_not_offered_is_permanent(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp()
    notifier = make_smtp(server.port, tls="starttls")

    with pytest.raises(NotifyError, match="STARTTLS") as caught:
        await notifier.send(_confirmation())

    assert caught.value.temporary is False
    assert server.inbox.received == []


@pytest.mark.parametrize(
    ("reply", "temporary"),
    [
        (f"550 5.1.1 <{CUSTOMER}>: Recipient address rejected: User unknown", False),
        ("451 4.3.0 Temporary lookup failure, try again later", True),
    ],
)
async def test_smtp_refused_recipient_is_permanent_for_5xx_and_temporary_for_4xx(
    start_smtp: Callable[..., SmtpServer],
    make_smtp: Callable[..., SmtpNotifier],
    reply: str,
    temporary: bool,
) -> None:
    server = start_smtp()
    server.inbox.rcpt_reply = reply
    notifier = make_smtp(server.port)

    with pytest.raises(NotifyError, match="refused the recipient") as caught:
        await notifier.send(_confirmation())

    assert caught.value.temporary is temporary
    assert reply[:3] in str(caught.value)
    assert CUSTOMER not in str(caught.value)
    assert server.inbox.received == []


async def test_smtp_with_nothing_listening_is_temporary(
    make_smtp: Callable[..., SmtpNotifier],
) -> None:
    notifier = make_smtp(_free_port())

    with pytest.raises(NotifyError, match="unreachable") as caught:
        await notifier.send(_confirmation())

    assert caught.value.temporary is True


async def test_smtp_refuses_what_it_cannot_address(make_smtp: Callable[..., SmtpNotifier]) -> None:
    notifier = make_smtp(_free_port())
    for message in (
        _confirmation(to="ada@example.com, eve@example.org"),
        _confirmation(to="Ada <ada@example.com>"),
        _confirmation(channel="sms", to=PHONE),
    ):
        with pytest.raises(NotifyError) as caught:
            await notifier.send(message)
        assert caught.value.temporary is False


# ---- SMTP: kept connections ---------------------------------------------------------------


def _order(n: int) -> Outgoing:
    return _confirmation(idempotency_key=f"order-{n}:shipping_confirmation:shp-1")


def _copies(server: SmtpServer) -> Counter[str]:
    """How often each Message-ID reached the server."""
    return Counter(str(received.parsed()["Message-ID"]) for received in server.inbox.received)


async def test_smtp_sends_one_message_after_another_over_one_kept_connection(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp()
    notifier = make_smtp(server.port, connections=3)

    sent = [await notifier.send(_order(n)) for n in range(10)]

    assert len(server.inbox.connections()) == 1
    assert len(server.inbox.ehlos) == 1
    assert _copies(server) == Counter(receipt.message_id for receipt in sent)
    assert server.inbox.resets == []  # nothing failed, nothing to reset


async def test_smtp_logs_in_once_per_kept_connection(
    start_smtp: Callable[..., SmtpServer],
    make_smtp: Callable[..., SmtpNotifier],
    server_tls: ssl.SSLContext,
    trust_certificate: None,
) -> None:
    server = start_smtp(auth=True, tls_context=server_tls, require_starttls=True)
    notifier = make_smtp(server.port, tls="starttls", username=LOGIN, password=PASSWORD)

    for n in range(3):
        await notifier.send(_order(n))

    assert server.inbox.logins == [(LOGIN, PASSWORD)]
    assert len(server.inbox.connections()) == 1
    assert len(server.inbox.received) == 3


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"sender": "orders"}, "not an email address"),
        ({"connections": 0}, "connections must be 1 or more"),
        ({"idle_s": 0}, "idle time must be above 0"),
        ({"ehlo_name": "mail host"}, "not a host name"),
        ({"ehlo_name": "mail\r\nRSET"}, "not a host name"),
        ({"reply_to": "help@shop.example\r\nBcc: eve@example.org"}, "reply-to"),
    ],
)
def test_smtp_settings_that_cannot_work_are_refused_at_once(
    templates: Templates, changes: dict[str, Any], expected: str
) -> None:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 25,
        "tls": "none",
        "sender": SENDER,
        "templates": templates,
        **changes,
    }
    with pytest.raises(ConfigError, match=expected):
        SmtpNotifier(**options)


async def test_smtp_says_the_configured_ehlo_name_or_this_hosts_name(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp()

    await make_smtp(server.port, ehlo_name="mail.shop.example").send(_order(1))
    await make_smtp(server.port).send(_order(2))

    names = [name for _, name in server.inbox.ehlos]
    assert names == ["mail.shop.example", socket.getfqdn()]


async def test_smtp_sends_the_next_message_over_a_new_connection_when_the_server_closed_one(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp()
    server.inbox.after_data = "answer and hang up"
    notifier = make_smtp(server.port)

    first = await notifier.send(_order(1))
    second = await notifier.send(_order(2))

    assert _copies(server) == Counter([first.message_id, second.message_id])
    assert len(server.inbox.connections()) == 2


@pytest.mark.parametrize("reply", ["hang up", "421"])
async def test_smtp_sends_again_once_over_a_new_connection_when_a_kept_one_fails_at_mail(
    start_smtp: Callable[..., SmtpServer],
    make_smtp: Callable[..., SmtpNotifier],
    reply: Literal["hang up", "421"],
) -> None:
    server = start_smtp()
    # The kept connection's next MAIL is dropped, or answered 421 and closed.
    server.inbox.mail_reply = reply
    notifier = make_smtp(server.port)

    first = await notifier.send(_order(1))
    second = await notifier.send(_order(2))

    assert _copies(server) == Counter([first.message_id, second.message_id])
    first_connection, second_connection = [peer for peer, _ in server.inbox.ehlos]
    assert server.inbox.mails == [first_connection, first_connection, second_connection]


async def test_smtp_421_on_a_new_connection_is_temporary_and_not_tried_again(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp()
    server.inbox.mail_reply = "421"
    server.inbox.mail_reply_after = 0
    notifier = make_smtp(server.port)

    with pytest.raises(NotifyError, match="421") as caught:
        await notifier.send(_order(1))

    assert caught.value.temporary is True
    assert len(server.inbox.mails) == 1
    assert server.inbox.received == []


async def test_smtp_hang_up_after_the_message_is_temporary_and_never_sent_again(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp()
    notifier = make_smtp(server.port)
    await notifier.send(_order(1))  # the connection is kept
    server.inbox.after_data = "hang up"

    with pytest.raises(NotifyError) as caught:
        await notifier.send(_order(2))

    assert caught.value.temporary is True
    # The server has the message though it never said so: a second copy here could reach
    # the customer twice.
    assert len(server.inbox.mails) == 2
    assert len(server.inbox.received) == 2
    assert len(server.inbox.connections()) == 1


async def test_smtp_resets_a_kept_connection_after_a_refused_message_and_uses_it_again(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp()
    server.inbox.rcpt_reply = "550 5.1.1 User unknown"
    notifier = make_smtp(server.port)

    with pytest.raises(NotifyError, match="refused the recipient"):
        await notifier.send(_order(1))
    assert server.inbox.resets != []
    server.inbox.rcpt_reply = None
    sent = await notifier.send(_order(2))

    assert _copies(server) == Counter([sent.message_id])
    assert len(server.inbox.connections()) == 1


async def test_smtp_closes_a_connection_whose_reset_is_refused(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp()
    server.inbox.rcpt_reply = "550 5.1.1 User unknown"
    server.inbox.rset_reply = "500 5.5.1 Not now"
    notifier = make_smtp(server.port)

    with pytest.raises(NotifyError, match="refused the recipient"):
        await notifier.send(_order(1))
    server.inbox.rcpt_reply = None
    await notifier.send(_order(2))

    first, second = [peer for peer, _ in server.inbox.ehlos]
    assert set(server.inbox.resets) == {first}
    assert server.inbox.mails == [first, second]


async def test_smtp_sends_at_once_over_no_more_connections_than_configured(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp()
    # No message is answered before three are on their way at once.
    server.inbox.hold_data = 3
    notifier = make_smtp(server.port, connections=3)

    sent = await asyncio.gather(*(notifier.send(_order(n)) for n in range(24)))

    assert server.inbox.most_waiting == 3
    assert len(server.inbox.connections()) == 3
    assert len(server.inbox.ehlos) == 3
    assert _copies(server) == Counter(receipt.message_id for receipt in sent)


async def test_smtp_close_quits_every_kept_connection(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp()
    server.inbox.hold_data = 2
    notifier = make_smtp(server.port, connections=2)
    await asyncio.gather(notifier.send(_order(1)), notifier.send(_order(2)))
    assert server.inbox.quits == []

    await notifier.close()

    assert len(server.inbox.connections()) == 2
    assert sorted(server.inbox.quits) == sorted(server.inbox.connections())


async def test_smtp_quits_a_connection_left_unused_for_its_idle_time(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp()
    notifier = make_smtp(server.port, idle_s=0.05)
    await notifier.send(_order(1))

    assert await asyncio.to_thread(server.inbox.quit_seen.wait, 5)
    await notifier.send(_order(2))

    first, second = [peer for peer, _ in server.inbox.ehlos]
    assert server.inbox.quits == [first]
    assert first != second


async def test_smtp_send_cut_off_mid_message_leaves_no_connection_for_the_next(
    start_smtp: Callable[..., SmtpServer], make_smtp: Callable[..., SmtpNotifier]
) -> None:
    server = start_smtp()
    server.inbox.hold_data = 2  # the first message waits for a second that cannot come
    notifier = make_smtp(server.port, connections=1)
    sending = asyncio.create_task(notifier.send(_order(1)))
    assert await asyncio.to_thread(server.inbox.data_seen.wait, 5)

    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    server.inbox.hold_data = 0
    sent = await notifier.send(_order(2))

    assert str(server.inbox.received[-1].parsed()["Message-ID"]) == sent.message_id
    assert len(server.inbox.connections()) == 2


# ---- SMS (Twilio) -------------------------------------------------------------------------

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-auth-token-do-not-leak"
TWILIO_NUMBER = "+15005550006"


@dataclass
class TwilioServer:
    """Twilio's Messages API as documented: basic auth, form fields, 201 with the Message
    resource, errors as {code, message, more_info, status}. ``answers`` queues canned
    answers ("hang" waits until the server stops)."""

    url: str = ""
    forms: list[dict[str, str]] = field(default_factory=list)
    answers: list[web.Response | str] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def create_message(self, request: web.Request) -> web.StreamResponse:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if (
            request.match_info["sid"] != ACCOUNT_SID
            or request.headers.get("Authorization") != expected
        ):
            return _twilio_error(401, 20003, "Authenticate")
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.forms.append(form)
        if self.answers:
            answer = self.answers.pop(0)
            if answer == "hang":
                await self.stopping.wait()
                return web.Response(status=503)
            assert isinstance(answer, web.Response)
            return answer
        return web.json_response(
            {
                "sid": "SM" + uuid.uuid4().hex,
                "account_sid": ACCOUNT_SID,
                "to": form["To"],
                "from": form["From"],
                "body": form["Body"],
                "status": "queued",
            },
            status=201,
        )


def _twilio_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioServer]:
    server = TwilioServer()
    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", server.create_message)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    yield server
    server.stopping.set()
    await runner.cleanup()


@pytest.fixture
async def make_sms(templates: Templates) -> AsyncIterator[Callable[..., TwilioSms]]:
    made: list[TwilioSms] = []

    def make(base_url: str, **changes: Any) -> TwilioSms:
        options: dict[str, Any] = {
            "base_url": base_url,
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "sender": TWILIO_NUMBER,
            "templates": templates,
            "timeout_s": 5.0,
        }
        options.update(changes)
        sms = TwilioSms(**options)
        made.append(sms)
        return sms

    yield make
    for sms in made:
        await sms.close()


def _text(**changes: Any) -> Outgoing:
    return _confirmation(**{"channel": "sms", "to": PHONE, **changes})


async def test_sms_posts_the_form_with_basic_auth_and_returns_the_sid(
    twilio: TwilioServer, make_sms: Callable[..., TwilioSms]
) -> None:
    sms = make_sms(twilio.url)

    first = await sms.send(_text())
    second = await sms.send(_text())

    assert len(twilio.forms) == 2
    form = twilio.forms[0]
    assert set(form) == {"To", "From", "Body"}
    assert form["To"] == PHONE
    assert form["From"] == TWILIO_NUMBER
    assert "1Z999AA10123456784" in form["Body"]
    assert first.message_id.startswith("SM")
    assert second.message_id != first.message_id


async def test_sms_refusal_is_permanent_with_twilios_message(
    twilio: TwilioServer, make_sms: Callable[..., TwilioSms]
) -> None:
    twilio.answers.append(
        _twilio_error(400, 21211, f"The 'To' number {PHONE} is not a valid phone number.")
    )

    with pytest.raises(NotifyError, match=r"21211.*is not a valid phone number") as caught:
        await make_sms(twilio.url).send(_text())

    assert caught.value.temporary is False
    assert "HTTP 400" in str(caught.value)
    assert PHONE not in str(caught.value)
    assert PHONE[1:] not in str(caught.value)


async def test_sms_bad_credentials_are_permanent_and_never_show_the_token(
    twilio: TwilioServer, make_sms: Callable[..., TwilioSms]
) -> None:
    with pytest.raises(NotifyError, match="Authenticate") as caught:
        await make_sms(twilio.url, auth_token="wrong-" + AUTH_TOKEN).send(_text())

    assert caught.value.temporary is False
    assert AUTH_TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "answer",
    [
        _twilio_error(429, 20429, "Too Many Requests"),
        _twilio_error(503, 20500, "Service unavailable"),
        web.Response(status=502, text="<html>Bad gateway</html>", content_type="text/html"),
    ],
)
async def test_sms_rate_limits_and_server_errors_are_temporary(
    twilio: TwilioServer, make_sms: Callable[..., TwilioSms], answer: web.Response
) -> None:
    twilio.answers.append(answer)

    with pytest.raises(NotifyError, match=f"HTTP {answer.status}") as caught:
        await make_sms(twilio.url).send(_text())

    assert caught.value.temporary is True


@pytest.mark.parametrize(
    "answer",
    [
        web.Response(status=201, text="<html>created</html>", content_type="text/html"),
        web.json_response({"status": "queued"}, status=201),
    ],
)
async def test_sms_malformed_answer_is_permanent(
    twilio: TwilioServer, make_sms: Callable[..., TwilioSms], answer: web.Response
) -> None:
    twilio.answers.append(answer)

    with pytest.raises(NotifyError, match="malformed answer from twilio") as caught:
        await make_sms(twilio.url).send(_text())

    assert caught.value.temporary is False


async def test_sms_timeout_is_temporary(
    twilio: TwilioServer, make_sms: Callable[..., TwilioSms]
) -> None:
    twilio.answers.append("hang")

    with pytest.raises(NotifyError, match="in time") as caught:
        await make_sms(twilio.url, timeout_s=0.3).send(_text())

    assert caught.value.temporary is True


async def test_sms_with_nothing_listening_is_temporary(
    make_sms: Callable[..., TwilioSms],
) -> None:
    with pytest.raises(NotifyError, match="unreachable") as caught:
        await make_sms(f"http://127.0.0.1:{_free_port()}").send(_text())

    assert caught.value.temporary is True


async def test_sms_refuses_a_number_that_is_not_e164_without_calling_twilio(
    twilio: TwilioServer, make_sms: Callable[..., TwilioSms]
) -> None:
    with pytest.raises(NotifyError, match=r"E\.164") as caught:
        await make_sms(twilio.url).send(_text(to="555-234-5678"))

    assert caught.value.temporary is False
    assert twilio.forms == []
