from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time
from decimal import Decimal

import msgspec
import pytest

from actors.order.types import Address
from actors.shipping.address import COUNTRY_CODES, address_problems
from actors.shipping.calendar import (
    BusinessCalendar,
    add_business_days,
    estimated_delivery,
    is_business_day,
    next_business_day,
    promised_by,
    ship_date,
)
from actors.shipping.carriers import Parcel, Rate
from actors.shipping.pick_list import PickLine, bin_sort_key, estimate_parcel, sort_pick_list
from actors.shipping.selection import (
    Choice,
    NoRate,
    Preference,
    Quote,
    ServiceLevel,
    ShippingRules,
    Strategy,
    Zone,
    choose,
    needs_signature,
    service_level_for,
    zone_for,
)

THANKSGIVING = date(2026, 11, 26)  # a Thursday
NEW_YORK = BusinessCalendar(
    timezone="America/New_York", cutoff=time(14, 0), holidays=frozenset({THANKSGIVING})
)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# --- calendar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 11, 23), True),  # Monday
        (date(2026, 11, 21), False),  # Saturday
        (date(2026, 11, 22), False),  # Sunday
        (THANKSGIVING, False),
    ],
)
def test_weekends_and_holidays_are_not_business_days(day: date, expected: bool) -> None:
    assert is_business_day(NEW_YORK, day) is expected


def test_a_custom_weekend_is_honoured() -> None:
    friday_saturday = BusinessCalendar(
        timezone="Asia/Dubai", cutoff=time(12), weekend=frozenset({4, 5})
    )
    assert not is_business_day(friday_saturday, date(2026, 11, 20))  # Friday
    assert is_business_day(friday_saturday, date(2026, 11, 22))  # Sunday


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 11, 20), date(2026, 11, 23)),  # Friday -> Monday
        (date(2026, 11, 25), date(2026, 11, 27)),  # over the holiday
        (date(2026, 11, 23), date(2026, 11, 24)),
    ],
)
def test_next_business_day_is_strictly_after_and_skips_days_off(day: date, expected: date) -> None:
    assert next_business_day(NEW_YORK, day) == expected


@pytest.mark.parametrize(
    ("day", "days", "expected"),
    [
        (date(2026, 11, 20), 0, date(2026, 11, 20)),
        (date(2026, 11, 21), 0, date(2026, 11, 23)),  # Saturday rolls to Monday
        (date(2026, 11, 21), 1, date(2026, 11, 24)),
        (date(2026, 11, 20), 1, date(2026, 11, 23)),  # over the weekend
        (date(2026, 11, 24), 3, date(2026, 11, 30)),  # over the holiday and the weekend
        (date(2026, 11, 19), 5, date(2026, 11, 27)),  # over both, from the week before
    ],
)
def test_adding_business_days_skips_weekends_and_holidays(
    day: date, days: int, expected: date
) -> None:
    assert add_business_days(NEW_YORK, day, days) == expected


def test_adding_negative_business_days_is_refused() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        add_business_days(NEW_YORK, date(2026, 11, 23), -1)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2026, 11, 23, 18, 59), date(2026, 11, 23)),  # 13:59 in New York
        (utc(2026, 11, 23, 19, 0), date(2026, 11, 24)),  # 14:00, the cutoff itself
        (utc(2026, 11, 21, 15), date(2026, 11, 23)),  # Saturday
        (utc(2026, 11, 26, 15), date(2026, 11, 27)),  # on the holiday
        (utc(2026, 11, 25, 20), date(2026, 11, 27)),  # after cutoff the day before it
        (utc(2026, 11, 24, 3), date(2026, 11, 24)),  # still Monday evening locally
    ],
)
def test_ship_date_is_today_only_on_a_business_day_before_the_cutoff(
    now: datetime, expected: date
) -> None:
    assert ship_date(NEW_YORK, now) == expected


