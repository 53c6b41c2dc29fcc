"""A TCP relay that delays what a host sends to one server, for tests and
benchmarks that need a slow link (:meth:`tests.support.netns.Network.degrade`).

The kernels CI runs on are built without ``sch_netem`` (``tc qdisc ... netem``
answers "Specified qdisc kind is unknown"), so latency is added here instead:
the host's connections to the server are redirected (iptables ``REDIRECT``)
to this relay, which runs inside the host's namespace and forwards each chunk
``--delay`` seconds after it arrived, in order, as ``netem delay`` on the
host's egress would. Its own upstream sockets carry ``--mark`` so the redirect
rule lets them through. Loss is the kernel's (iptables ``statistic``), not ours.

    python -m tests.support.latency_proxy --port 16379 --upstream 10.77.5.3:6379 --delay 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import socket

SO_MARK = 36  # socket.SO_MARK exists only from Python 3.12


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    finally:
        queue.put_nowait((0.0, b""))
        try:
            await sender
        finally:
            writer.close()


async def _relay(upstream: tuple[str, int], delay: float, mark: int, client_reader, client_writer):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
    sock.setblocking(False)
    try:
        await asyncio.sleep(delay)  # the SYN is late too
        await asyncio.get_running_loop().sock_connect(sock, upstream)
        server_reader, server_writer = await asyncio.open_connection(sock=sock)
    except OSError:
        sock.close()
        client_writer.close()
        return
    await asyncio.gather(
        _pipe(client_reader, server_writer, delay),
        _pipe(server_reader, client_writer, 0.0),
        return_exceptions=True,
    )


async def serve(port: int, upstream: tuple[str, int], delay: float, mark: int) -> None:
    server = await asyncio.start_server(
        lambda r, w: _relay(upstream, delay, mark, r, w), "127.0.0.1", port
    )
    print(f"latency proxy ready on {port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="host:port")
    parser.add_argument("--delay", type=float, required=True, help="seconds")
    parser.add_argument("--mark", type=lambda v: int(v, 0), default=0x4A)
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    asyncio.run(serve(args.port, (host, int(port)), args.delay, args.mark))


if __name__ == "__main__":
    main()
