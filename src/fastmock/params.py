"""click parameter types for sizes and durations (the parsing itself is in ``units.py``)."""

import click

from fastmock.units import parse_duration, parse_size

__all__ = ["Size", "Duration"]


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