@pytest.mark.parametrize(
    ("zone", "now", "expected"),
    [
        # 00:30 UTC Tuesday is 16:30 Monday in Los Angeles: before a 17:00 cutoff.
        ("America/Los_Angeles", utc(2026, 11, 24, 0, 30), date(2026, 11, 23)),
        # 13:00 UTC Friday is 22:00 Friday in Tokyo: past a 14:00 cutoff, so Monday.
        ("Asia/Tokyo", utc(2026, 11, 20, 13), date(2026, 11, 23)),
    ],
)
def test_ship_date_uses_the_warehouse_local_date_not_the_utc_date(
    zone: str, now: datetime, expected: date
) -> None:
    cutoff = time(17) if zone == "America/Los_Angeles" else time(14)
    assert ship_date(BusinessCalendar(timezone=zone, cutoff=cutoff), now) == expected


def test_an_unknown_time_zone_is_refused_when_used() -> None:
    mars = BusinessCalendar(timezone="Mars/Olympus_Mons", cutoff=time(14))
    with pytest.raises(ValueError, match="unknown time zone"):
        ship_date(mars, utc(2026, 11, 23, 12))


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ship_date(NEW_YORK, datetime(2026, 11, 23, 12))


@pytest.mark.parametrize(
    "weekend", [frozenset(range(7)), frozenset({7}), frozenset({-1})], ids=["all", "7", "-1"]
)
def test_a_calendar_without_working_days_is_refused(weekend: frozenset[int]) -> None:
    with pytest.raises(ValueError, match=r"weekday|weekend"):
        BusinessCalendar(timezone="UTC", cutoff=time(14), weekend=weekend)


@pytest.mark.parametrize(
    ("now", "transit_days", "carrier_date", "expected"),
    [
        (utc(2026, 11, 23, 15), 2, date(2026, 12, 4), date(2026, 12, 4)),  # carrier knows best
        (utc(2026, 11, 23, 15), 2, None, date(2026, 11, 25)),  # ships Monday, +2
        (utc(2026, 11, 25, 20), 2, None, date(2026, 12, 1)),  # ships Friday, +2 over weekend
        (utc(2026, 11, 23, 15), 0, None, date(2026, 11, 23)),
        (utc(2026, 11, 23, 15), None, None, None),
    ],
)
def test_estimated_delivery_prefers_the_carrier_date_then_transit_days(
    now: datetime, transit_days: int | None, carrier_date: date | None, expected: date | None
) -> None:
    got = estimated_delivery(NEW_YORK, now, transit_days=transit_days, carrier_date=carrier_date)
    assert got == expected


@pytest.mark.parametrize(
    ("paid_at", "max_days", "expected"),
    [
        (utc(2026, 11, 23, 15), 3, date(2026, 11, 27)),  # Tue, Wed, (holiday), Fri
        (utc(2026, 11, 20, 20), 1, date(2026, 11, 24)),  # late Friday ships Monday
    ],
)
def test_promised_by_counts_business_days_from_the_ship_date(
    paid_at: datetime, max_days: int, expected: date
) -> None:
    assert promised_by(NEW_YORK, paid_at, max_days) == expected


# --- service levels and zones -----------------------------------------------------------

LEVELS = (
    ServiceLevel(name="standard", max_days=5),
    ServiceLevel(name="express", max_days=2, match=("expedited", "2-day")),
    ServiceLevel(name="overnight", max_days=1, match=("next day", "overnight")),
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Express Shipping", "express"),
        ("EXPRESS", "express"),
        ("UPS Next Day Air", "overnight"),
        ("2-Day Delivery", "express"),
        ("expedited_shipping", "express"),
        ("Express Overnight", "overnight"),  # both match: the faster wins
        ("Standard", "standard"),
        ("Expressway pickup", "standard"),  # only whole words count
        ("Free shipping", "standard"),
        ("", "standard"),
        (None, "standard"),
    ],
)
def test_service_level_is_read_from_the_shipping_line(text: str | None, expected: str) -> None:
    assert service_level_for(text, LEVELS, "standard").name == expected


