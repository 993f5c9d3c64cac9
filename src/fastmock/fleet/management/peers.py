"""A fleet of several processes or pods (``--peers``): whichever management API is asked answers for all.

The peers are a DNS name (a Kubernetes headless Service: every A/AAAA record is a pod), resolved at each
call as pods come and go, or a fixed list of HOST:PORT. A call is fanned out as the same call with
``local=1`` (answered by that pod alone) to every peer, itself included, and the answers are merged:
counts add, lists are concatenated in pod order (by ordinal), events are merged by time with their pod
named, and an endpoint is HOST:PORT everywhere (a pod names its own ports by number). A peer that does not
answer, refuses the token or runs another fastmock version is named in ``pods`` (and for lists and text in
the ``X-Fastmock-Partial`` header): the answer is marked partial, never silently short.

One call is two rounds: ``GET /stats?local=1`` to every peer (who is there, its ordinal, its hosts), then
the call itself to those that answered.
"""

import asyncio
import random
import socket
from dataclasses import dataclass, field
from urllib.parse import urlencode

import orjson

from fastmock.fleet.ports import split_host_port

__all__ = ["Peers", "Pod", "parse_peers", "PeersError", "split_count"]

CALL_TIMEOUT_S = 10.0


class PeersError(ValueError):
    """A --peers value that cannot be used; the message names the part."""


def parse_peers(text: str, default_port: int, own=frozenset()) -> tuple[str | None, tuple[tuple[str, int], ...]]:
    """``NAME`` or ``NAME:PORT`` (resolved at each call) → (name, ()) with the port as the only pair's;
    ``HOST:PORT,HOST:PORT…`` → (None, the pairs). PeersError for a duplicate, a bad port, or two pairs of
    ``own`` (the (host, port) pairs that name this process's API: it would be asked twice)."""
    parts = [part for part in text.replace(" ", ",").split(",") if part]
    if not parts:
        raise PeersError("no peer given")
    pairs = []
    for part in parts:
        host, port = split_host_port(part)
        if host is not None and not (port.isdigit() and 0 < int(port) < 65536):
            raise PeersError(f"{part!r}: {port!r} is not a port")
        pair = (host, int(port)) if host is not None else (part, default_port)
        if pair in pairs:
            raise PeersError(f"{part!r} is given twice")
        if pair in own and (ours := next((earlier for earlier in pairs if earlier in own), None)):
            raise PeersError(f"{_name(*ours)!r} and {part!r} both name this fleet's own API")
        pairs.append(pair)
    if len(pairs) == 1 and not _is_address(pairs[0][0]):
        return pairs[0][0], pairs  # a name: its addresses are the peers
    return None, tuple(pairs)


def _is_address(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


@dataclass
class Pod:
    """One peer as this call found it: ``stats`` its own /stats (None: it cannot be asked, see ``error``)."""

    name: str                  # HOST:PORT of its management API
    url: str
    stats: dict | None = None
    error: str | None = None
    answer: object = field(default=None, repr=False)  # the call's (status, headers, body)

    @property
    def ordinal(self) -> int:
        return self.stats["ordinal"]

    def endpoint(self, port) -> str:
        """A port number of this pod's, as the fleet-wide name HOST:PORT (a HOST:PORT stays as it is)."""
        if isinstance(port, str):
            return port
        host = self.stats["advertise"]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def named_event(self, event: dict) -> dict:
        """One of this pod's events as the fleet names it: the pod, and each port as HOST:PORT."""
        return {**event, "pod": self.name, "ports": [self.endpoint(port) for port in event["ports"]]}


class Peers:
    def __init__(self, name: str | None, pairs, own: set, version: str) -> None:
        self.name = name        # resolved at each call, with pairs[0]'s port
        self.pairs = pairs
        self.own = own          # (host, port) pairs that are this process's management API
        self.self_pair = next(iter(sorted(own)))
        self.version = version
        self.client = None

    async def addresses(self) -> list[tuple[str, int]]:
        """The peers now: the name's addresses (every record), or the list; this process always among them."""
        pairs = list(self.pairs)
        if self.name is not None:
            port = self.pairs[0][1]
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(self.name, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise PeersError(f"--peers {self.name}: {exc.strerror}") from None
            pairs = list(dict.fromkeys((info[4][0], port) for info in infos))
        if not self.own & set(pairs):
            pairs.append(self.self_pair)
        return pairs

    async def survey(self, authorization: str | None) -> list[Pod]:
        """Every peer with its /stats (or why it has none), in ordinal order (the silent ones last)."""
        pods = [Pod(name=_name(host, port), url=f"http://{_name(host, port)}") for host, port in await self.addresses()]
        answers = await asyncio.gather(*(self.request(pod, "GET", "/stats", {}, b"", authorization) for pod in pods))
        for pod, (status, _, body) in zip(pods, answers):
            if status != 200:
                pod.error = _why(status, body)
                continue
            try:
                stats = orjson.loads(body)
            except orjson.JSONDecodeError:
                stats = None
            if not isinstance(stats, dict):
                pod.error = "answers /stats with no JSON object: not a fastmock fleet"
            elif stats.get("version") != self.version:
                pod.error = f"fastmock {stats.get('version')}, not {self.version}"
            else:
                pod.stats = stats
        return sorted(pods, key=lambda pod: (pod.error is not None, pod.stats and pod.stats["ordinal"], pod.name))

    async def request(self, pod: Pod, method: str, path: str, query: dict, body: bytes,
                      authorization: str | None) -> tuple[int, dict, bytes]:
        """``method path?query&local=1`` on ``pod``: (status, headers, body); status 0 when it did not answer."""
        import httpx  # here: only a fleet with --peers makes calls

        if self.client is None:
            self.client = httpx.AsyncClient(timeout=CALL_TIMEOUT_S)
        params = urlencode([(key, value) for key, values in query.items() for value in values] + [("local", "1")])
        try:
            response = await self.client.request(method, f"{pod.url}{path}?{params}", content=body or None,
                                                 headers={"Authorization": authorization} if authorization else {})
        except httpx.HTTPError as exc:
            return 0, {}, str(exc).encode() or type(exc).__name__.encode()
        return response.status_code, dict(response.headers), response.content


def _name(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _why(status: int, body: bytes) -> str:
    if status == 0:
        return f"no answer ({body.decode('utf-8', 'replace')})"
    if status == 401:
        return "refused the token (401)"
    try:
        return f"{orjson.loads(body)['error']} ({status})"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"HTTP {status}"


def split_count(count: int, sizes: list[int], rng: random.Random) -> list[int]:
    """``count`` of the items spread over groups of ``sizes``, as a uniform draw of ``count`` items would."""
    drawn = sorted(rng.sample(range(sum(sizes)), count))
    shares, start, at = [], 0, 0
    for size in sizes:
        end = start + size
        taken = 0
        while at < len(drawn) and drawn[at] < end:
            taken += 1
            at += 1
        shares.append(taken)
        start = end
    return shares
