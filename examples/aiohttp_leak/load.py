"""Jittery load (with occasional bursts) for examples/aiohttp_leak/server.py."""

import asyncio
import random
import sys
import time

import aiohttp


async def main(port, seconds):
    end = time.monotonic() + seconds
    rid = 0
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < end:
            n = random.randint(1, 12)  # jittery load, with bursts
            if random.random() < 0.02:
                n = 60

            async def one(i):
                async with s.get(f"http://127.0.0.1:{port}/?id={i}") as r:
                    await r.read()

            rid_start = rid
            rid += n
            await asyncio.gather(*(one(rid_start + k + 1) for k in range(n)))
            await asyncio.sleep(random.uniform(0.01, 0.05))
    print("requests", rid)


asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
