"""A small TCP load balancer: one port in front of several `tonrail serve` containers.

The stand-in for the ALB in the local stack (deploy/docker/stack.sh, compose.yaml): each new
connection goes to the next backend in turn; a backend that refuses the connection is skipped
for a few seconds, so stopping one `serve` (a rolling deploy) costs no request. Standard
library only: it runs in the tonrail image with `python /balancer.py`.

    python balancer.py --listen 0.0.0.0:8100 --backend 127.0.0.1:8101 --backend 127.0.0.1:8102
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import time

SKIP_SECONDS = 5.0  # a refusing backend is left out this long


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)  # noqa: S104 (a balancer listens for everyone)


class Balancer:
    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.turn = itertools.cycle(range(len(backends)))
        self.down_until = [0.0] * len(backends)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        for _ in range(len(self.backends) * 2):
            i = next(self.turn)
            if self.down_until[i] > time.monotonic():
                continue
            try:
                return await asyncio.wait_for(asyncio.open_connection(*self.backends[i]), 5)
            except (OSError, TimeoutError):
                self.down_until[i] = time.monotonic() + SKIP_SECONDS
        raise ConnectionError("no backend accepts connections")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self.connect()
        except ConnectionError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
        with contextlib.suppress(Exception):
            writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="0.0.0.0:8100")
    parser.add_argument("--backend", action="append", required=True, help="host:port, repeat")
    args = parser.parse_args()
    balancer = Balancer([_host_port(b) for b in args.backend])
    host, port = _host_port(args.listen)
    server = await asyncio.start_server(balancer.handle, host, port, reuse_address=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    print(f"balancing {args.listen} over {', '.join(args.backend)}", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
