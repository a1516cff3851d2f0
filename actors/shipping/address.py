"""Whether a shipping address is complete enough to buy a label for.

Pure and deliberately shallow: it catches what makes every carrier refuse (a missing
street, an unknown country, a ZIP code that is not one) so the order waits for a person
instead of failing at the label step. Whether the address exists is the carrier's call.
"""

from __future__ import annotations

import re

from actors.order.types import Address

# ISO 3166-1 alpha-2, every officially assigned code, plus XK: the code carriers, the EU
# and the shop platforms use for Kosovo.
_ISO_3166_1_ALPHA_2 = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
    BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
    CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET
    FI FJ FK FM FO FR
    GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY
    HK HM HN HR HT HU
    ID IE IL IM IN IO IQ IR IS IT
    JE JM JO JP
    KE KG KH KI KM KN KP KR KW KY KZ
    LA LB LC LI LK LR LS LT LU LV LY
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
    NA NC NE NF NG NI NL NO NP NR NU NZ
    OM
    PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA
    RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ
    UA UG UM US UY UZ
    VA VC VE VG VI VN VU
    WF WS
    XK
    YE YT
    ZA ZM ZW
"""
COUNTRY_CODES: frozenset[str] = frozenset(_ISO_3166_1_ALPHA_2.split())

# Countries whose addresses carry no postal code, or where it is optional (Ireland's
# Eircode): a missing one is not a problem there. A code given anyway is accepted as is.
_WITHOUT_POSTAL_CODES = """
    AE AG AO AW BF BI BJ BO BS BW BZ CD CF CG CI CK CM DJ DM ER FJ GA GD GH GM GQ GY
    HK IE JM KI KM KN KP LC ML MO MR MW NR NU QA RW SB SC SL SR ST SY TD TG TK TL TO
    TT TV UG VU YE ZW
"""
NO_POSTAL_CODE: frozenset[str] = frozenset(_WITHOUT_POSTAL_CODES.split())

# Countries where carriers refuse a label without the state, province or territory.
REGION_REQUIRED: frozenset[str] = frozenset({"US", "CA", "AU"})

_FOUR = re.compile(r"\d{4}")
_FIVE = re.compile(r"\d{5}")

# Postal code shapes, matched against the upper-cased code with surrounding blanks removed,
# with what the code is called there (for the problem line).
_POSTAL_SHAPES: dict[str, tuple[re.Pattern[str], str]] = {
    "US": (re.compile(r"\d{5}(-\d{4})?"), "a US ZIP code"),
    "CA": (
        re.compile(r"[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z] ?\d[ABCEGHJ-NPRSTV-Z]\d"),
        "a Canadian postal code",
    ),
    "GB": (re.compile(r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}|GIR ?0AA"), "a UK postcode"),
    "DE": (_FIVE, "a German postal code"),
    "FR": (_FIVE, "a French postal code"),
    "ES": (_FIVE, "a Spanish postal code"),
    "IT": (_FIVE, "an Italian postal code"),
    "NL": (re.compile(r"[1-9]\d{3} ?[A-Z]{2}"), "a Dutch postal code"),
    "BE": (_FOUR, "a Belgian postal code"),
    "AT": (_FOUR, "an Austrian postal code"),
    "CH": (_FOUR, "a Swiss postal code"),
    "DK": (_FOUR, "a Danish postal code"),
    "NO": (_FOUR, "a Norwegian postal code"),
    "AU": (_FOUR, "an Australian postcode"),
    "NZ": (_FOUR, "a New Zealand postcode"),
    "SE": (re.compile(r"\d{3} ?\d{2}"), "a Swedish postal code"),
    "PL": (re.compile(r"\d{2}-\d{3}"), "a Polish postal code"),
    "PT": (re.compile(r"\d{4}-\d{3}"), "a Portuguese postal code"),
    "JP": (re.compile(r"\d{3}-?\d{4}"), "a Japanese postal code"),
    "BR": (re.compile(r"\d{5}-?\d{3}"), "a Brazilian CEP"),
    "IN": (re.compile(r"[1-9]\d{2} ?\d{3}"), "an Indian PIN code"),
}


def address_problems(address: Address | None) -> list[str]:
    """Why a label cannot be bought for ``address``, as short lines; empty when it can."""
    if address is None:
        return ["no shipping address"]
    problems: list[str] = []
    if not address.name.strip() and not address.company.strip():
        problems.append("address: name is missing")
    if not address.line1.strip():
        problems.append("address: street (line1) is missing")
    if not address.city.strip():
        problems.append("address: city is missing")
    country = address.country
    if country not in COUNTRY_CODES:
        problems.append(f"address: {country} is not an ISO 3166-1 country code")
        return problems  # the postal and region rules depend on the country

    postal = address.postal_code.strip()
    shape = _POSTAL_SHAPES.get(country)
    if not postal:
        if country not in NO_POSTAL_CODE:
            problems.append("address: postal code is missing")
    elif shape is not None and shape[0].fullmatch(postal.upper()) is None:
        problems.append(
            f"address: postal code {address.postal_code!r} does not look like {shape[1]}"
        )
    if country in REGION_REQUIRED and not address.region.strip():
        problems.append(f"address: state/province (region) is missing for {country}")
    return problems
