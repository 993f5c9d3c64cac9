"""The fleet's addresses and port range, and the range against the kernel's ephemeral range (client sockets
take ports from it)."""

import ipaddress

__all__ = ["parse_port_range", "parse_hosts", "split_host_port", "ephemeral_overlap", "fix_command", "PortReservation",
           "MAX_HOSTS"]

MAX_HOSTS = 1024  # addresses in one fleet (--hosts)

PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
RESERVED_FILE = "/proc/sys/net/ipv4/ip_local_reserved_ports"


def parse_port_range(text: str) -> tuple[int, int]:
    """``"10005"`` or ``"10000-10099"`` → (low, high); ValueError unless it is one port or a rising range."""
    first, dash, last = str(text).strip().partition("-")
    if not (first.isdigit() and (not dash or last.isdigit())) or int(last if dash else first) < int(first):
        raise ValueError(f"{text!r} is not a port or a range like 10000-10099")
    return int(first), int(last if dash else first)


def split_host_port(text: str) -> tuple[str | None, str]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` → (HOST, PORT text); anything else (a port, a name) → (None, text)."""
    if text.startswith("[") or text.count(":") == 1:
        host, _, port = text.rpartition(":")
        return host.strip("[]"), port
    return None, text


def parse_hosts(text: str) -> tuple[str, ...]:
    """``"127.0.0.1-127.0.0.20"`` (a range of addresses), ``"10.0.0.5,10.0.0.9"``, or both → the addresses in
    order; ValueError naming the part that is not an address or a rising range, or an address given twice."""
    hosts = []
    for part in str(text).replace(",", " ").split():
        low, dash, high = part.partition("-")
        try:
            first = ipaddress.ip_address(low)
            last = ipaddress.ip_address(high) if dash else first
        except ValueError:
            raise ValueError(f"{part!r} is not an address or a range like 127.0.0.1-127.0.0.20") from None
        if first.version != last.version or last < first:
            raise ValueError(f"{part!r} is not a rising range of addresses")
        if first.is_unspecified:
            raise ValueError(f"{part!r} is every address: give the fleet's addresses themselves")
        if len(hosts) + int(last) - int(first) + 1 > MAX_HOSTS:
            raise ValueError(f"{part!r}: a fleet has at most {MAX_HOSTS} addresses")
        for number in range(int(first), int(last) + 1):
            host = str(ipaddress.ip_address(number) if first.version == 4 else ipaddress.IPv6Address(number))
            if host in hosts:
                raise ValueError(f"{host} is given twice (in {part!r})")
            hosts.append(host)
    if not hosts:
        raise ValueError("no address given")
    return tuple(hosts)


def _parse_ranges(text: str) -> list[tuple[int, int]]:
    """``"8080,10000-10010"`` → [(8080, 8080), (10000, 10010)]."""
    ranges = []
    for part in text.replace(",", " ").split():
        low, _, high = part.partition("-")
        ranges.append((int(low), int(high or low)))
    return ranges


def _format_ranges(ranges: list[tuple[int, int]]) -> str:
    return ",".join(f"{low}-{high}" if high != low else str(low) for low, high in ranges)


def _read(path: str) -> str | None:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return None


def ephemeral_range() -> tuple[int, int] | None:
    text = _read(PORT_RANGE_FILE)
    if not text:
        return None
    low, high = map(int, text.split())
    return low, high


def ephemeral_overlap(low: int, high: int) -> list[tuple[int, int]]:
    """The parts of ``low..high`` inside the ephemeral range and not reserved (the ports at risk)."""
    ephemeral = ephemeral_range()
    if ephemeral is None:
        return []
    start, stop = max(low, ephemeral[0]), min(high, ephemeral[1])
    if start > stop:
        return []
    at_risk = [(start, stop)]
    for reserved_low, reserved_high in _parse_ranges(_read(RESERVED_FILE) or ""):
        at_risk = [piece for a, b in at_risk
                   for piece in ((a, min(b, reserved_low - 1)), (max(a, reserved_high + 1), b)) if piece[0] <= piece[1]]
    return at_risk


def fix_command(ranges: list[tuple[int, int]]) -> str:
    """The sysctl that stops the kernel handing ``ranges`` out to client sockets."""
    current = _parse_ranges(_read(RESERVED_FILE) or "")
    return f"sysctl -w net.ipv4.ip_local_reserved_ports={_format_ranges(sorted(current + ranges))}"


class PortReservation:
    """Adds ranges to ip_local_reserved_ports (needs root) and puts the old value back on exit."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = ranges
        self.old: str | None = None

    def __enter__(self) -> "PortReservation":
        old = _read(RESERVED_FILE)
        if old is None:
            raise OSError(f"cannot read {RESERVED_FILE}")
        with open(RESERVED_FILE, "w") as file:  # PermissionError without root
            file.write(_format_ranges(sorted(_parse_ranges(old) + self.ranges)))
        self.old = old
        return self

    def __exit__(self, *exc_info) -> None:
        if self.old is not None:
            with open(RESERVED_FILE, "w") as file:
                file.write(self.old or "\n")
            self.old = None
