"""Signed, expiring tokens (JWT, HS256) and password hashes, pure.

The dashboard's login answers a JWT (the seed's example token is one: ``eyJhbGciOiJIUzI1NiIs…``).
HS256 is HMAC-SHA256 over ``header.payload`` (RFC 7519 / 7515); it is written here with the
standard library because no JWT package is a dependency. Claims: ``sub`` (user), ``role``,
``iat``, ``exp`` and ``jti`` (the id logout revokes).

Password hashes are ``pbkdf2_sha256$<iterations>$<salt, base64>$<hash, base64>``
(:func:`hash_password` makes one for the users Secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

PBKDF2_ITERATIONS = 200_000


class TokenError(Exception):
    """A token that is malformed, wrongly signed or expired (the message says which)."""


@dataclass(frozen=True)
class Claims:
    username: str
    role: str
    issued_at: int
    expires_at: int
    token_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, username: str, role: str, *, now: int, lifetime: int) -> tuple[str, Claims]:
    claims = Claims(username, role, now, now + lifetime, secrets.token_hex(16))
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = {"sub": username, "role": role, "iat": now, "exp": claims.expires_at, "jti": claims.token_id}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    signature = _b64(hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest())
    return f"{header}.{body}.{signature}", claims


def verify(key: bytes, token: str, *, now: int) -> Claims:
    """The token's claims; TokenError when it is not one of ours or has expired."""
    parts = token.split(".")
    if len(parts) != 3 or not token.isascii():  # compare_digest takes ASCII text only
        raise TokenError("Malformed token")
    header, body, signature = parts
    expected = _b64(hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        raise TokenError("Invalid token")
    try:
        head: Any = json.loads(_unb64(header))
        payload: Any = json.loads(_unb64(body))
        if head.get("alg") != "HS256":
            raise TokenError("Invalid token")
        claims = Claims(
            str(payload["sub"]),
            str(payload.get("role") or ""),
            int(payload["iat"]),
            int(payload["exp"]),
            str(payload["jti"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        raise TokenError("Malformed token") from None
    if claims.expires_at <= now:
        raise TokenError("Token expired")
    return claims


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, encoded: str) -> bool:
    try:
        scheme, iterations, salt, digest = encoded.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        actual = hashlib.pbkdf2_hmac("sha256", password.encode(), _unb64(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(actual, _unb64(digest))
