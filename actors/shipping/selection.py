"""Choosing how a parcel travels: service level, zone, signature, and the rate to buy.

Pure: quotes come in with their delivery dates already worked out (see
:mod:`actors.shipping.calendar`); a choice or the reason there is none goes out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Literal, NamedTuple

from msgspec import Struct

from actors.shipping.carriers import Rate

Strategy = Literal["cheapest", "fastest", "best_value"]

# A quote with no transit time is valued as if it took this long, so it never looks fast.
_UNKNOWN_TRANSIT_DAYS = 30

_NON_WORD = re.compile(r"[^0-9a-z]+")


class ServiceLevel(Struct, frozen=True, kw_only=True):
    name: str
    max_days: int  # business days from ship date to delivery the store promises
    match: tuple[str, ...] = ()  # words or codes seen in the platform's shipping line


class Zone(Struct, frozen=True, kw_only=True):
    name: str
    countries: tuple[str, ...]
    postal_prefixes: tuple[str, ...] = ()  # empty: the whole of each country


class Preference(Struct, frozen=True, kw_only=True):
    countries: tuple[str, ...] = ()  # empty: every destination
    prefer: tuple[str, ...] = ()  # adapter names ("easypost") or companies ("UPS")
    exclude: tuple[str, ...] = ()


class ShippingRules(Struct, frozen=True, kw_only=True):
    strategy: Strategy = "cheapest"
    day_value: Decimal = Decimal("2.00")  # what one business day sooner is worth (best_value)
    max_price: Decimal | None = None
    signature_above: Decimal | None = None
    preferences: tuple[Preference, ...] = ()


class Quote(Struct, frozen=True, kw_only=True):
    rate: Rate
    delivery: date | None  # estimated with the warehouse's calendar
    transit_days: int | None


class Choice(Struct, frozen=True, kw_only=True):
    rate: Rate
    delivery: date | None
    alternatives: tuple[Rate, ...]  # the other eligible rates, best first
    reason: str


class NoRate(Struct, frozen=True, kw_only=True):
    reason: str


@lru_cache(maxsize=4096)  # level names and shipping titles repeat on every order
def _words(text: str) -> str:
    # "UPS_Next-Day Air" and "next day" both become plain space-separated words.
    return _NON_WORD.sub(" ", text.lower()).strip()


@lru_cache(maxsize=256)  # the configured levels: the same few on every order
def _terms(level: ServiceLevel) -> tuple[str, ...]:
    words = (_words(level.name), *(_words(m) for m in level.match))
    return tuple(f" {w} " for w in words if w)


def service_level_for(
    shipping_service: str | None, levels: Sequence[ServiceLevel], default: str
) -> ServiceLevel:
    """The service level a platform's shipping line title or code asks for.

    A level matches when its name or one of its ``match`` entries appears as whole words in
    the text, ignoring case and punctuation. The fastest matching level wins, since the
    customer paid for that; no match gives the level named ``default``.
    """
    fallback = next((level for level in levels if level.name == default), None)
    if fallback is None:
        raise ValueError(f"default service level {default!r} is not among the levels")
    text = f" {_words(shipping_service or '')} "
    matching = [level for level in levels if any(term in text for term in _terms(level))]
    if not matching:
        return fallback
    return min(matching, key=lambda level: level.max_days)


def zone_for(country: str, postal_code: str, zones: Sequence[Zone], origin_country: str) -> str:
    """The name of the shipping zone a destination falls in.

    The most specific configured zone wins: the longest matching postal prefix, then a zone
    covering the whole country. Without one, "domestic" or "international".
    """
    country = country.upper()
    postal = postal_code.upper().replace(" ", "")
    best: tuple[int, str] | None = None
    for zone in zones:
        if country not in (c.upper() for c in zone.countries):
            continue
        if zone.postal_prefixes:
            prefixes = (p.upper().replace(" ", "") for p in zone.postal_prefixes)
            lengths = [len(p) for p in prefixes if postal.startswith(p)]
            if not lengths:
                continue
            specificity = max(lengths)
        else:
            specificity = 0
        if best is None or specificity > best[0]:
            best = (specificity, zone.name)
    if best is not None:
        return best[1]
    return "domestic" if country == origin_country.upper() else "international"


def needs_signature(rules: ShippingRules, order_value: Decimal | None) -> bool:
    """True when the order is worth more than the signature threshold."""
    if rules.signature_above is None or order_value is None:
        return False
    return order_value > rules.signature_above


def _names(rate: Rate) -> set[str]:
    return {rate.carrier.lower(), rate.carrier_account.lower()}


def _tie_key(quote: Quote) -> tuple[Decimal, bool, date, str, str, str, str]:
    rate = quote.rate
    return (
        rate.amount,
        quote.delivery is None,
        quote.delivery or date.min,
        rate.carrier,
        rate.carrier_account,
        rate.service,
        rate.rate_id,
    )


class _Ranking(NamedTuple):
    label: str
    primary: Callable[[Quote], tuple[object, ...]]  # what the strategy compares first
    loss: str  # why a rate lost on that comparison


def _ranking(rules: ShippingRules, *, fallback: bool) -> _Ranking:
    if fallback or rules.strategy == "fastest":
        return _Ranking("fastest", lambda q: (q.delivery is None, q.delivery or date.min), "slower")
    if rules.strategy == "cheapest":
        return _Ranking("cheapest", lambda q: (q.rate.amount,), "dearer")

    def value(quote: Quote) -> tuple[object, ...]:
        days = _UNKNOWN_TRANSIT_DAYS if quote.transit_days is None else quote.transit_days
        return (quote.rate.amount + rules.day_value * days,)

    return _Ranking(f"best value ({rules.day_value} per day sooner)", value, "worse value")


def _describe(quote: Quote) -> str:
    rate = quote.rate
    who = rate.carrier
    if rate.carrier_account.lower() != rate.carrier.lower():
        who = f"{rate.carrier} {rate.carrier_account}"
    when = f"delivery {quote.delivery}" if quote.delivery else "delivery date unknown"
    return f"{who} {rate.service} {rate.amount} {rate.currency}, {when}"


def _count(parts: dict[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in parts.items() if n)


class _Carriers(NamedTuple):
    """The store's carrier preferences that apply to one destination, by lowercase name."""

    excluded: set[str]
    preferred: set[str]


