"""Tracking numbers the sandbox carrier hands out: "SB", 14 digits and a Luhn check digit.

Derived from a seed (the shipment or quote id), so buying the same label twice gives the
same number and a replayed purchase stays consistent.
"""

from __future__ import annotations

import hashlib
import re

_PREFIX = "SB"
_BODY_DIGITS = 14
_SANDBOX = re.compile(rf"{_PREFIX}([0-9]{{{_BODY_DIGITS}}})([0-9])")


def sandbox_tracking_number(seed: str) -> str:
    """The sandbox tracking number for ``seed``: always the same 17 characters for one seed."""
    digest = hashlib.sha256(seed.encode()).digest()
    body = f"{int.from_bytes(digest, 'big') % 10**_BODY_DIGITS:0{_BODY_DIGITS}d}"
    return f"{_PREFIX}{body}{_luhn_check_digit(body)}"


def is_valid_sandbox_tracking_number(value: str) -> bool:
    """True when ``value`` has the sandbox shape and its check digit matches."""
    match = _SANDBOX.fullmatch(value)
    if match is None:
        return False
    body, check = match.groups()
    return _luhn_check_digit(body) == int(check)


def _luhn_check_digit(digits: str) -> int:
    """The Luhn (mod 10) digit that makes ``digits`` followed by it a valid Luhn number."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        # Counted from the right, the check digit will take position 0, so these get doubled.
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10
