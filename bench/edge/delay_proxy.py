#!/usr/bin/env python3
"""A delaying TCP proxy: listens on 127.0.0.1:PORT, forwards every
connection to TARGET, and adds a round trip of --rtt-ms (half on the way
to the server, half on the way back).

Each chunk read from one side is written to the other side rtt/2 after it
was read, in the order read (a per-direction queue with the time each chunk
is due), so a stream keeps its order and a burst of chunks is delayed once,
not once per chunk in sequence: that is what a long link does. Nothing on
the machine's network settings changes (no tc/netem).

usage: delay_proxy.py --listen PORT --target HOST:PORT --rtt-ms MS [--port-file FILE]
  --listen 0 picks a free port; --port-file writes the port bound (then the
  proxy is ready). Stops on SIGTERM/SIGINT.
"""
import argparse
import asyncio
import os
import signal
import sys
import time


async def pump(reader, writer, delay_s):
    """Copies reader -> writer, each chunk delayed by delay_s from its arrival."""
    queue = asyncio.Queue()

    async def read_side():
        try:
            while True:
                data = await reader.read(65536)
                await queue.put((time.monotonic() + delay_s, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((time.monotonic() + delay_s, b""))

    async def write_side():
        try:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    await asyncio.gather(read_side(), write_side())


async def handle(client_reader, client_writer, host, port, half_s):
    try:
        server_reader, server_writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    except (OSError, asyncio.TimeoutError):
        client_writer.close()
        return
    try:
        await asyncio.gather(pump(client_reader, server_writer, half_s), pump(server_reader, client_writer, half_s))
    except asyncio.CancelledError:
        pass  # the proxy is stopping: the connection just closes
    finally:
        for w in (client_writer, server_writer):
            try:
                w.close()
            except Exception:
                pass


async def main():
    ap = argparse.ArgumentParser(description="delaying TCP proxy (adds a round trip)")
    ap.add_argument("--listen", type=int, required=True, help="port to listen on (0: a free one)")
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--rtt-ms", type=float, required=True, help="round trip added (half each way)")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    a = ap.parse_args()
    if a.rtt_ms < 0:
        sys.exit("delay_proxy: --rtt-ms must be >= 0")
    host, _, port = a.target.rpartition(":")
    if not host or not port.isdigit():
        sys.exit("delay_proxy: --target must be HOST:PORT")
    half = a.rtt_ms / 2000.0
    # asyncio holds tasks weakly: a connection's task waiting on its queue
    # when the peer closed would be collected mid-flight (with a warning)
    alive = set()

    def on_connect(r, w):
        t = asyncio.ensure_future(handle(r, w, host, int(port), half))
        alive.add(t)
        t.add_done_callback(alive.discard)

    srv = await asyncio.start_server(on_connect, "127.0.0.1", a.listen)
    bound = srv.sockets[0].getsockname()[1]
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(f"{bound}\n")
        os.replace(a.port_file + ".tmp", a.port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # connections still open are cut here: closing them one by one would
    # only print the cancelled tasks' tracebacks
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
