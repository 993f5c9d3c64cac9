"""fastmock: fast, numerous, misbehaving fake HTTP servers."""

from importlib.metadata import version as _version

__version__ = _version("fastmock")
__all__ = ["__version__"]
