"""An aiohttp service for examples/aiohttp_leak/run.sh: each request runs a
short background task; with LEAK=1, one request in 40 also starts a watcher
task on a queue nobody feeds, kept in a dict (a slow leak)."""

import asyncio
import os
import random
import sys

from aiohttp import web

LEAK = os.environ.get("LEAK") == "1"
subscriptions = {}


async def poll_updates(sub_id, queue):
    while True:
        item = await queue.get()  # nobody ever puts anything: leaks when LEAK
        print(item)


async def audit(request_id):
    await asyncio.sleep(random.uniform(0, 0.05))


async def handle(request):
    rid = int(request.query.get("id", "0"))
    t = asyncio.create_task(audit(rid))
    request.app["bg"].add(t)
    t.add_done_callback(request.app["bg"].discard)
    await asyncio.sleep(random.uniform(0, 0.02))
    if LEAK and rid % 40 == 0:
        subscriptions[rid] = asyncio.create_task(poll_updates(rid, asyncio.Queue()))
    elif rid % 40 == 0:
        q = asyncio.Queue()
        t2 = asyncio.create_task(poll_updates(rid, q))
        await asyncio.sleep(0.01)
        t2.cancel()
    return web.Response(text="ok")


async def heartbeat():
    while True:
        await asyncio.sleep(1)


async def on_startup(app):
    app["bg"] = set()
    app["hb"] = asyncio.create_task(heartbeat(), name="heartbeat")


app = web.Application()
app.on_startup.append(on_startup)
app.router.add_get("/", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
