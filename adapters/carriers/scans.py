"""Where a carrier scanned a parcel, as carriers' JSON gives it, made into one line."""

from __future__ import annotations

from msgspec import Struct


class ScanLocation(Struct, kw_only=True):
    """Where a carrier scanned a parcel, as carriers' JSON gives it."""

    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None


def place(location: ScanLocation | None) -> str:
    """The scan's place as one line, e.g. "HOUSTON, TX, 77063"."""
    if location is None:
        return ""
    parts = (location.city, location.state, location.zip, location.country)
    return ", ".join(part.strip() for part in parts if part and part.strip())
