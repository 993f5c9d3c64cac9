"""The sans-IO request parser: every case is fed whole, byte by byte, and followed by a pipelined request."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastmock._core import Data, EndOfMessage, RequestParser, ResponseHead
from fastmock.errors import RemoteProtocolError

SIMPLE_GET = b"GET /health HTTP/1.1\r\nHost: example.org\r\n\r\n"
NEXT_GET = b"GET /next HTTP/1.1\r\nHost: example.org\r\n\r\n"


def feed_whole(data, **limits):
    return RequestParser(**limits).feed(data)


def feed_bytewise(data, **limits):
    parser = RequestParser(**limits)
    events = []
    for i in range(len(data)):
        events += parser.feed(data[i:i + 1])
    return events


def summary(events):
    """Comparable tuples; neighbouring Data events are joined, as their split depends on the feeding."""
    out = []
    for event in events:
        if isinstance(event, Data):
            if out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + event.data)
            else:
                out.append(("data", event.data))
        elif isinstance(event, EndOfMessage):
            out.append(("end",))
        else:
            out.append(("request", event.method, event.target, event.path, event.query_string,
                        event.http_version, tuple(event.headers), event.keep_alive, event.chunked,
                        event.expect_continue, event.content_length))
    return out


@pytest.fixture(params=["whole", "bytewise", "pipelined"])
def parse(request):
    """Parse ``data`` one of three ways; the pipelined way checks that a request after it still parses."""
    def run(data, **limits):
        if request.param == "whole":
            return summary(feed_whole(data, **limits))
        if request.param == "bytewise":
            return summary(feed_bytewise(data, **limits))
        events = summary(feed_whole(data + NEXT_GET, **limits))
        assert events[-2][:3] == ("request", "GET", "/next")
        assert events[-1] == ("end",)
        return events[:-2]
    return run


def test_simple_get(parse):
    assert parse(SIMPLE_GET) == [
        ("request", "GET", "/health", "/health", "", "HTTP/1.1", (("Host", "example.org"),),
         True, False, False, -1),
        ("end",),
    ]


def test_target_forms(parse):
    events = parse(b"GET /a/b?x=1&y= HTTP/1.1\r\nHost: h\r\n\r\n")
    assert events[0][2:5] == ("/a/b?x=1&y=", "/a/b", "x=1&y=")
    events = parse(b"GET http://example.org:8080/p/q?z HTTP/1.1\r\nHost: h\r\n\r\n")
    assert events[0][3:5] == ("/p/q", "z")
    events = parse(b"GET http://example.org HTTP/1.1\r\nHost: h\r\n\r\n")
    assert events[0][3] == "/"
    events = parse(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
    assert events[0][1:4] == ("OPTIONS", "*", "*")


def test_header_values_lose_surrounding_whitespace_only(parse):
    events = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: \t a  b \t\r\nX-Empty:\r\n\r\n")
    assert events[0][6] == (("Host", "h"), ("X-A", "a  b"), ("X-Empty", ""))


def test_obs_text_in_values_is_kept_as_latin1(parse):
    events = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: caf\xe9\r\n\r\n")
    assert events[0][6][1] == ("X-A", "caf\xe9")


def test_extension_method(parse):
    assert parse(b"PURGE /x HTTP/1.1\r\nHost: h\r\n\r\n")[0][1] == "PURGE"


def test_content_length_body(parse):
    events = parse(b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
    assert events[0][10] == 5
    assert events[1:] == [("data", b"hello"), ("end",)]


def test_identical_content_length_values_are_one(parse):
    events = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc")
    assert events[1:] == [("data", b"abc"), ("end",)]


def test_chunked_body_with_extensions_and_trailers(parse):
    events = parse(b"POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5;name=value;flag\r\nhello\r\nA \r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n")
    assert events[0][8] is True
    assert events[1:] == [("data", b"hello0123456789"), ("end",)]


def test_transfer_encoding_is_case_insensitive(parse):
    events = parse(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n")
    assert events == [events[0], ("end",)] and events[0][8] is True


def test_leading_empty_lines_are_ignored(parse):
    assert parse(b"\r\n\r\n" + SIMPLE_GET)[0][2] == "/health"


@pytest.mark.parametrize("version, connection, keep_alive", [
    (b"1.1", b"", True),
    (b"1.1", b"Connection: close\r\n", False),
    (b"1.1", b"Connection: Keep-Alive, Close\r\n", False),
    (b"1.0", b"", False),
    (b"1.0", b"Connection: keep-alive\r\n", True),
    (b"1.0", b"Connection: upgrade, Keep-Alive\r\n", True),
])
def test_keep_alive_rules(parse, version, connection, keep_alive):
    events = parse(b"GET / HTTP/" + version + b"\r\nHost: h\r\n" + connection + b"\r\n")
    assert events[0][7] is keep_alive


def test_http10_needs_no_host(parse):
    assert parse(b"GET / HTTP/1.0\r\n\r\n")[0][5] == "HTTP/1.0"


def test_expect_100_continue(parse):
    events = parse(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx")
    assert events[0][9] is True


BAD_REQUESTS = {
    "missing host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "duplicate host": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "content-length and transfer-encoding":
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "invalid content-length": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3a\r\n\r\n", 400),
    "negative content-length": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
    "empty content-length": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n", 400),
    "conflicting content-length":
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
    "conflicting content-length list": (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 4\r\n\r\n", 400),
    "content-length overflow":
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400),
    "whitespace before colon": (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
    "NUL in value": (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", 400),
    "CR in value": (b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", 400),
    "bare LF": (b"GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n", 400),
    "invalid method character": (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "invalid header name character": (b"GET / HTTP/1.1\r\nHost: h\r\nX[A]: b\r\n\r\n", 400),
    "empty header name": (b"GET / HTTP/1.1\r\nHost: h\r\n: b\r\n\r\n", 400),
    "space in target": (b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "missing version": (b"GET /\r\nHost: h\r\n\r\n", 400),
    "lower-case version": (b"GET / http/1.1\r\nHost: h\r\n\r\n", 400),
    "HTTP/2.0": (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    "HTTP/1.2": (b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505),
    "HTTP/0.9": (b"GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505),
    "unknown transfer coding": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    "chunked not last": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501),
    "chunked twice": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
    "transfer-encoding in 1.0": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "bad chunk size": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", 400),
    "empty chunk size": (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 400),
    "chunk size overflow":
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", 400),
    "missing CRLF after chunk":
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 400),
    "bare LF after chunk size":
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n", 400),
    "control character in chunk extension":
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;a\x01\r\nabc\r\n", 400),
    "invalid trailer":
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n", 400),
}


@pytest.mark.parametrize("data, status", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_requests_are_rejected_with_their_status(data, status):
    for feed in (feed_whole, feed_bytewise):
        with pytest.raises(RemoteProtocolError) as info:
            feed(data)
        assert info.value.status == status


def test_long_target_is_414():
    data = b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    with pytest.raises(RemoteProtocolError) as info:
        feed_whole(data)
    assert info.value.status == 414
    assert len(feed_whole(b"GET /" + b"a" * 8191 + b" HTTP/1.1\r\nHost: h\r\n\r\n")) == 2


def test_endless_request_line_is_414_before_it_ends():
    with pytest.raises(RemoteProtocolError) as info:
        feed_whole(b"GET /" + b"a" * 20000)
    assert info.value.status == 414


def test_large_header_section_is_431():
    big = b"X-Big: " + b"v" * 70000 + b"\r\n"
    with pytest.raises(RemoteProtocolError) as info:
        feed_whole(b"GET / HTTP/1.1\r\nHost: h\r\n" + big + b"\r\n")
    assert info.value.status == 431
    # and before it ends, so an endless header can't make us buffer without bound
    with pytest.raises(RemoteProtocolError) as info:
        feed_whole(b"GET / HTTP/1.1\r\nHost: h\r\n" + big[:-2])
    assert info.value.status == 431


def test_too_many_headers_is_431():
    headers = b"".join(b"X-%d: v\r\n" % i for i in range(100))
    with pytest.raises(RemoteProtocolError) as info:
        feed_whole(b"GET / HTTP/1.1\r\nHost: h\r\n" + headers + b"\r\n")
    assert info.value.status == 431
    assert len(feed_whole(b"GET / HTTP/1.1\r\nHost: h\r\n" + headers[:-len(b"X-99: v\r\n")] + b"\r\n")) == 2


def test_limits_are_configurable():
    with pytest.raises(RemoteProtocolError) as info:
        feed_whole(b"GET /abcdef HTTP/1.1\r\nHost: h\r\n\r\n", max_target_size=4)
    assert info.value.status == 414
    with pytest.raises(RemoteProtocolError) as info:
        feed_whole(b"GET / HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n", max_headers=1)
    assert info.value.status == 431


def test_incomplete_input_waits_for_more():
    parser = RequestParser()
    assert parser.feed(SIMPLE_GET[:-1]) == []
    assert parser.buffered == len(SIMPLE_GET) - 1
    assert len(parser.feed(SIMPLE_GET[-1:])) == 2
    assert parser.buffered == 0


def test_large_body_streams_through_without_buffering():
    parser = RequestParser()
    events = parser.feed(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3000000\r\n\r\n")
    total = 0
    for _ in range(3):
        events = parser.feed(b"x" * 1000000)
        total += sum(len(event.data) for event in events if isinstance(event, Data))
        assert parser.buffered == 0
    assert total == 3000000 and isinstance(events[-1], EndOfMessage)


PIPELINE = (
    SIMPLE_GET
    + b"POST /a?b=c HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"
    + b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5;x\r\npedia\r\n0\r\nT: v\r\n\r\n"
    + b"GET /z HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
)


@given(st.lists(st.integers(min_value=0, max_value=len(PIPELINE)), max_size=12))
def test_any_split_gives_the_same_events(cuts):
    parser = RequestParser()
    events = []
    bounds = [0, *sorted(cuts), len(PIPELINE)]
    for start, end in zip(bounds, bounds[1:]):
        events += parser.feed(PIPELINE[start:end])
    assert summary(events) == summary(feed_whole(PIPELINE))
    assert [e[0] for e in summary(events)].count("request") == 4


# --- response mode (the proxy's upstream side) ---------------------------------------------------------

def _response_events(data, no_body=False):
    parser = RequestParser(response=True)
    parser.no_body = no_body
    events = parser.feed(data)
    return parser, events


def test_response_with_content_length():
    _, events = _response_events(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello")
    head, data, end = events
    assert (head.status, head.reason, head.content_length, head.keep_alive) == (200, "OK", 5, True)
    assert head.headers == [("Content-Length", "5"), ("X-A", "b")]
    assert data.data == b"hello" and isinstance(end, EndOfMessage)


def test_chunked_response_byte_by_byte():
    raw = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    parser = RequestParser(response=True)
    events = [event for byte in raw for event in parser.feed(bytes([byte]))]
    assert events[0].status == 201 and events[0].chunked
    assert b"".join(event.data for event in events if isinstance(event, Data)) == b"abc"
    assert isinstance(events[-1], EndOfMessage)


@pytest.mark.parametrize("status", [204, 304, 100])
def test_responses_that_never_have_a_body(status):
    _, events = _response_events(b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\n" % status)
    assert [type(event) for event in events] == [ResponseHead, EndOfMessage]


def test_response_to_head_has_no_body():
    _, events = _response_events(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", no_body=True)
    assert [type(event) for event in events] == [ResponseHead, EndOfMessage]


def test_response_without_length_runs_to_the_close():
    parser, events = _response_events(b"HTTP/1.0 200 OK\r\n\r\nsome")
    assert events[0].keep_alive is False and events[1].data == b"some"
    assert not any(isinstance(event, EndOfMessage) for event in events)


@pytest.mark.parametrize("raw", [b"HTTP/2 200 OK\r\n\r\n", b"HTTP/1.1 20 OK\r\n\r\n", b"SMTP 220\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"])
def test_bad_responses_are_502(raw):
    with pytest.raises(RemoteProtocolError) as info:
        RequestParser(response=True).feed(raw)
    assert info.value.status == 502
