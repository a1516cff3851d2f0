"""The order platforms' edge: webhook signatures and payload parsers, no I/O.

``signatures`` verifies the HMAC headers over the raw body; ``shopify``, ``woocommerce``
and ``generic`` each turn a verified body into a :data:`Decision` (``Paid``,
``Cancelled``, ``Changed`` or ``Ignored``) or raise :class:`MalformedPayload`.
"""

from adapters.platforms.intake import (
    Cancelled,
    Changed,
    Decision,
    Ignored,
    MalformedPayload,
    Paid,
    order_id_for,
)

__all__ = [
    "Cancelled",
    "Changed",
    "Decision",
    "Ignored",
    "MalformedPayload",
    "Paid",
    "order_id_for",
]