def test_service_level_falls_back_to_the_named_default() -> None:
    assert service_level_for("Pony", LEVELS, "express").name == "express"


def test_an_unknown_default_service_level_is_refused() -> None:
    with pytest.raises(ValueError, match="'economy'"):
        service_level_for("Express", LEVELS, "economy")


ZONES = (
    Zone(name="us", countries=("US",)),
    Zone(name="us-west", countries=("US",), postal_prefixes=("9",)),
    Zone(name="us-bay", countries=("US",), postal_prefixes=("940", "941")),
    Zone(name="eu", countries=("DE", "FR")),
    Zone(name="london", countries=("GB",), postal_prefixes=("SW1", "EC")),
)


@pytest.mark.parametrize(
    ("country", "postal_code", "zones", "expected"),
    [
        ("US", "94103", ZONES, "us-bay"),  # longest prefix wins
        ("US", "90210", ZONES, "us-west"),  # a prefix beats the whole country
        ("US", "10001", ZONES, "us"),
        ("DE", "10115", ZONES, "eu"),
        ("GB", "sw1a 1aa", ZONES, "london"),  # normalised before matching
        ("GB", "M1 1AE", ZONES, "international"),  # no prefix matches, no whole-GB zone
        ("US", "10001", (), "domestic"),
        ("CA", "K1A 0B1", (), "international"),
    ],
)
def test_zone_is_the_most_specific_match(
    country: str, postal_code: str, zones: tuple[Zone, ...], expected: str
) -> None:
    assert zone_for(country, postal_code, zones, "US") == expected


@pytest.mark.parametrize(
    ("threshold", "value", "expected"),
    [
        (Decimal(100), Decimal("100.01"), True),
        (Decimal(100), Decimal(100), False),  # strictly above
        (Decimal(100), None, False),
        (None, Decimal(10_000), False),
    ],
)
def test_signature_is_needed_only_above_the_threshold(
    threshold: Decimal | None, value: Decimal | None, expected: bool
) -> None:
    assert needs_signature(ShippingRules(signature_above=threshold), value) is expected


# --- choosing a rate --------------------------------------------------------------------

PROMISE = date(2026, 12, 3)


def quote(
    carrier: str,
    account: str,
    service: str,
    amount: str,
    delivery: date | None,
    transit_days: int | None,
) -> Quote:
    rate = Rate(
        carrier=carrier,
        carrier_account=account,
        service=service,
        amount=Decimal(amount),
        currency="USD",
        delivery_days=transit_days,
        delivery_date=delivery,
        rate_id=f"{carrier}-{account}-{service}",
        quote_id=f"q-{carrier}",
    )
    return Quote(rate=rate, delivery=delivery, transit_days=transit_days)


GROUND = quote("sandbox", "sandbox", "ground", "6.40", date(2026, 12, 2), 4)
ECONOMY = quote("sandbox", "sandbox", "economy", "4.10", date(2026, 12, 7), 8)
EXPRESS = quote("easypost", "UPS", "express", "14.00", date(2026, 11, 27), 1)
PRIORITY = quote("easypost", "USPS", "priority", "8.00", date(2026, 11, 30), 2)
UNDATED = quote("shippo", "DHL", "parcel", "3.00", None, None)
QUOTES = (GROUND, ECONOMY, EXPRESS, PRIORITY, UNDATED)


def chosen(
    rules: ShippingRules,
    quotes: tuple[Quote, ...] = QUOTES,
    promise: date | None = PROMISE,
    country: str = "US",
) -> Choice:
    result = choose(quotes, rules, promised_by=promise, country=country)
    assert isinstance(result, Choice), result
    return result


