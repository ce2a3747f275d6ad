"""A backend for balancer tests, run with ``scalecube serve tests.lb.backend_app:app``.

GET  /echo            → the request as the backend saw it (method, headers, body size, pid)
POST /echo            → same, after reading the whole (possibly chunked) body
GET  /stream?chunks=N → a chunked response of N parts
GET  /slow?s=S        → answers after S seconds
GET  /readyz          → 200, or 503 while the file named by $READY_FLAG_FILE exists
POST /die-once        → appends to $RECEIPTS_FILE, then the worker dies without answering
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
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"x-served-by", f"backend/{os.getpid()}".encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": data})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path, params = scope["path"], _params(scope)
    if path == "/readyz":
        flag = os.environ.get("READY_FLAG_FILE")
        await _json(send, {"ready": not (flag and os.path.exists(flag))},
                    503 if flag and os.path.exists(flag) else 200)  # fmt: skip
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    if path == "/die-once":
        with open(os.environ["RECEIPTS_FILE"], "a") as receipts:
            receipts.write(f"{os.getpid()}\n")
        os._exit(1)
    if path == "/slow":
        await asyncio.sleep(float(params.get("s", "1")))
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(int(params.get("chunks", "3"))):
            await send({"type": "http.response.body", "body": f"part {i}\n".encode(), "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    await _json(send, {"method": scope["method"], "path": path, "headers": headers, "body_bytes": size,
                       "pid": os.getpid()})  # fmt: skip
