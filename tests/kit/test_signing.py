"""Signed tokens: round trip, and None for anything we did not sign."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest

from kit.signing import MAX_TOKEN_LENGTH, Signer

SECRET = "a-test-secret-of-reasonable-length"


@pytest.fixture
def signer() -> Signer:
    return Signer(SECRET, salt="session")


def test_round_trip(signer: Signer) -> None:
    token = signer.sign("user-42")

    assert token.startswith("user-42.")
    assert signer.unsign(token) == "user-42"


def test_signature_is_unpadded_base64url_sha256(signer: Signer) -> None:
    signature = signer.sign("v").rpartition(".")[2]

    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", signature)  # 32 bytes, no '=' padding
    assert len(base64.urlsafe_b64decode(signature + "=")) == 32


def test_signature_is_an_hmac_of_the_value_keyed_by_secret_and_salt(signer: Signer) -> None:
    # Independent recomputation, so the test fails if the scheme drifts (other components verify these tokens).
    key = hmac.new(SECRET.encode(), b"scalecube.signer:session", hashlib.sha256).digest()
    mac = hmac.new(key, b"user-42", hashlib.sha256).digest()

    assert signer.sign("user-42") == "user-42." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def test_values_may_contain_dots_and_unicode(signer: Signer) -> None:
    for value in ["a.b.c", "", ".", "héllo wörld", "emoji 🚀"]:
        assert signer.unsign(signer.sign(value)) == value


def test_str_and_bytes_secrets_are_the_same_key() -> None:
    token = Signer(SECRET, salt="session").sign("x")

    assert Signer(SECRET.encode(), salt="session").unsign(token) == "x"


def test_tampered_value_is_rejected(signer: Signer) -> None:
    token = signer.sign("user-42")

    assert signer.unsign("user-43" + token[len("user-42") :]) is None


def test_tampered_signature_is_rejected(signer: Signer) -> None:
    token = signer.sign("user-42")
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")

    assert signer.unsign(flipped) is None
    assert signer.unsign(token + "=") is None
    assert signer.unsign(token[:-1]) is None


def test_salt_separates_uses() -> None:
    session_token = Signer(SECRET, salt="session").sign("worker-3")

    assert Signer(SECRET, salt="sticky").unsign(session_token) is None


def test_other_secret_is_rejected(signer: Signer) -> None:
    assert Signer("another-secret-entirely", salt="session").unsign(signer.sign("x")) is None


@pytest.mark.parametrize(
    "token",
    ["", "no-separator", ".", "value.", ".signature", "é.é", "\ud800.abc", "abc.\udfff", "a.b\x00"],
)
def test_malformed_tokens_are_none(signer: Signer, token: str) -> None:
    assert signer.unsign(token) is None


@pytest.mark.parametrize("token", [None, 42, b"bytes.token", ["a", "b"]])
def test_non_string_tokens_are_none_not_errors(signer: Signer, token: object) -> None:
    assert signer.unsign(token) is None  # type: ignore[arg-type]


def test_overlong_token_is_refused_even_if_validly_signed(signer: Signer) -> None:
    fits = signer.sign("x" * (MAX_TOKEN_LENGTH - 44))
    too_long = signer.sign("x" * MAX_TOKEN_LENGTH)

    assert signer.unsign(fits) == "x" * (MAX_TOKEN_LENGTH - 44)
    assert signer.unsign(too_long) is None


def test_empty_secret_or_salt_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="secret"):
        Signer("", salt="session")
    with pytest.raises(ValueError, match="salt"):
        Signer(SECRET, salt="")