def refused(
    rules: ShippingRules, quotes: tuple[Quote, ...] = QUOTES, country: str = "US"
) -> NoRate:
    result = choose(quotes, rules, promised_by=PROMISE, country=country)
    assert isinstance(result, NoRate), result
    return result


def test_cheapest_takes_the_lowest_price_meeting_the_promise() -> None:
    choice = chosen(ShippingRules(strategy="cheapest"))
    assert choice.rate == GROUND.rate
    assert choice.delivery == date(2026, 12, 2)
    assert choice.alternatives == (PRIORITY.rate, EXPRESS.rate, UNDATED.rate, ECONOMY.rate)
    assert choice.reason == (
        "cheapest meeting the promised date 2026-12-03: sandbox ground 6.40 USD, "
        "delivery 2026-12-02; others: 1 later than promised, 1 without a delivery date, "
        "2 dearer"
    )


def test_fastest_takes_the_earliest_delivery() -> None:
    choice = chosen(ShippingRules(strategy="fastest"))
    assert choice.rate == EXPRESS.rate
    assert choice.alternatives == (PRIORITY.rate, GROUND.rate, ECONOMY.rate, UNDATED.rate)
    assert choice.reason.startswith(
        "fastest meeting the promised date 2026-12-03: easypost UPS express 14.00 USD"
    )
    assert "2 slower" in choice.reason


@pytest.mark.parametrize(
    ("day_value", "expected"),
    [
        (Decimal("0.50"), GROUND),  # 8.40 vs priority 9.00 vs express 14.50
        (Decimal("2.00"), PRIORITY),  # 12.00 vs ground 14.40 vs express 16.00
        (Decimal("10.00"), EXPRESS),  # 24.00 vs priority 28.00 vs ground 46.40
    ],
)
def test_best_value_weighs_price_against_days_in_transit(
    day_value: Decimal, expected: Quote
) -> None:
    choice = chosen(ShippingRules(strategy="best_value", day_value=day_value))
    assert choice.rate == expected.rate
    assert choice.reason.startswith(f"best value ({day_value} per day sooner) meeting")
    assert "2 worse value" in choice.reason


def test_best_value_counts_an_unknown_transit_time_as_slow() -> None:
    dated_no_transit = quote("shippo", "DHL", "saver", "1.00", date(2026, 11, 30), None)
    choice = chosen(ShippingRules(strategy="best_value"), (GROUND, dated_no_transit))
    assert choice.rate == GROUND.rate  # 14.40 beats 1.00 + 30 days * 2.00


def test_without_a_promise_any_dated_rate_qualifies() -> None:
    choice = chosen(ShippingRules(strategy="cheapest"), promise=None)
    assert choice.rate == ECONOMY.rate
    assert choice.reason.startswith("cheapest: sandbox economy 4.10 USD, delivery 2026-12-07")


@pytest.mark.parametrize("strategy", ["cheapest", "fastest", "best_value"])
def test_an_unmeetable_promise_falls_back_to_the_fastest_rate_and_says_so(
    strategy: Strategy,
) -> None:
    choice = chosen(ShippingRules(strategy=strategy), promise=date(2026, 11, 25))
    assert choice.rate == EXPRESS.rate
    assert choice.reason.startswith("the promised date 2026-11-25 cannot be met; fastest:")


def test_undated_rates_alone_give_the_cheapest_and_say_no_date_is_known() -> None:
    pricier = quote("shippo", "DPD", "classic", "5.00", None, None)
    choice = chosen(ShippingRules(), (pricier, UNDATED), promise=None)
    assert choice.rate == UNDATED.rate
    assert choice.delivery is None
    assert choice.reason.startswith("no rate has a delivery date; cheapest: shippo DHL parcel")
    assert choice.reason.endswith("others: 1 dearer")


