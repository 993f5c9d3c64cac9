"""The load generator's TLS client against a hostile server: a proxy in front of an ``hp --tls`` mangles
what the server says (bytes flipped, cut short, garbage inserted, a stream of noise, a close at any point),
a different way for each connection (seeded), while ``fastmock load --new-connections`` runs through it.
The run must end with every request answered or counted as an error, and the client alive.

    python benchmarks/fuzz_tls_client.py --upstream PORT --cases N [--seed S] [--cacert CA] [-- COMMAND...]

COMMAND runs fastmock (default: this Python's ``-m fastmock``); fuzz_asan.sh runs it on the AddressSanitizer
build and greps its stderr.
"""

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile

MODES = ("clean", "flip", "cut", "insert", "noise", "close")


def mangle(rng: random.Random, mode: str, data: bytes, sent: int) -> bytes | None:
    """What the client gets instead of ``data`` (the server's next bytes, ``sent`` already passed); None
    closes the connection."""
    if mode == "flip":
        data = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if mode == "cut" and sent + len(data) > rng.randrange(1, 3000):
        return None
    if mode == "insert":
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.randbytes(rng.randrange(1, 40)) + data[at:]
    if mode == "noise":
        return rng.randbytes(len(data))
    if mode == "close" and rng.random() < 0.5:
        return None
    return data


async def proxy(reader, writer, upstream_port: int, rng: random.Random, counts: dict) -> None:
    mode = rng.choice(MODES)
    counts[mode] = counts.get(mode, 0) + 1
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    except OSError:
        writer.close()
        return

    async def client_to_server():
        while data := await reader.read(65536):
            up_writer.write(data)
        up_writer.close()

    async def server_to_client():
        sent = 0
        while data := await up_reader.read(65536):
            out = mangle(rng, mode, data, sent)
            if out is None:
                break
            writer.write(out)
            sent += len(out)
        writer.close()

    try:
        await asyncio.gather(client_to_server(), server_to_client())
    except (OSError, asyncio.IncompleteReadError):
        writer.close()
        up_writer.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", type=int, required=True, help="the hp --tls port")
    parser.add_argument("--cases", type=int, default=20000, help="requests, each on a new connection")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cacert", default=None, help="verify with this CA (else --insecure)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- and the command that runs fastmock")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    command = command or [sys.executable, "-m", "fastmock"]
    rng, counts = random.Random(args.seed), {}
    server = await asyncio.start_server(lambda r, w: proxy(r, w, args.upstream, rng, counts), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with tempfile.NamedTemporaryFile(suffix=".json") as summary:
        load = await asyncio.create_subprocess_exec(
            *command, "load", f"https://localhost:{port}/health", "--new-connections", "-n", str(args.cases),
            "-c", "16", "--timeout", "2s", "--connect-timeout", "2s",
            *(["--cacert", args.cacert] if args.cacert else ["-k"]), "--summary-json", summary.name,
            stdout=subprocess.DEVNULL)
        status = await load.wait()
        server.close()
        result = json.load(open(summary.name)) if status in (0, 1) else {}
    answered = sum(result.get("statuses", {}).values())
    failed = sum(result.get("errors", {}).values())
    print(f"load exit {status}: {answered} answered, {failed} failed ({result.get('errors')}); TLS failures "
          f"{result.get('tls', {}).get('failures')}; connections by mode {counts}")
    return 0 if status in (0, 1) and answered + failed == args.cases else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
