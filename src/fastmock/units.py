"""Sizes (``1K``, ``10M``), durations (``250ms``, ``5s``, ``2m``) and whole numbers as the CLI and the endpoints
take them. No click here: workers import this, and the CLI's parameter types are in ``params.py``."""

import re

__all__ = ["parse_size", "parse_duration", "parse_whole", "parse_share", "MAX_INT63", "MIN_DURATION_S",
           "MAX_DURATION_S"]

_SIZE = re.compile(r"([0-9]+)([kmgt]?)(?:i?b)?", re.IGNORECASE)
_SIZE_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?", re.IGNORECASE)
_DURATION_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


MAX_INT63 = (1 << 63) - 1
# a duration in a schedule or a scenario: finer than the event loop's millisecond clock means nothing
MIN_DURATION_S = 0.001
MAX_DURATION_S = 10 * 365 * 86400.0


def parse_whole(text: str, name: str, low: int = 0, high: int = MAX_INT63, unit: str = "") -> int:
    """A whole number written in ASCII digits, from ``low`` to ``high``; else ValueError naming ``name``.

    ``str.isdigit`` alone is not enough: it takes "²" and other scripts' digits, which ``int`` then refuses.
    """
    digits = text[1:] if low < 0 and text[:1] == "-" else text  # a sign only where negatives are allowed
    if not (digits.isascii() and digits.isdigit()) or len(digits.lstrip("0")) > 19 or not low <= int(text) <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}{unit}")
    return int(text)


def parse_size(text: str) -> int:
    """Bytes from ``1024``, ``1K``, ``10M``, ``1G``, ``1T`` (powers of 1024, case-insensitive)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"invalid size {text!r} (examples: 1024, 64K, 10M, 1G)")
    value = int(match.group(1)) << _SIZE_SHIFT[match.group(2).lower()]
    if value >= 1 << 63:
        raise ValueError(f"size {text!r} is too large")
    return value


def parse_duration(text: str, bare_unit: str = "s") -> float:
    """Seconds from ``250ms``, ``5s``, ``2m``, ``1h``; a bare number is in ``bare_unit``."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"invalid duration {text!r} (examples: 250ms, 5s, 2m)")
    unit = (match.group(2) or bare_unit).lower()
    return float(match.group(1)) * _DURATION_SCALE[unit]


def parse_share(text: str) -> float:
    """A share from 0 to 1: ``0.2`` or ``20%``; ValueError saying so for anything else."""
    value = text.strip()
    try:
        share = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        share = float("nan")
    if not 0 <= share <= 1:
        raise ValueError(f"{text!r} is not a share from 0 to 1 (or 0% to 100%)")
    return share
