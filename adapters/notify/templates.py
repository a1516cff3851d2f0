"""Customer-message templates: packaged defaults, operator overrides, rendering.

Every kind of message has four parts, each a file named after the kind:
``<kind>.subject.txt`` (the email subject), ``<kind>.txt`` (plain-text email),
``<kind>.html`` (HTML email) and ``<kind>.sms.txt`` (SMS). The defaults ship in
``adapters/notify/templates/``. An override directory replaces any of them by holding a file
of the same name; localised versions go in a subdirectory named after the locale
(``de/``, ``en-GB/``) and are chosen by the message's ``locale``, then its language, then
the unlocalised file.

Templates use :class:`string.Template` syntax: ``$name`` or ``${name}``, and ``$$`` for a
literal dollar sign. Every placeholder must have a value; a missing one is a
:class:`TemplateError` naming the template and the key, never a silently blank gap. In HTML
every value is escaped.

Values (``Outgoing.context``, all already formatted as text) used by the packaged templates:

- every kind: ``store_name``, ``customer_name`` (a first name, or a word like "there"),
  ``order_name`` (e.g. "#1001");
- ``shipping_confirmation``: ``carrier``, ``service``, ``tracking_number``,
  ``tracking_url``, ``estimated_delivery``, ``parcel_of`` ("" or " (parcel 1 of 2)") and
  ``parcel_note`` ("" or a sentence such as "This is parcel 1 of 2; the rest follows
  separately."), and ``$items``;
- ``backorder_notice``: ``expected_line`` ("" or a sentence such as "We expect them by
  12 March."), and ``$items`` (the lines still waiting);
- ``delay_alert``: ``carrier``, ``tracking_number``, ``tracking_url``, ``new_estimate_line``
  ("" or a sentence such as "It should now arrive by 14 March.");
- ``delivered``: ``delivered_at``;
- ``delivery_exception``: ``carrier``, ``tracking_number``, ``tracking_url``, ``reason``;
- ``review_request``: ``$links``, the one-click ratings labelled "1" to "5";
- ``repeat_purchase``: ``shop_url``, ``unsubscribe_url`` (the link that stops these).

Overrides may use any other key the caller puts in the context (``expected_date``,
``new_estimate``, ``review_url``, ...). ``$items`` and ``$links`` are rendered blocks: in
text "2 x Mug (MUG-BLK)" and "label: url" lines, in HTML a table and buttons.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from string import Template
from typing import Final, get_args
from urllib.parse import urlsplit

from actors.errors import OrderdError
from actors.notify.model import Kind, Outgoing

SMS_MAX_CHARS: Final = 480  # about three segments: a longer text costs more and is read less
PARTS: Final = ("subject.txt", "txt", "html", "sms.txt")
TEMPLATE_NAMES: Final = frozenset(f"{kind}.{part}" for kind in get_args(Kind) for part in PARTS)

_LOCALE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")
_BLANK_RUNS = re.compile(r"\n{3,}")
_SPACE_RUNS = re.compile(r"[ \t]{2,}")

_TABLE_STYLE = "border-collapse:collapse;margin:16px 0"
_CELL_STYLE = "padding:4px 12px 4px 0;border-bottom:1px solid #eee"
_BUTTON_STYLE = (
    "display:inline-block;margin:4px 4px 4px 0;padding:10px 16px;border-radius:4px;"
    "background:#1f6feb;color:#ffffff;text-decoration:none;font-weight:bold"
)


# Keys the packaged templates gained after messages were queued without them: such a
# message renders them empty rather than failing.
_ADDED_SINCE = {"parcel_of": "", "parcel_note": "", "unsubscribe_url": ""}


class TemplateError(OrderdError):
    """A template is missing, invalid, or needs a value the message does not carry."""


class _Loaded:
    """One template file, with where it came from for error messages."""

    __slots__ = ("origin", "template")

    def __init__(self, origin: str, text: str) -> None:
        self.origin = origin
        self.template = Template(text)
        if not self.template.is_valid():
            raise TemplateError(
                f"template {origin} has a '$' that starts no placeholder (write $$ for '$')"
            )

    def render(self, values: Mapping[str, str]) -> str:
        try:
            return self.template.substitute(values)
        except KeyError as exc:
            raise TemplateError(
                f"template {self.origin} needs {exc.args[0]!r}, which the message does not carry"
            ) from None


def _normalise_locale(tag: str) -> str:
    return tag.replace("_", "-").lower()


def _read_overrides(directory: Path) -> dict[str, _Loaded]:
    loaded: dict[str, _Loaded] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or not path.name.endswith((".txt", ".html")):
            continue
        if path.name not in TEMPLATE_NAMES:
            # A misspelt override would otherwise be ignored without a word.
            raise TemplateError(f"{path} is not a template orderd knows (<kind>.<part>)")
        loaded[path.name] = _Loaded(str(path), path.read_text(encoding="utf-8"))
    return loaded


class Templates:
    """The packaged templates, with an operator's overrides laid over them.

    Every file is read once, here; rendering does no I/O.
    """

    def __init__(self, override_dir: str | Path | None = None) -> None:
        package = resources.files("adapters.notify").joinpath("templates")
        self._packaged = {
            name: _Loaded(f"packaged {name}", package.joinpath(name).read_text(encoding="utf-8"))
            for name in sorted(TEMPLATE_NAMES)
        }
        # "" holds the unlocalised overrides; other keys are normalised locale tags.
        self._overrides: dict[str, dict[str, _Loaded]] = {}
        if override_dir is not None:
            directory = Path(override_dir)
            if not directory.is_dir():
                raise TemplateError(f"template directory {directory} does not exist")
            self._overrides[""] = _read_overrides(directory)
            for sub in sorted(directory.iterdir()):
                if sub.is_dir() and _LOCALE.fullmatch(sub.name):
                    self._overrides[_normalise_locale(sub.name)] = _read_overrides(sub)

    def _find(self, name: str, locale: str | None) -> _Loaded:
        candidates = [""]
        if locale and _LOCALE.fullmatch(locale):
            tag = _normalise_locale(locale)
            candidates = [tag, tag.split("-")[0], ""]
        for candidate in candidates:
            found = self._overrides.get(candidate, {}).get(name)
            if found is not None:
                return found
        return self._packaged[name]

    def render_email(self, message: Outgoing) -> tuple[str, str, str]:
        """The subject, plain-text body and HTML body of ``message``."""
        _check_links(message.links)
        context = {**_ADDED_SINCE, **message.context}
        plain = {**context, "items": _items_text(message), "links": _links_text(message)}
        escaped = {key: html.escape(value) for key, value in context.items()}
        escaped |= {"items": _items_html(message), "links": _links_html(message)}
        subject = self._find(f"{message.kind}.subject.txt", message.locale).render(plain)
        text = self._find(f"{message.kind}.txt", message.locale).render(plain)
        body = self._find(f"{message.kind}.html", message.locale).render(escaped)
        # A header is one line, whatever the values held.
        return " ".join(subject.split()), _tidy(text) + "\n", body

    def render_sms(self, message: Outgoing) -> str:
        """The SMS text of ``message``, cut to :data:`SMS_MAX_CHARS` with "…" if longer."""
        _check_links(message.links)
        context = {**_ADDED_SINCE, **message.context}
        plain = {**context, "items": _items_text(message), "links": _links_text(message)}
        text = _tidy(self._find(f"{message.kind}.sms.txt", message.locale).render(plain))
        # Every character counts in an SMS; empty values leave double spaces behind.
        text = _SPACE_RUNS.sub(" ", text)
        if len(text) > SMS_MAX_CHARS:
            text = text[: SMS_MAX_CHARS - 1].rstrip() + "…"
        return text


def _check_links(links: tuple[tuple[str, str], ...]) -> None:
    for label, url in links:
        if urlsplit(url).scheme not in ("http", "https"):
            raise TemplateError(f"link {label!r} is not an http(s) URL")


def _tidy(text: str) -> str:
    """Trailing spaces dropped and blank runs (left by empty values) folded to one line."""
    lines = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return _BLANK_RUNS.sub("\n\n", lines)


def _items_text(message: Outgoing) -> str:
    return "\n".join(f"{quantity} x {name} ({sku})" for sku, name, quantity in message.items)


def _links_text(message: Outgoing) -> str:
    return "\n".join(f"{label}: {url}" for label, url in message.links)


def _items_html(message: Outgoing) -> str:
    if not message.items:
        return ""
    rows = "".join(
        f'<tr><td style="{_CELL_STYLE}">{quantity}&nbsp;&times;</td>'
        f'<td style="{_CELL_STYLE}">{html.escape(name)}</td>'
        f'<td style="{_CELL_STYLE};color:#666666">{html.escape(sku)}</td></tr>'
        for sku, name, quantity in message.items
    )
    return f'<table role="presentation" style="{_TABLE_STYLE}">{rows}</table>'


def _links_html(message: Outgoing) -> str:
    if not message.links:
        return ""
    buttons = "".join(
        f'<a href="{html.escape(url)}" style="{_BUTTON_STYLE}">{html.escape(label)}</a>'
        for label, url in message.links
    )
    return f"<p>{buttons}</p>"