@pytest.mark.parametrize("name", ["USPS", "usps"])
def test_a_preferred_carrier_meeting_the_promise_beats_a_cheaper_one(name: str) -> None:
    choice = chosen(ShippingRules(preferences=(Preference(prefer=(name,)),)))
    assert choice.rate == PRIORITY.rate
    assert "from a preferred carrier" in choice.reason
    assert "not a preferred carrier" in choice.reason


def test_a_preferred_carrier_that_misses_the_promise_is_not_forced() -> None:
    rules = ShippingRules(preferences=(Preference(prefer=("sandbox",)),))
    choice = chosen(rules, (ECONOMY, PRIORITY))
    assert choice.rate == PRIORITY.rate


def test_a_preference_for_other_destinations_does_not_apply() -> None:
    rules = ShippingRules(preferences=(Preference(countries=("CA",), prefer=("USPS",)),))
    assert chosen(rules, country="US").rate == GROUND.rate
    assert chosen(rules, country="CA").rate == PRIORITY.rate


@pytest.mark.parametrize(
    ("exclude", "expected"),
    [
        (("sandbox",), PRIORITY),  # by adapter name
        (("usps", "Sandbox"), EXPRESS),  # by company, any case
    ],
)
def test_excluded_carriers_are_never_chosen(exclude: tuple[str, ...], expected: Quote) -> None:
    choice = chosen(ShippingRules(preferences=(Preference(exclude=exclude),)))
    assert choice.rate == expected.rate
    assert all(rate.carrier != "sandbox" for rate in choice.alternatives)


def test_an_exclusion_for_another_country_does_not_apply() -> None:
    rules = ShippingRules(preferences=(Preference(countries=("DE",), exclude=("sandbox",)),))
    assert chosen(rules).rate == GROUND.rate


def test_everything_excluded_gives_no_rate_with_the_reason() -> None:
    rules = ShippingRules(preferences=(Preference(exclude=("sandbox", "easypost", "shippo")),))
    assert refused(rules).reason == "no eligible rate: 5 excluded for US"


def test_rates_above_the_maximum_price_are_dropped() -> None:
    choice = chosen(ShippingRules(max_price=Decimal("7.00")))
    assert choice.rate == GROUND.rate
    assert EXPRESS.rate not in choice.alternatives
    assert "2 above the maximum price 7.00" in choice.reason


def test_a_maximum_price_can_leave_only_late_rates() -> None:
    choice = chosen(ShippingRules(max_price=Decimal("5.00")))
    assert choice.rate == ECONOMY.rate
    assert "cannot be met" in choice.reason


def test_everything_above_the_maximum_price_gives_no_rate() -> None:
    assert refused(ShippingRules(max_price=Decimal("2.00"))).reason == (
        "no eligible rate: 5 above the maximum price 2.00"
    )


def test_no_quotes_at_all_gives_no_rate() -> None:
    assert refused(ShippingRules(), ()).reason.startswith("no rates")


TIED = (
    quote("sandbox", "sandbox", "ground", "6.40", date(2026, 12, 2), 4),
    quote("easypost", "USPS", "ground", "6.40", date(2026, 12, 2), 4),
    quote("easypost", "UPS", "ground", "6.40", date(2026, 12, 2), 4),
    quote("shippo", "USPS", "ground", "6.40", date(2026, 12, 2), 4),
)


@pytest.mark.parametrize("strategy", ["cheapest", "fastest", "best_value"])
def test_ties_are_broken_the_same_way_whatever_the_input_order(strategy: Strategy) -> None:
    rules = ShippingRules(strategy=strategy)
    choices = {
        (c.rate, c.alternatives, c.reason)
        for order in itertools.permutations(TIED)
        for c in [chosen(rules, order)]
    }
    assert len(choices) == 1
    (rate, alternatives, reason), *_ = choices
    # Same price and date: by adapter, then company name.
    assert rate == TIED[2].rate
    assert alternatives == (TIED[1].rate, TIED[0].rate, TIED[3].rate)
    assert reason.endswith("others: 3 tied, lost the tie-break")


