"""The parser under generated hostile input, in both modes: whatever the bytes, it either gives events or
raises RemoteProtocolError, and the same bytes give the same events and the same status whether they come
whole, cut at random places, or one byte at a time (the segmentation oracle)."""

import random

from cases import request_stream, response_stream, seeds, splits
from fastmock._core import Data, EndOfMessage, RequestParser
from fastmock.errors import RemoteProtocolError

LIMITS = [{}, {"max_target_size": 64, "max_header_size": 256, "max_headers": 4}]


def outcome(pieces, **options):
    """(events, error status or None) from feeding ``pieces`` one after another; neighbouring Data joined."""
    parser = RequestParser(**options)
    events, status = [], None
    try:
        for piece in pieces:
            events += parser.feed(piece)
    except RemoteProtocolError as exc:
        events += exc.events
        status = exc.status
    joined = []
    for event in events:
        if isinstance(event, Data):
            if joined and isinstance(joined[-1], bytes):
                joined[-1] += event.data
            else:
                joined.append(event.data)
        else:
            joined.append("end" if isinstance(event, EndOfMessage) else repr(event) + repr(event.headers))
    return joined, status


def check_segmentation(make, seed, **mode):
    rng = random.Random(seed)
    data = make(rng)
    options = {**mode, **LIMITS[seed % len(LIMITS)]}
    whole = outcome([data], **options)
    for name, pieces in (("split", splits(rng, data)), ("bytewise", [data[i:i + 1] for i in range(len(data))])):
        assert outcome(pieces, **options) == whole, f"seed {seed}: {name} differs from whole for {data!r}"


def test_requests_segmentation_oracle():
    for seed in seeds("parser (requests)", 0.3):
        check_segmentation(request_stream, seed)


def test_responses_segmentation_oracle():
    for seed in seeds("parser (responses)", 0.15):
        check_segmentation(response_stream, seed, response=True)


def test_a_failed_parser_stays_failed_and_keeps_no_stale_events():
    parser = RequestParser()
    good = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    try:
        parser.feed(good + b"GET / HTTP/1.1\r\nBad header\r\n\r\n")
    except RemoteProtocolError as exc:
        assert [type(event).__name__ for event in exc.events] == ["Request", "EndOfMessage"]
    else:
        raise AssertionError("no error")
    for _ in range(2):
        try:
            parser.feed(good)
        except RemoteProtocolError as exc:
            assert exc.status == 400 and exc.events == []
        else:
            raise AssertionError("a failed parser parsed again")
