"""A backend for balancer tests, run with ``scalecube serve tests.lb.backend_app:app``.

GET  /echo            → the request as the backend saw it (method, headers, body size, pid);
                        repeated header fields are combined into one
POST /echo            → same, after reading the whole (possibly chunked) body
GET  /stream?chunks=N → a chunked response of N parts
GET  /slow?s=S        → appends "HOST PID" to $RECEIPTS_FILE (if set), answers after S seconds
GET  /hold            → the same, then answers once the file named by $HOLD_FILE is gone (at most 60 s):
                        a heavy request that ends when the test says, not after a guessed time
GET  /readyz          → 200, or 503 while the file named by $READY_FLAG_FILE exists
*    /die-once        → appends "HOST PID" to $RECEIPTS_FILE, then the worker dies without answering
*    /die-mid-body    → the same, but dies after sending the head and 100 of 1000 body bytes
GET  /stall-mid-body?s=S → the head and 100 of 1000 body bytes, then S seconds of silence (less if the client leaves)
"""

from __future__ import annotations

import asyncio
import json
import os
from urllib.parse import parse_qs


def _params(scope) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}


async def _json(send, body: dict, status: int = 200) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"x-served-by", f"backend/{os.getpid()}".encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path, params = scope["path"], _params(scope)
    if path == "/readyz":
        flag = os.environ.get("READY_FLAG_FILE")
        await _json(send, {"ready": not (flag and os.path.exists(flag))}, 503 if flag and os.path.exists(flag) else 200)
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    if path == "/stall-mid-body":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b"x" * 100, "more_body": True})
        try:  # alive, connected, silent: until S passes or the client (the balancer) hangs up
            await asyncio.wait_for(_disconnect(receive), float(params.get("s", "30")))
            return  # cut: no one to send the rest to, and a stopping backend need not wait S for it
        except TimeoutError:
            await send({"type": "http.response.body", "body": b"x" * 900})
        return
    if path in ("/die-once", "/die-mid-body"):
        with open(os.environ["RECEIPTS_FILE"], "a") as receipts:
            receipts.write(f"{(scope.get('server') or ('?',))[0]} {os.getpid()}\n")  # which replica, which worker
        if path == "/die-mid-body":
            headers = [(b"content-length", b"1000"), (b"x-served-by", f"backend/{os.getpid()}".encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"x" * 100, "more_body": True})
            await asyncio.sleep(0.05)  # the head and the first 100 bytes leave before the worker dies
        os._exit(1)
    if path in ("/slow", "/hold"):
        receipts = os.environ.get("RECEIPTS_FILE")
        if receipts:
            with open(receipts, "a") as file:
                file.write(f"{(scope.get('server') or ('?',))[0]} {os.getpid()}\n")
        if path == "/slow":
            await asyncio.sleep(float(params.get("s", "1")))
        else:
            hold = os.environ["HOLD_FILE"]
            for _ in range(600):  # bounded: 60 s
                if not os.path.exists(hold):
                    break
                await asyncio.sleep(0.1)
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(int(params.get("chunks", "3"))):
            await send({"type": "http.response.body", "body": f"part {i}\n".encode(), "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    headers: dict[str, str] = {}
    for key, value in scope["headers"]:
        # Repeated fields combine as RFC 9110 §5.3 says (cookies with "; "): a proxy may append its own
        # X-Forwarded-For line rather than extend the client's, and the two mean the same.
        name, text = key.decode("latin-1"), value.decode("latin-1")
        headers[name] = f"{headers[name]}{'; ' if name == 'cookie' else ', '}{text}" if name in headers else text
    await _json(
        send, {"method": scope["method"], "path": path, "headers": headers, "body_bytes": size, "pid": os.getpid()}
    )