def test_at_the_same_price_the_earlier_delivery_wins() -> None:
    later = quote("easypost", "UPS", "ground", "6.40", date(2026, 12, 3), 5)
    choice = chosen(ShippingRules(strategy="cheapest"), (later, GROUND))
    assert choice.rate == GROUND.rate
    assert choice.reason.endswith("others: 1 tied, lost the tie-break")


# --- addresses --------------------------------------------------------------------------


def address(country: str, postal_code: str, region: str = "") -> Address:
    return Address(
        name="Ada Lovelace",
        line1="1 Main Street",
        city="Springfield",
        region=region,
        postal_code=postal_code,
        country=country,
    )


@pytest.mark.parametrize(
    ("country", "postal_code", "region"),
    [
        ("US", "94103", "CA"),
        ("US", "94103-1234", "CA"),
        ("CA", "K1A 0B1", "ON"),
        ("CA", "k1a0b1", "ON"),
        ("GB", "SW1A 1AA", ""),
        ("GB", "M1 1AE", ""),
        ("GB", "ec1a1bb", ""),
        ("DE", "10115", ""),
        ("FR", "75001", ""),
        ("ES", "28001", ""),
        ("IT", "00184", ""),
        ("NL", "1012 AB", ""),
        ("NL", "1012ab", ""),
        ("BE", "1000", ""),
        ("AT", "1010", ""),
        ("CH", "8001", ""),
        ("DK", "1050", ""),
        ("NO", "0150", ""),
        ("AU", "2000", "NSW"),
        ("NZ", "6011", ""),
        ("SE", "114 55", ""),
        ("PL", "00-950", ""),
        ("PT", "1100-148", ""),
        ("JP", "100-0001", ""),
        ("BR", "01310-100", ""),
        ("IN", "110001", ""),
        ("MX", "06600", ""),  # no shape rule: any code will do
        ("AE", "", ""),  # no postal codes
        ("HK", "", ""),
        ("IE", "", ""),  # Eircode is optional
        ("IE", "D02 X285", ""),
    ],
)
def test_a_complete_address_has_no_problems(country: str, postal_code: str, region: str) -> None:
    assert address_problems(address(country, postal_code, region)) == []


def test_a_company_name_is_enough_for_a_business_address() -> None:
    business = Address(
        company="Acme", line1="1 Main St", city="Berlin", postal_code="10115", country="DE"
    )
    assert address_problems(business) == []


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        (None, "no shipping address"),
        (
            Address(line1="1 Main St", city="Berlin", postal_code="10115", country="DE"),
            "address: name is missing",
        ),
        (
            Address(name="Ada", line1="  ", city="Berlin", postal_code="10115", country="DE"),
            "address: street (line1) is missing",
        ),
        (
            Address(name="Ada", line1="1 Main St", postal_code="10115", country="DE"),
            "address: city is missing",
        ),
        (address("ZZ", "12345"), "address: ZZ is not an ISO 3166-1 country code"),
        (address("DE", ""), "address: postal code is missing"),
        (
            address("US", "ABC", "NY"),
            "address: postal code 'ABC' does not look like a US ZIP code",
        ),
        (
            address("US", "1234", "NY"),
            "address: postal code '1234' does not look like a US ZIP code",
        ),
        (
            address("CA", "D1A 0B1", "ON"),
            "address: postal code 'D1A 0B1' does not look like a Canadian postal code",
        ),
        (address("GB", "SW1A", ""), "address: postal code 'SW1A' does not look like a UK postcode"),
        (
            address("NL", "0123 AB", ""),
            "address: postal code '0123 AB' does not look like a Dutch postal code",
        ),
        (
            address("PL", "00950", ""),
            "address: postal code '00950' does not look like a Polish postal code",
        ),
        (address("US", "10001"), "address: state/province (region) is missing for US"),
        (address("CA", "K1A 0B1"), "address: state/province (region) is missing for CA"),
        (address("AU", "2000"), "address: state/province (region) is missing for AU"),
    ],
)
def test_each_address_rule_names_its_problem(given: Address | None, problem: str) -> None:
    assert address_problems(given) == [problem]


