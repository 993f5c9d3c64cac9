"""click parameter types for sizes and durations (the parsing itself is in ``units.py``)."""

import click

from fastmock.units import parse_duration, parse_size

__all__ = ["Size", "Duration"]


class _Bounded(click.ParamType):
    """A value parsed from text (``parse``), then held to ``minimum``..``maximum`` (None: no maximum)."""

    parsed_type: type  # a value of this type (a default) is taken as it is

    def __init__(self, minimum, maximum) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def parse(self, text: str):
        raise NotImplementedError

    def bounds(self) -> str:
        raise NotImplementedError

    def convert(self, value, param, ctx):
        if isinstance(value, self.parsed_type):
            return value
        try:
            parsed = self.parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if parsed < self.minimum or (self.maximum is not None and parsed > self.maximum):
            self.fail(f"{value!r} is out of range ({self.bounds()})", param, ctx)
        return parsed


class Size(_Bounded):
    """A size option; ``minimum``/``maximum`` in bytes."""

    name = "size"
    parsed_type = int

    def __init__(self, minimum: int = 0, maximum: int | None = None) -> None:
        super().__init__(minimum, maximum)

    def parse(self, text: str) -> int:
        return parse_size(text)

    def bounds(self) -> str:
        return f"{self.minimum}..{self.maximum} bytes" if self.maximum is not None else f">= {self.minimum} bytes"


class Duration(_Bounded):
    """A duration option, converted to seconds; a bare number is in ``bare_unit``."""

    name = "duration"
    parsed_type = float

    def __init__(self, bare_unit: str = "s", minimum: float = 0.0, maximum: float | None = None) -> None:
        super().__init__(minimum, maximum)
        self.bare_unit = bare_unit

    def parse(self, text: str) -> float:
        return parse_duration(text, self.bare_unit)

    def bounds(self) -> str:
        if self.maximum is not None:
            return f"{self.minimum:g}s..{self.maximum:g}s"
        return f">= {self.minimum:g}s"
