"""HMAC-signed opaque tokens: ``value.signature``.

Session ids and sticky-routing cookies travel through clients; the signature
lets any worker (or balancer) sharing the secret reject forged or edited ones
without a lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SEPARATOR = "."
MAX_TOKEN_LENGTH = 4096  # a cookie's practical limit; longer input is refused unread


class Signer:
    """Signs and verifies values for one purpose, named by ``salt``.

    Each salt gets its own key derived from the secret, so a token signed for
    "sticky" never verifies as a "session" token.
    """

    def __init__(self, secret: str | bytes, *, salt: str) -> None:
        secret_bytes = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not secret_bytes:
            raise ValueError("Signer needs a non-empty secret")
        if not salt:
            raise ValueError("Signer needs a salt naming what the tokens are for")
        self.salt = salt
        self._key = hmac.digest(secret_bytes, b"scalecube.signer:" + salt.encode(), hashlib.sha256)

    def sign(self, value: str) -> str:
        return f"{value}{SEPARATOR}{self._signature(value.encode())}"

    def unsign(self, token: str) -> str | None:
        """The signed value, or None if the token is malformed, too long or tampered with."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            return None
        value, separator, signature = token.rpartition(SEPARATOR)
        if not separator:
            return None
        try:
            expected = self._signature(value.encode()).encode()
            given = signature.encode()
        except UnicodeEncodeError:  # lone surrogates: not something we signed
            return None
        return value if hmac.compare_digest(expected, given) else None

    def _signature(self, data: bytes) -> str:
        mac = hmac.digest(self._key, data, hashlib.sha256)
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")