def test_every_problem_of_an_address_is_listed_in_order() -> None:
    assert address_problems(Address(country="US", postal_code="x")) == [
        "address: name is missing",
        "address: street (line1) is missing",
        "address: city is missing",
        "address: postal code 'x' does not look like a US ZIP code",
        "address: state/province (region) is missing for US",
    ]


def test_the_country_list_is_the_full_iso_list() -> None:
    assert len(COUNTRY_CODES - {"XK"}) == 249
    assert {"US", "GB", "DE", "AX", "SS", "BQ"} <= COUNTRY_CODES
    assert "UK" not in COUNTRY_CODES


# --- pick list and parcel ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("A-9", "A-10"),
        ("A-2-3", "A-2-10"),
        ("A-2-10", "A-10-1"),  # aisle 2 comes before aisle 10
        ("a-1", "B-1"),
        ("A-1", "A-1-1"),
        ("Z-99", ""),  # no bin goes last
        ("9", "A"),
    ],
)
def test_bins_sort_in_walking_order(first: str, second: str) -> None:
    assert bin_sort_key(first) < bin_sort_key(second)


def test_bin_order_ignores_case_and_blanks() -> None:
    assert bin_sort_key("a-01-b") == bin_sort_key(" A-01-B ")


def line(line_no: int, sku: str, bin: str, **dimensions: float) -> PickLine:
    plain = PickLine(line_no=line_no, sku=sku, name=sku, quantity=1, bin=bin, weight_g=100)
    return msgspec.structs.replace(plain, **dimensions)


def test_the_pick_list_is_sorted_by_bin_then_sku_then_line() -> None:
    lines = [
        line(1, "MUG", ""),
        line(2, "TEE", "B-1"),
        line(3, "PEN", "A-10"),
        line(4, "CAP", "a-9"),
        line(5, "BAG", "A-9"),
        line(6, "BAG", "A-9"),
    ]
    assert [p.line_no for p in sort_pick_list(lines)] == [5, 6, 4, 3, 2, 1]


def test_a_parcel_stacks_items_flat_when_every_size_is_known() -> None:
    mug = PickLine(
        line_no=1,
        sku="MUG",
        name="Mug",
        quantity=2,
        bin="A-1",
        weight_g=300,
        length_cm=10,
        width_cm=20,
        height_cm=5,
    )
    poster = PickLine(
        line_no=2,
        sku="POSTER",
        name="Poster tube",
        quantity=1,
        bin="A-2",
        weight_g=200,
        length_cm=4,
        width_cm=25,
        height_cm=3,
    )
    assert estimate_parcel([mug, poster]) == Parcel(
        weight_g=900, length_cm=25, width_cm=10, height_cm=13
    )


def test_a_parcel_uses_the_default_box_when_a_size_is_unknown() -> None:
    known = line(1, "A", "A-1", length_cm=5, width_cm=5, height_cm=5)
    unknown = line(2, "B", "A-2", length_cm=5)
    assert estimate_parcel([known, unknown], default_box=(40, 30, 20), tare_g=250) == Parcel(
        weight_g=450, length_cm=40, width_cm=30, height_cm=20
    )


def test_a_parcel_is_at_least_a_centimetre_each_way() -> None:
    card = line(1, "CARD", "A-1", length_cm=0.5, width_cm=0.2, height_cm=0.1)
    assert estimate_parcel([card]) == Parcel(weight_g=200, length_cm=1, width_cm=1, height_cm=1)


def test_a_parcel_needs_at_least_one_line() -> None:
    with pytest.raises(ValueError, match="at least one line"):
        estimate_parcel([])
