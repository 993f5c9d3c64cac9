"""``fastmock rewrite-config``: point every ``url``/``host`` field of a YAML or JSON document at fleet endpoints.

ruamel.yaml parses the document into nodes that know where they start and end in the text; only those
value spans are replaced, so comments, key order, quoting, indentation and everything else stay byte for
byte. A value is written in the quoting style it had (JSON strings stay JSON strings).
"""

import json
import urllib.parse
import urllib.request

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

__all__ = ["ConfigError", "EndpointsError", "parse_endpoints", "fetch_endpoints", "rewrite"]


class ConfigError(ValueError):
    """The document does not parse; the message names the line and column (1-based)."""


class EndpointsError(ValueError):
    pass


def parse_endpoints(text: str) -> list[str]:
    """Endpoint URLs from ``/endpoints`` text or JSON, or a file with one URL per line (# comments)."""
    if text.lstrip().startswith("["):
        return [entry["url"] if isinstance(entry, dict) else str(entry) for entry in json.loads(text)]
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def fetch_endpoints(url: str, timeout_s: float = 30.0) -> list[str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return parse_endpoints(response.read().decode())
    except (OSError, ValueError) as exc:
        raise EndpointsError(f"cannot read endpoints from {url}: {getattr(exc, 'reason', exc)}") from None


def _fields(node, names: set[str], seen: set[int], found: list) -> None:
    """(key node, value node) of every scalar field named in ``names``, in document order."""
    if id(node) in seen:  # an alias: the same node again
        return
    seen.add(id(node))
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value in names and isinstance(value, ScalarNode):
                found.append((key, value))
            else:
                _fields(value, names, seen, found)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _fields(item, names, seen, found)


def _render(value: str, style: str | None) -> str:
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"' or style in ("|", ">"):
        return json.dumps(value)
    return value


def _value_for(field: str, endpoint: str) -> str:
    """``host`` fields get HOST:PORT; every other field the endpoint's URL."""
    return urllib.parse.urlsplit(endpoint).netloc if field == "host" else endpoint


def rewrite(text: str, endpoints: list[str], fields=("url", "host"), cycle: bool = False) -> tuple[str, int]:
    """The document with its fields replaced by successive endpoints, and how many were replaced."""
    try:
        list(YAML(typ="rt").load_all(text))  # constructing also rejects what composing lets by: duplicate keys
        documents = list(YAML(typ="rt").compose_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = f"{exc.context}: {exc.problem}" if exc.context else exc.problem
        raise ConfigError(f"line {mark.line + 1}, column {mark.column + 1}: {reason}") from None
    found: list = []
    seen: set[int] = set()
    for document in documents:
        _fields(document, set(fields), seen, found)
    if len(found) > len(endpoints) and (not cycle or not endpoints):
        raise EndpointsError(f"the document has {len(found)} {'/'.join(fields)} fields but there are only "
                             f"{len(endpoints)} endpoints" + ("" if cycle else " (--cycle reuses them)"))
    pieces, position = [], 0
    for i, (key, value) in enumerate(found):
        new = _value_for(key.value, endpoints[i % len(endpoints)])
        if value.value == "" and value.style is None:  # an empty value: write after the key's colon
            start = end = text.index(":", key.end_mark.index) + 1
            new = " " + new
        else:
            start, end = value.start_mark.index, value.end_mark.index
        pieces += [text[position:start], _render(new, value.style)]
        position = end
    pieces.append(text[position:])
    return "".join(pieces), len(found)
