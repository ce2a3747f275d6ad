"""Tiny ASGI apps for exercising the runtime without any service code."""

from __future__ import annotations

import asyncio
import json
import os
from urllib.parse import parse_qs

from cluster import current_worker

received: list[object] = []
if os.environ.get("TEST_IMPORTED_BY"):  # which processes imported this module: a line per pid
    with open(os.environ["TEST_IMPORTED_BY"], "a") as imported_by:
        imported_by.write(f"{os.getpid()}\n")


def _params(scope) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}


async def _reply(send, body: dict, status: int = 200) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def app(scope, receive, send):
    """GET / → pid; /sleep?s= → slow request; /hold?until=PATH&mark=FILE → a slow request that says it
    arrived (a line appended to FILE) and waits, without blocking the loop, until PATH exists;
    /block?until=PATH → the event loop blocked (like CPU work) until PATH exists; /crash → the worker
    dies; /orphan?s=|until=PATH → a grandchild left behind, living s seconds or until PATH exists;
    /messages → what the master sent; /say?text= → the worker prints a line to its stdout; /env?name= → that
    environment variable of the worker."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await asyncio.sleep(float(os.environ.get("TEST_STARTUP_DELAY", "0")))  # a slow app to start
                worker = current_worker()
                if worker:
                    worker.on_message(received.append)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, params = scope["path"], _params(scope)
    worker = current_worker()
    if path == "/sleep":
        await asyncio.sleep(float(params.get("s", "1")))
    elif path == "/hold":
        with open(params["mark"], "a") as mark:  # one short append per request: whole lines, whatever the worker
            mark.write(f"{os.getpid()}\n")
        for _ in range(int(float(params.get("max", "60")) / 0.02)):  # bounded
            if os.path.exists(params["until"]):
                break
            await asyncio.sleep(0.02)
    elif path == "/block":
        import time

        deadline = time.monotonic() + float(params.get("max", "60"))
        while not os.path.exists(params["until"]) and time.monotonic() < deadline:
            time.sleep(0.01)  # blocking on purpose: the loop can read nothing, not even the channel
    elif path == "/crash":
        os._exit(int(params.get("code", "1")))
    elif path == "/messages":
        await _reply(send, {"pid": os.getpid(), "messages": received})
        return
    elif path == "/orphan":
        # Leave a grandchild behind that outlives its parent: someone must reap it.
        child = os.fork()
        if child == 0:
            if os.fork() == 0:
                import time

                if "until" in params:  # until the test says so (bounded): it outlives its parent for sure
                    deadline = time.monotonic() + float(params.get("max", "60"))
                    while not os.path.exists(params["until"]) and time.monotonic() < deadline:
                        time.sleep(0.02)
                else:
                    time.sleep(float(params.get("s", "0.3")))
            os._exit(0)
        os.waitpid(child, 0)
    elif path == "/ask":
        worker.send({"from": os.getpid()})
    elif path == "/say":
        print(f"said {params['text']} (pid {os.getpid()})", flush=True)
    elif path == "/env":
        await _reply(send, {"pid": os.getpid(), "value": os.environ.get(params["name"])})
        return
    await _reply(send, {"pid": os.getpid(), "worker": worker.id if worker else 0, "slot": worker.slot if worker else 0})
