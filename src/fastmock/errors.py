"""The exceptions fastmock raises; the core and every mode share them."""

__all__ = ["FastmockError", "ProtocolError", "RemoteProtocolError", "LocalProtocolError"]


class FastmockError(Exception):
    """Base of every fastmock error."""


class ProtocolError(FastmockError):
    """An HTTP exchange went wrong; ``status`` is the response code that says so."""

    def __init__(self, msg: str, status: int = 400) -> None:
        if type(self) is ProtocolError:
            raise TypeError("tried to directly instantiate ProtocolError")
        super().__init__(msg)
        self.msg = msg
        self.status = status


class RemoteProtocolError(ProtocolError):
    """The peer broke HTTP: answer ``status`` with ``Connection: close``, then close.

    Raised by ``RequestParser.feed()``, its ``events`` are those the same input completed before the error.
    """

    events: list = []


class LocalProtocolError(ProtocolError):
    """We were about to produce invalid HTTP: a bug, answered with 500 and logged."""
