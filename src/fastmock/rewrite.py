"""``fastmock rewrite-config``: point every ``url``/``host`` field of a YAML or JSON document at fleet endpoints.

libyaml (through PyYAML) reads the document as a stream of events that know where they start and end in
the text; only the spans of the named fields' values are replaced, so comments, key order, quoting,
indentation and everything else stay byte for byte. A value is written in the quoting style it had (JSON
strings stay JSON strings). Walking events, not building a tree, keeps it linear (100,000 fields in about
a second) and keeps aliases unexpanded.
"""

import json
import re
import urllib.parse
import urllib.request

import yaml

from fastmock.documents import MAX_DEPTH, DocumentError, decode_text, load_json

__all__ = ["ConfigError", "EndpointsError", "parse_endpoints", "fetch_endpoints", "rewrite"]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where the wheel has it
_HTTP_URL = re.compile(r"https?://[^/?#\s]")
MERGE_KEY = "<<"


class ConfigError(ValueError):
    """The document does not parse; the message names the line and column (1-based)."""


class EndpointsError(ValueError):
    pass


def parse_endpoints(text: str) -> list[str]:
    """Endpoint URLs from ``/endpoints`` JSON (strings or {"url": ...}), or one URL per line (# comments)."""
    if text.lstrip().startswith("["):
        try:
            entries = load_json(text, max_bytes=None)  # the caller has it in memory already
        except DocumentError as exc:
            raise EndpointsError(f"the endpoints are not valid JSON: {exc}") from None
        urls = [entry["url"] if isinstance(entry, dict) and "url" in entry else entry
                for entry in (entries if isinstance(entries, list) else [None])]
        if not all(isinstance(url, str) for url in urls):
            raise EndpointsError('the endpoints JSON must be a list of URLs or of {"url": URL} objects')
    else:
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        urls = [line for line in lines if line]
    for number, url in enumerate(urls, 1):
        if not _HTTP_URL.match(url):
            raise EndpointsError(f"endpoint {number} is not an http or https URL: {url[:80]!r}")
    return urls


def fetch_endpoints(url: str, timeout_s: float = 30.0, max_bytes: int = 64 << 20) -> list[str]:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise EndpointsError(f"the endpoints URL must be http or https, not {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return parse_endpoints(decode_text(response.read(max_bytes + 1), max_bytes))
    except EndpointsError:
        raise
    except (OSError, ValueError) as exc:  # a DocumentError too: too large, not UTF-8
        raise EndpointsError(f"cannot read endpoints from {url}: {getattr(exc, 'reason', exc)}") from None


class _Collection:
    __slots__ = ("mapping", "key", "keys")

    def __init__(self, mapping: bool) -> None:
        self.mapping = mapping
        self.key = None       # in a mapping: the key event whose value comes next
        self.keys = set()     # scalar keys seen, to refuse duplicates as a loader would


def _fields(text: str, names: set[str]) -> list:
    """(key event, value event) of every scalar field named in ``names``, in document order."""
    found: list = []
    open_collections: list[_Collection] = []
    scalar, alias, mapping_start, sequence_start = yaml.ScalarEvent, yaml.AliasEvent, yaml.MappingStartEvent, \
        yaml.SequenceStartEvent
    for event in yaml.parse(text, Loader=_Loader):
        kind = type(event)
        if kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            open_collections.pop()
            continue
        if kind is not scalar and kind is not alias and kind is not mapping_start and kind is not sequence_start:
            continue  # stream and document events
        parent = open_collections[-1] if open_collections else None
        if parent is not None and parent.mapping:
            if parent.key is None:  # this node is a key
                parent.key = event
                if kind is scalar and event.value != MERGE_KEY:
                    key = (event.value, not event.style)  # plain: None from PyYAML, "" from libyaml
                    if key in parent.keys:
                        raise ConfigError(f"line {event.start_mark.line + 1}, column {event.start_mark.column + 1}: "
                                          f"found duplicate key {event.value!r}")
                    parent.keys.add(key)
            else:
                key, parent.key = parent.key, None
                if kind is scalar and type(key) is scalar and key.value in names:
                    found.append((key, event))
        if kind is mapping_start or kind is sequence_start:
            open_collections.append(_Collection(kind is mapping_start))
            if len(open_collections) > MAX_DEPTH:
                raise ConfigError(f"line {event.start_mark.line + 1}, column {event.start_mark.column + 1}: "
                                  f"nesting deeper than {MAX_DEPTH} levels")
    return found


def _render(value: str, style: str | None) -> str:
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"' or style in ("|", ">"):
        return json.dumps(value)
    return value


HOST_FORMATS = ("hostport", "url")


def _value_for(field: str, endpoint: str, host_format: str) -> str:
    """``host`` fields get HOST:PORT (``host_format`` "url": the URL, as the old tool wrote them); every
    other field the endpoint's URL."""
    return urllib.parse.urlsplit(endpoint).netloc if field == "host" and host_format == "hostport" else endpoint


def rewrite(text: str, endpoints: list[str], fields=("url", "host"), cycle: bool = False,
            host_format: str = "hostport") -> tuple[str, int]:
    """The document with its fields replaced by successive endpoints, and how many were replaced."""
    try:
        found = _fields(text, set(fields))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = f"{exc.context}: {exc.problem}" if exc.context else exc.problem
        raise ConfigError(f"line {mark.line + 1}, column {mark.column + 1}: {reason}") from None
    except yaml.YAMLError as exc:  # the reader: a character YAML does not allow
        raise ConfigError(str(exc).splitlines()[0]) from None
    if len(found) > len(endpoints) and (not cycle or not endpoints):
        raise EndpointsError(f"the document has {len(found)} {'/'.join(fields)} fields but there are only "
                             f"{len(endpoints)} endpoints" + ("" if cycle else " (--cycle reuses them)"))
    pieces, position = [], 0
    for i, (key, value) in enumerate(found):
        new = _value_for(key.value, endpoints[i % len(endpoints)], host_format)
        style = value.style or None  # plain: None from PyYAML, "" from libyaml
        if value.value == "" and style is None:  # an empty value: write after the key's colon
            start = end = text.index(":", key.end_mark.index) + 1
            new = " " + new
        else:
            start, end = value.start_mark.index, value.end_mark.index
        pieces += [text[position:start], _render(new, style)]
        position = end
    pieces.append(text[position:])
    return "".join(pieces), len(found)
