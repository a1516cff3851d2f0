"""An email is written out by hand to the bytes email's generator writes for it.

The reference below builds the same message with the email.mime classes and writes it
under the same SMTP policy, as the sender did before it wrote messages itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.charset import QP, Charset
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import format_datetime
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.notify.model import Outgoing
from adapters.notify import smtp
from adapters.notify.templates import TemplateError, Templates

NOW = datetime(2026, 12, 4, 12, 30, tzinfo=UTC)
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


class Fixed:
    """Templates that render what the test says."""

    def __init__(self, subject: str, text: str, body: str) -> None:
        self.rendered = (subject, text, body)

    def render_email(self, message: Outgoing) -> tuple[str, str, str]:
        return self.rendered


def notifier(templates: object, sender: str = "Shop <shop@example.com>") -> smtp.SmtpNotifier:
    return smtp.SmtpNotifier(
        host="127.0.0.1", port=25, tls="none", sender=sender, reply_to="help@example.com",
        templates=templates,  # type: ignore[arg-type]
    )  # fmt: skip


def reference(
    sender: smtp.SmtpNotifier, message: Outgoing, recipient: str, message_id: str, utf8: bool
) -> bytes:
    subject, text, body = sender._templates.render_email(message)
    policy = smtp._POLICIES[utf8]
    mail = MIMEMultipart("alternative", boundary=smtp._BOUNDARY)
    for name, value in sender._fixed_headers[utf8]:
        mail[name] = value
    mail["To"] = recipient
    mail["Subject"] = subject if subject.isascii() else policy.header_factory("Subject", subject)
    mail["Date"] = format_datetime(NOW)
    mail["Message-ID"] = message_id
    mail["X-Orderd-Kind"] = message.kind
    for content, subtype in ((text, "plain"), (body, "html")):
        part = MIMENonMultipart("text", subtype)
        part.set_payload(content, _UTF8_QP)
        mail.attach(part)
    return mail.as_bytes(policy=policy)


def written(
    sender: smtp.SmtpNotifier, message: Outgoing, recipient: str, message_id: str, utf8: bool
) -> bytes:
    with mock.patch.object(smtp, "datetime") as clock:
        clock.now.return_value = NOW
        return sender._compose(message, recipient, message_id, utf8)


MESSAGE = Outgoing(
    idempotency_key="ord_1:shipping_confirmation",
    kind="shipping_confirmation",
    channel="email",
    to="c@example.com",
    context={
        "store_name": "Example Goods", "customer_name": "Ada Lövelace", "carrier": "UPS",
        "service": "Ground", "tracking_number": "1Z999AA10123456784",
        "tracking_url": "https://track.example/1Z999AA10123456784",
        "estimated_delivery": "Friday 14 March", "order_name": "#1001",
    },
    items=(("MUG-BLK", "Mug ✓ black", 1),),
)  # fmt: skip


@pytest.mark.parametrize("utf8", [False, True])
@pytest.mark.parametrize(
    "from_", ["Shop <shop@example.com>", f"{'A Very Long Store Name ' * 5}<shop@example.com>"]
)
def test_a_shipping_confirmation_is_written_as_the_generator_writes_it(
    utf8: bool, from_: str
) -> None:
    sender = notifier(Templates(), sender=from_)
    assert written(sender, MESSAGE, "c@example.com", "<a@example.com>", utf8) == reference(
        sender, MESSAGE, "c@example.com", "<a@example.com>", utf8
    )


# Lines of every length around the 76 a quoted-printable line may have, with spaces and
# tabs at their ends, dots and "From " at their starts, "=" and text beyond ASCII.
TEXT = st.lists(
    st.sampled_from([*"ab .=\t\n\r-", "From ", "x" * 40, "ö", "✓", "😀"]), max_size=40
).map("".join)
SUBJECT = st.lists(
    st.sampled_from([*"ab.=-:;", " ", "Order #1001 ", "x" * 30, "ö", "✓"]), min_size=1, max_size=20
).map(lambda parts: " ".join("".join(parts).split()) or "x")


@settings(max_examples=300, deadline=None)
@given(subject=SUBJECT, text=TEXT, body=TEXT, utf8=st.booleans())
def test_any_text_is_written_as_the_generator_writes_it(
    subject: str, text: str, body: str, utf8: bool
) -> None:
    sender = notifier(Fixed(subject, text, body))
    assert written(sender, MESSAGE, "c@example.com", "<a@example.com>", utf8) == reference(
        sender, MESSAGE, "c@example.com", "<a@example.com>", utf8
    )


def test_a_subject_with_a_line_break_is_refused_for_good() -> None:
    sender = notifier(Fixed("Your order\r\nBcc: x@evil.example", "text", "<p>html</p>"))
    with pytest.raises(TemplateError, match="Subject header holds a line break"):
        written(sender, MESSAGE, "c@example.com", "<a@example.com>", False)
