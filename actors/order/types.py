"""The normalized order: what every platform parser produces and every later step reads.

Pure data, no I/O. Field types never change once released; new fields get defaults.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from msgspec import Meta, Struct

# SKUs end up inside Redis keys and file names: printable, no spaces, braces or colons.
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/+#-]{0,63}$"
_SKU = re.compile(SKU_PATTERN)

Sku = Annotated[str, Meta(pattern=SKU_PATTERN)]
Quantity = Annotated[int, Meta(ge=1, le=1_000_000)]
CurrencyCode = Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]
CountryCode = Annotated[str, Meta(pattern=r"^[A-Z]{2}$")]
Platform = Literal["shopify", "woocommerce", "generic"]
# What happens to an order the warehouses cannot fill whole: it waits for all of it, ships
# what is there, or waits and is cancelled after a number of days.
BackorderPolicy = Literal["wait_all", "ship_available", "cancel_after_days"]


def is_valid_sku(sku: str) -> bool:
    """True when ``sku`` can be stocked: 1-64 printable characters, no spaces or braces."""
    return _SKU.fullmatch(sku) is not None


class Customer(Struct, frozen=True, kw_only=True, omit_defaults=True):
    email: str | None = None
    phone: str | None = None
    first_name: str = ""
    last_name: str = ""
    # The platform's consent to marketing/transactional SMS, when it says.
    accepts_sms: bool = False
    # The platform's consent to marketing email (a repeat-purchase reminder needs it).
    accepts_marketing: bool = False
    locale: str | None = None


class Address(Struct, frozen=True, kw_only=True):
    name: str = ""
    company: str = ""
    line1: str = ""
    line2: str = ""
    city: str = ""
    region: str = ""  # state / province code
    postal_code: str = ""
    country: CountryCode
    phone: str | None = None


class Line(Struct, frozen=True, kw_only=True, omit_defaults=True):
    sku: Sku
    quantity: Quantity
    name: str = ""
    external_line_id: str | None = None
    # Gift cards and digital goods are recorded but never reserved or shipped.
    requires_shipping: bool = True
    grams: Annotated[int, Meta(ge=0)] = 0
    unit_price: Decimal = Decimal(0)


class NormalizedOrder(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An order as orderd keeps it, whatever platform sent it.

    It is stored three times (the paid message, the document, the received event) and
    streamed once, so it is written without its default fields, as is its customer and
    each line. ``Address`` keeps every field: it goes to the warehouse system as it is.
    """

    id: str
    platform: Platform
    external_id: str
    name: str | None = None
    paid_at: datetime | None = None
    currency: CurrencyCode
    customer: Customer
    shipping_address: Address | None = None
    lines: Annotated[tuple[Line, ...], Meta(min_length=1, max_length=1000)]
    total: Decimal | None = None
    # The shipping line's title or code as the platform sent it; mapped to a service level later.
    shipping_service: str | None = None
    note: str | None = None
    backorder_policy: BackorderPolicy | None = None

    def shippable_lines(self) -> tuple[Line, ...]:
        """The lines that take stock and go in a parcel."""
        return tuple(line for line in self.lines if line.requires_shipping)