def _carriers(rules: ShippingRules, country: str) -> _Carriers:
    applicable = [
        p
        for p in rules.preferences
        if not p.countries or country in {c.upper() for c in p.countries}
    ]
    return _Carriers(
        excluded={name.lower() for p in applicable for name in p.exclude},
        preferred={name.lower() for p in applicable for name in p.prefer},
    )


def _eligible(
    quotes: Sequence[Quote], rules: ShippingRules, carriers: _Carriers, country: str
) -> tuple[list[Quote], dict[str, int]]:
    """The quotes that may be bought, and how many were dropped for which reason."""
    allowed = [q for q in quotes if not _names(q.rate) & carriers.excluded]
    eligible = [q for q in allowed if rules.max_price is None or q.rate.amount <= rules.max_price]
    dropped = {
        f"excluded for {country}": len(quotes) - len(allowed),
        f"above the maximum price {rules.max_price}": len(allowed) - len(eligible),
    }
    return eligible, dropped


def _meets(quote: Quote, promised_by: date | None) -> bool:
    if quote.delivery is None:
        return False
    return promised_by is None or quote.delivery <= promised_by


def _headline(
    ranking: _Ranking,
    best: Quote,
    *,
    meeting: bool,
    preferred_only: bool,
    promised_by: date | None,
) -> str:
    """What was chosen and by which rule, as the reason begins."""
    if meeting:
        scope = " from a preferred carrier" if preferred_only else ""
        promise = f" meeting the promised date {promised_by}" if promised_by else ""
        return f"{ranking.label}{scope}{promise}: {_describe(best)}"
    if promised_by is not None:
        return f"the promised date {promised_by} cannot be met; fastest: {_describe(best)}"
    return f"no rate has a delivery date; cheapest: {_describe(best)}"


def _losses(
    best: Quote,
    others: Sequence[Quote],
    ranking: _Ranking,
    *,
    candidates: set[int],
    preferred: set[str],
    preferred_only: bool,
) -> dict[str, int]:
    """How many of the other eligible rates lost for each reason."""
    lost = dict.fromkeys(
        (
            "not a preferred carrier",
            "later than promised",
            "without a delivery date",
            ranking.loss,
            "dearer",
            "tied, lost the tie-break",
        ),
        0,
    )
    for quote in others:
        if id(quote) in candidates:
            if ranking.primary(quote) != ranking.primary(best):
                lost[ranking.loss] += 1
            elif quote.rate.amount != best.rate.amount:
                lost["dearer"] += 1
            else:
                lost["tied, lost the tie-break"] += 1
        elif not _names(quote.rate) & preferred and preferred_only:
            lost["not a preferred carrier"] += 1
        elif quote.delivery is None:
            lost["without a delivery date"] += 1
        else:
            lost["later than promised"] += 1
    return lost


def choose(
    quotes: Sequence[Quote],
    rules: ShippingRules,
    *,
    promised_by: date | None,
    country: str,
) -> Choice | NoRate:
    """Pick the rate to buy for a parcel to ``country`` by the store's shipping rules.

    Excluded carriers and rates above the maximum price never qualify. Among the rest,
    preferred carriers are used whenever one of them meets the promised date; the strategy
    then ranks the rates that meet it. When none does, the fastest rate is taken and the
    reason says the promise cannot be kept. The same quotes in any order give the same
    choice.
    """
    if not quotes:
        return NoRate(reason="no rates: no carrier quoted this parcel")

    country = country.upper()
    carriers = _carriers(rules, country)
    eligible, dropped = _eligible(quotes, rules, carriers, country)
    if not eligible:
        return NoRate(reason=f"no eligible rate: {_count(dropped)}")

    preferred = carriers.preferred
    preferred_only = any(_meets(q, promised_by) and _names(q.rate) & preferred for q in eligible)
    pool = [q for q in eligible if not preferred_only or _names(q.rate) & preferred]
    meeting = [q for q in pool if _meets(q, promised_by)]

    ranking = _ranking(rules, fallback=not meeting)
    # Rates the strategy may take come first, then every other eligible rate.
    candidates = {id(q) for q in meeting or eligible}
    ranked = sorted(
        eligible, key=lambda q: (id(q) not in candidates, ranking.primary(q), _tie_key(q))
    )
    best, others = ranked[0], ranked[1:]

    head = _headline(
        ranking, best, meeting=bool(meeting), preferred_only=preferred_only, promised_by=promised_by
    )
    lost = _losses(
        best,
        others,
        ranking,
        candidates=candidates,
        preferred=preferred,
        preferred_only=preferred_only,
    )
    why = _count(lost | dropped)
    return Choice(
        rate=best.rate,
        delivery=best.delivery,
        alternatives=tuple(q.rate for q in others),
        reason=f"{head}; others: {why}" if why else head,
    )
