"""A fixed scenario whose report is compared with tests/golden/*.txt."""

import asyncio

import taskleak

taskleak.install()


async def waiter(event):
    await event.wait()


async def sleeper():
    await asyncio.sleep(60)


async def main():
    event = asyncio.Event()
    waiters = [asyncio.create_task(waiter(event), name=f"waiter-{i}") for i in range(3)]
    sleepers = [asyncio.create_task(sleeper(), name=f"sleeper-{i}") for i in range(2)]
    await asyncio.sleep(0)
    print(taskleak.snapshot().pending().filter(lambda t: t.coro != "main").format(), end="")
    for t in waiters + sleepers:
        t.cancel()
    await asyncio.gather(*waiters, *sleepers, return_exceptions=True)


asyncio.run(main())
