#!/usr/bin/env python3
"""Parks N requests on a loopback HTTP server at once, for scripts/bench.sh.

Opens N connections to 127.0.0.1:PORT, sends one `GET PATH` on each (Connection: close), and
holds them until each is answered or DEADLINE seconds have passed since the start, whichever
comes first. Prints `sent N` (flushed) once every request has been written, so the caller knows
when to look at the server (`sent K` with K < N when some could not be sent), and on exit (every answer in, the deadline, or SIGTERM/SIGINT) one
line:

    held n=5000 sent=5000 answered=0 ok=0 failed=0

`answered` counts responses (any status), `ok` the 2xx ones, `failed` connections that could
not be opened or written, or broke before an answer. A caller measuring parked requests sends
SIGTERM once it has sampled the server: `answered` and `failed` are then the requests that were
not parked at that moment.

    hold-requests.py PORT N PATH [DEADLINE]       (DEADLINE: seconds, 60 by default)

Loopback only, bounded by the deadline: it stops by itself.
"""

import asyncio
import resource
import signal
import sys

# Connections being opened at once: enough to fill a listen backlog quickly, few enough that
# SYNs are not dropped (a dropped SYN costs a 1 s retransmission).
CONNECTING_AT_ONCE = 256


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: hold-requests.py PORT N PATH [DEADLINE]")
    port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    deadline = float(sys.argv[4]) if len(sys.argv) == 5 else 60.0
    if not (0 < port < 65536 and 0 < n and path.startswith("/") and 0 < deadline <= 3600):
        sys.exit("hold-requests.py: bad arguments (PORT N /PATH [DEADLINE <= 3600])")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(hold(port, n, path, deadline))


async def hold(port, n, path, deadline):
    counts = {"sent": 0, "unsent": 0, "answered": 0, "ok": 0, "failed": 0}
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    connecting = asyncio.Semaphore(CONNECTING_AT_ONCE)
    all_sent = asyncio.Event()

    def settled(outcome):
        counts[outcome] += 1
        if counts["sent"] + counts["unsent"] == n:
            all_sent.set()

    async def one():
        writer = None
        try:
            async with connecting:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.write(request)
                    await writer.drain()
                except OSError:
                    settled("unsent")
                    raise
            settled("sent")
            status = await reader.readline()
            if not status:
                raise ConnectionError("closed before an answer")
            counts["answered"] += 1
            parts = status.split()
            if len(parts) >= 2 and parts[1].startswith(b"2"):
                counts["ok"] += 1
            await reader.read()  # to the close: the whole answer
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            counts["failed"] += 1
        finally:
            if writer is not None:
                writer.close()

    async def announce():
        await all_sent.wait()
        print(f"sent {counts['sent']}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.ensure_future(one()) for _ in range(n)]
    announcer = asyncio.ensure_future(announce())
    everything = asyncio.ensure_future(asyncio.gather(*tasks))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([everything, stopped], timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
    for task in (everything, announcer, stopped):
        task.cancel()  # cancelling the gathering cancels the requests still held
    await asyncio.gather(everything, announcer, stopped, return_exceptions=True)
    print(
        f"held n={n} sent={counts['sent']} answered={counts['answered']} "
        f"ok={counts['ok']} failed={counts['failed']}",
        flush=True,
    )


if __name__ == "__main__":
    main()
