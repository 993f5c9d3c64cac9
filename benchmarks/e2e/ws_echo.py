"""WebSocket echo messages/s: fastmock hp /ws against the `websockets` library's own echo server.

    python benchmarks/e2e/ws_echo.py [SECONDS]

Each server runs pinned to CPU 0; the client (websockets, one asyncio loop) on CPU 1 sends 64-byte messages and
waits for each echo, on 1 connection and on 100. The client is Python, so it is the limit at 100 connections.
"""

import asyncio
import os
import subprocess
import sys
import time

import websockets

PORT_FASTMOCK = 18601
PORT_PEER = 18602
PEER = f"""
import asyncio, websockets
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    async with websockets.serve(echo, "127.0.0.1", {PORT_PEER}, compression=None, max_size=None):
        await asyncio.Future()
asyncio.run(main())
"""


async def _drive(url: str, connections: int, seconds: float) -> float:
    message = b"x" * 64
    deadline = time.monotonic() + seconds
    counts = [0] * connections

    async def one(i):
        async with websockets.connect(url, compression=None) as ws:
            while time.monotonic() < deadline:
                await ws.send(message)
                await ws.recv()
                counts[i] += 1

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(connections)))
    return sum(counts) / (time.monotonic() - started)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    servers = [
        subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "fastmock", "hp", "--port", str(PORT_FASTMOCK),
                          "--mem-interval", "0", "--request-log-size", "0"], stderr=subprocess.DEVNULL),
        subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", PEER], stderr=subprocess.DEVNULL),
    ]
    os.sched_setaffinity(0, {1})
    try:
        time.sleep(1.5)
        for connections in (1, 100):
            for name, port in (("fastmock", PORT_FASTMOCK), ("websockets", PORT_PEER)):
                rate = asyncio.run(_drive(f"ws://127.0.0.1:{port}/ws", connections, seconds))
                print(f"{connections:>3} connection(s) {name:>10}: {rate:,.0f} messages/s", flush=True)
    finally:
        for server in servers:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
