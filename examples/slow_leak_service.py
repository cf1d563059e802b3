"""A long-running service with a slow leak, and the monitor that catches it.

The service answers "requests" under jittery load; every request runs a
handler task that finishes. One request in 25 also subscribes to updates,
and the subscription's watcher task waits on an event nobody ever sets: a
slow leak of about one task every half second, hidden in the load.

    python examples/slow_leak_service.py            # alert names the leaking line
    python examples/slow_leak_service.py --no-leak  # same load, no leak: no alert

Time runs fast here (a sample every 50 ms, a window of 10 samples) so the
demo ends in seconds; in production the same monitor runs with
``taskleak.Monitor()`` (a sample every 10 s, a window of 30) or
``TASKLEAK_MONITOR=1``.
"""

import argparse
import asyncio
import random
import sys

import taskleak

SUBSCRIPTIONS = {}


async def watch_updates(sub_id, event):
    await event.wait()  # nobody ever sets it


async def handle(request_id, leak):
    await asyncio.sleep(random.uniform(0.001, 0.02))
    if leak and request_id % 25 == 0:
        SUBSCRIPTIONS[request_id] = asyncio.create_task(watch_updates(request_id, asyncio.Event()))  # the leak


async def serve(seconds, leak):
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    request_id = 0
    handlers = set()
    while loop.time() < end:
        for _ in range(random.randint(0, 6)):  # jittery load
            request_id += 1
            t = asyncio.create_task(handle(request_id, leak))
            handlers.add(t)
            t.add_done_callback(handlers.discard)
        await asyncio.sleep(0.01)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--no-leak", action="store_true", help="the same load without the leak")
    p.add_argument("--seconds", type=float, default=30.0, help="stop after this long at most")
    args = p.parse_args(argv)
    random.seed(1)
    found = []
    mon = taskleak.Monitor(
        interval=0.05, window=10, on_alert=found.append, log_alerts=False, detector_options=dict(trend_blocks=4)
    )

    async def run():
        loop = asyncio.get_running_loop()
        service = asyncio.create_task(serve(args.seconds, not args.no_leak))
        # Stop at the first alert (or when the service's time is up).
        while not service.done() and not found:
            await asyncio.sleep(0.1)
        service.cancel()
        await asyncio.gather(service, return_exceptions=True)
        for t in SUBSCRIPTIONS.values():
            t.cancel()
        await asyncio.sleep(0)
        return loop

    with mon:
        asyncio.run(run())
    s = mon.samples()
    print(f"{len(s)} samples; pending tasks went from {s[0].pending} to {max(x.pending for x in s)}")
    if not found:
        print("no leak suspected")
        return 0
    print(found[0].text)
    return 1


if __name__ == "__main__":
    sys.exit(main())
