"""YAML and JSON documents from anyone (an API body, a file): bounded before anything is built from them.

A 300-byte YAML "billion laughs" (anchors whose aliases nest aliases) builds nothing large itself, but
everything that walks or serialises the result expands it to gigabytes; deep nesting costs ruamel.yaml
quadratic time and Python's recursion. So a document is first read as a flat event stream, counting its
nodes as they would be after expanding aliases and its nesting depth, and refused at the first event past
a limit, with the line and column there.
"""

import json

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (AliasEvent, CollectionEndEvent, CollectionStartEvent, MappingStartEvent, NodeEvent,
                                ScalarEvent)

__all__ = ["DocumentError", "MAX_DOCUMENT_BYTES", "MAX_DEPTH", "MAX_NODES", "check_yaml", "load_yaml",
           "read_text", "decode_text", "load_json"]

MAX_DOCUMENT_BYTES = 1 << 20  # a schedule, a scenario or an endpoints list is far smaller
MAX_DEPTH = 64
MAX_NODES = 1_000_000         # after expanding aliases
MAX_NUMBER_DIGITS = 100       # int() of thousands of digits is slow, and refused past 4,300


class DocumentError(ValueError):
    """A document refused or unreadable; ``line`` and ``column`` are 1-based (None where unknown)."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(f"line {line}, column {column}: {reason}" if line else reason)
        self.reason = reason
        self.line = line
        self.column = column

    def at(self, path: str) -> str:
        """``PATH:LINE:COLUMN: reason``, as compilers say it."""
        return f"{path}:{self.line}:{self.column or 1}: {self.reason}" if self.line else f"{path}: {self.reason}"


def _from_yaml_error(exc: YAMLError) -> DocumentError:
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return DocumentError(exc.problem or exc.context, mark.line + 1, mark.column + 1)
    return DocumentError(str(exc).splitlines()[0])  # e.g. a NUL: the reader names the character


def check_yaml(text: str, max_bytes: int = MAX_DOCUMENT_BYTES, max_depth: int = MAX_DEPTH,
               max_nodes: int = MAX_NODES) -> None:
    """Raise DocumentError if ``text`` is too large, nests too deep, expands past ``max_nodes`` or has a key
    that is not plain text."""
    if len(text) > max_bytes:
        raise DocumentError(f"the document is over {max_bytes} bytes")
    sizes: dict[str, int] = {}   # anchor -> nodes in its subtree, aliases expanded
    # per open collection: [anchor, node count before it, in a mapping whether the next node is a key]
    open_nodes: list[list] = []
    nodes = 0
    try:
        for event in YAML(typ="rt").parse(text):
            if open_nodes and open_nodes[-1][2] is not None and isinstance(event, NodeEvent):
                parent = open_nodes[-1]
                if parent[2] and not isinstance(event, ScalarEvent):  # Python could not hash it as a key
                    raise _at(event, "a key must be plain text, not a mapping, a list or an alias")
                parent[2] = not parent[2]
            if isinstance(event, AliasEvent):
                nodes += sizes.get(event.anchor, 1)
            elif isinstance(event, ScalarEvent):
                nodes += 1
                if event.anchor:
                    sizes[event.anchor] = 1
                if not event.style and len(event.value) > MAX_NUMBER_DIGITS \
                        and event.value.lstrip("+-").replace("_", "").isdigit():
                    raise _at(event, f"a number of more than {MAX_NUMBER_DIGITS} digits")
            elif isinstance(event, CollectionStartEvent):
                open_nodes.append([event.anchor, nodes, True if isinstance(event, MappingStartEvent) else None])
                nodes += 1
                if len(open_nodes) > max_depth:
                    raise _at(event, f"nested deeper than {max_depth} levels")
            elif isinstance(event, CollectionEndEvent):
                anchor, before, _ = open_nodes.pop()
                if anchor:
                    sizes[anchor] = nodes - before
            if nodes > max_nodes and isinstance(event, NodeEvent):
                raise _at(event, f"more than {max_nodes} values once aliases are expanded")
    except YAMLError as exc:
        raise _from_yaml_error(exc) from None


def _at(event, reason: str) -> DocumentError:
    return DocumentError(reason, event.start_mark.line + 1, event.start_mark.column + 1)


def load_yaml(text: str, **limits):
    """The document (ruamel's round-trip types, which know their lines), once check_yaml lets it by."""
    check_yaml(text, **limits)
    try:
        return YAML(typ="rt").load(text)
    except YAMLError as exc:
        raise _from_yaml_error(exc) from None


def read_text(path: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """A file's text (see decode_text); OSError for a file that cannot be read."""
    with open(path, "rb") as file:
        return decode_text(file.read(max_bytes + 1), max_bytes)


def decode_text(data: bytes, max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """UTF-8 text of at most ``max_bytes``, else DocumentError naming where the first bad byte is."""
    if len(data) > max_bytes:
        raise DocumentError(f"over {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DocumentError(f"not UTF-8 text (byte 0x{data[exc.start]:02x})", line, column) from None


def load_json(text: str, max_bytes: int | None = MAX_DOCUMENT_BYTES):
    """A JSON document, within a size limit (None: none); nesting past the decoder's recursion limit is refused."""
    if max_bytes is not None and len(text) > max_bytes:
        raise DocumentError(f"the document is over {max_bytes} bytes")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(exc.msg, exc.lineno, exc.colno) from None
    except RecursionError:
        raise DocumentError("nested too deep") from None
