"""Sizes (``1K``, ``10M``) and durations (``250ms``, ``5s``, ``2m``) as the CLI and the endpoints take them."""

import re

import click

__all__ = ["parse_size", "parse_duration", "parse_whole", "MAX_INT63", "Size", "Duration"]

_SIZE = re.compile(r"([0-9]+)([kmgt]?)(?:i?b)?", re.IGNORECASE)
_SIZE_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?", re.IGNORECASE)
_DURATION_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


MAX_INT63 = (1 << 63) - 1


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


class Size(click.ParamType):
    """A size option; ``minimum``/``maximum`` in bytes."""

    name = "size"

    def __init__(self, minimum: int = 0, maximum: int | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            size = parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if size < self.minimum or (self.maximum is not None and size > self.maximum):
            bound = f"{self.minimum}..{self.maximum}" if self.maximum is not None else f">= {self.minimum}"
            self.fail(f"{value!r} is out of range ({bound} bytes)", param, ctx)
        return size


class Duration(click.ParamType):
    """A duration option, converted to seconds; a bare number is in ``bare_unit``."""

    name = "duration"

    def __init__(self, bare_unit: str = "s", minimum: float = 0.0, maximum: float | None = None) -> None:
        self.bare_unit = bare_unit
        self.minimum = minimum
        self.maximum = maximum

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        try:
            seconds = parse_duration(str(value), self.bare_unit)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds < self.minimum or (self.maximum is not None and seconds > self.maximum):
            bound = f"{self.minimum:g}s..{self.maximum:g}s" if self.maximum is not None else f">= {self.minimum:g}s"
            self.fail(f"{value!r} is out of range ({bound})", param, ctx)
        return seconds
