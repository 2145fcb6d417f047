"""The Python-hosted Switchboard for switchboard-bench: the Rust server started
from asyncio with one ``@server.on("offer")`` handler registered (so every event
crosses into Python's dispatcher as in a real app). Prints
``listening on ws://HOST:PORT/PATH`` and runs until SIGTERM/SIGINT.

    python python/bench/server.py [--listen 127.0.0.1:0]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import switchboard


async def main(listen: str) -> None:
    server = switchboard.Server(
        listen=listen,
        path="/ws",
        # The load clients send faster than the default per-connection limit, all
        # from one IP: the same settings as the bench's default server command.
        rate_limit_rps=0,
        max_conns_per_ip=0,
        conn_rate_per_ip=0,
        max_pending_per_ip=0,
        max_conns=0,
    )
    offers = 0

    @server.on("offer")
    def on_offer(event: switchboard.Event) -> None:
        nonlocal offers
        offers += 1

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"listening on {server.url}", flush=True)
        await stop.wait()
    print(f"offers seen by the handler: {offers}", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="127.0.0.1:0")
    asyncio.run(main(parser.parse_args().listen))
