"""Sticky sessions: a signed cookie naming the backend that served a client first.

The cookie carries an opaque backend id (``Backend.id``), never an address,
signed so a client cannot steer itself to a backend of its choosing. A cookie
whose backend is gone or may not be picked (unhealthy, unless its group is in
panic) is ignored: the proxy picks anew and sets a
fresh cookie. This runs on every request, so the common case — a valid cookie
seen before — is a header split and two dict look-ups, no HMAC.
"""

from __future__ import annotations

import re

from kit.signing import Signer
from lb.pool import Backend, Pool

COOKIE_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 6265 token
MAX_REMEMBERED = 4096  # valid tokens remembered; only ones we signed ever get in, so this is a backstop


class StickyCookie:
    def __init__(
        self, secret: str | bytes, *, name: str = "SCALECUBE_LB", max_age: int | None = None, secure: bool = False
    ) -> None:
        if not COOKIE_NAME.match(name):
            raise ValueError(f"sticky cookie name {name!r} is not a valid cookie name")
        if max_age is not None and max_age <= 0:
            raise ValueError(f"sticky cookie max_age must be positive (or None for a session cookie), got {max_age}")
        self.name = name
        self.max_age = max_age
        self._signer = Signer(secret, salt="sticky")
        self.prefix = name.encode() + b"="
        attributes = "; Path=/; HttpOnly; SameSite=Lax"
        attributes += f"; Max-Age={max_age}" if max_age else ""
        attributes += "; Secure" if secure else ""
        self._attributes = attributes
        self._verified: dict[bytes, str] = {}  # token -> backend id, for tokens whose signature checked out
        self._headers: dict[str, bytes] = {}  # backend id -> Set-Cookie value (signing is deterministic)

    def backend_from(self, cookie_header: bytes | None, pool: Pool) -> Backend | None:
        """The backend our cookie in this raw ``Cookie`` header names, if it is valid and the pool may pick it."""
        if not cookie_header or self.prefix not in cookie_header:
            return None
        for part in cookie_header.split(b";"):
            part = part.strip()
            if not part.startswith(self.prefix):
                continue
            backend_id = self._backend_id(part[len(self.prefix) :].strip(b'"'))
            if backend_id is not None:
                backend = pool.by_id(backend_id)
                return backend if backend is not None and backend.routable else None
        return None

    def strip(self, cookie_header: bytes) -> bytes:
        """The raw ``Cookie`` header without our cookie (empty if it was the only one): backends never
        see it, as with HAProxy's ``cookie ... indirect``."""
        kept = [part for part in cookie_header.split(b";") if not part.strip().startswith(self.prefix)]
        return b";".join(kept).strip()

    def _backend_id(self, token: bytes) -> str | None:
        backend_id = self._verified.get(token)
        if backend_id is None:
            try:
                backend_id = self._signer.unsign(token.decode("ascii"))
            except UnicodeDecodeError:
                return None
            if backend_id is None:
                return None  # forged or edited: never remembered, so junk cannot fill the cache
            if len(self._verified) >= MAX_REMEMBERED:
                self._verified.clear()
            self._verified[token] = backend_id
        return backend_id

    def set_cookie_header(self, backend: Backend) -> bytes:
        """The ``Set-Cookie`` header value that pins a client to ``backend``."""
        header = self._headers.get(backend.id)
        if header is None:
            if len(self._headers) >= MAX_REMEMBERED:
                self._headers.clear()
            header = f"{self.name}={self._signer.sign(backend.id)}{self._attributes}".encode()
            self._headers[backend.id] = header
        return header
