"""The dashboard's sessions, CSRF tokens and response headers.

A browser holds one cookie, ``engine_session`` (HttpOnly, SameSite=Strict, Path=/ui, Secure over
HTTPS): ``<nonce>.<mac>``, where ``mac`` is an HMAC-SHA256 of the nonce under a key derived from
the API's bearer token. So the token itself never sits in the browser, a session is valid exactly
as long as the token is (changing the token logs everybody out), and the server keeps no session
table. Without a token (an open API) every browser gets a session at its first visit, keyed by a
random per-process secret: there is nothing to log in to, but the session still anchors CSRF.

Every form that changes something carries ``csrf``, an HMAC of the session's nonce under the same
key (a synchronizer token without server state); a POST without the right one is refused, and so is
one whose ``Origin`` is another site. A request authenticated by an ``Authorization: Bearer``
header (a script, the benchmark) needs no CSRF token: no browser sends that header by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from aiohttp import web

__all__ = ["COOKIE", "CSP", "Sessions", "security_headers"]

COOKIE: Final = "engine_session"
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SESSION_MAX_AGE: Final = 12 * 3600  # one shift; the cookie is re-issued at each login


class Sessions:
    """Issues and checks session cookies and CSRF tokens (see the module doc)."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        secret = token.encode() if token else secrets.token_bytes(32)
        self._key = hashlib.sha256(b"engine-dashboard-v1\x00" + secret).digest()

    @property
    def login_required(self) -> bool:
        return self.token is not None

    def _mac(self, purpose: str, nonce: str) -> str:
        return hmac.new(self._key, f"{purpose}:{nonce}".encode(), hashlib.sha256).hexdigest()

    def issue(self) -> tuple[str, str]:
        """A new session: (cookie value, nonce)."""
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._mac('session', nonce)}", nonce

    def check(self, cookie: str | None) -> str | None:
        """The nonce of a valid session cookie, else None."""
        if not cookie or cookie.count(".") != 1:
            return None
        nonce, mac = cookie.split(".")
        if not nonce or not hmac.compare_digest(mac.encode(), self._mac("session", nonce).encode()):
            return None
        return nonce

    def check_token(self, given: str) -> bool:
        """The login form's or an ``Authorization`` header's token, in constant time."""
        if self.token is None:
            return True
        return hmac.compare_digest(given.strip().encode(), self.token.encode())

    def csrf(self, nonce: str) -> str:
        return self._mac("csrf", nonce)

    def check_csrf(self, nonce: str | None, given: str | None) -> bool:
        if not nonce or not given:
            return False
        return hmac.compare_digest(given.encode(), self.csrf(nonce).encode())

    def set_cookie(self, response: web.StreamResponse, value: str, *, secure: bool) -> None:
        response.set_cookie(
            COOKIE,
            value,
            path="/ui",
            httponly=True,
            samesite="Strict",
            secure=secure,
            max_age=SESSION_MAX_AGE if self.login_required else None,
        )


def same_origin(request: web.Request) -> bool:
    """False when the request says it comes from another origin (``Origin`` or ``Referer``)."""
    origin = request.headers.get("Origin") or ""
    if not origin or origin == "null":
        referer = request.headers.get("Referer") or ""
        if not referer:
            return origin != "null"
        origin = "/".join(referer.split("/")[:3])
    return origin == f"{request.scheme}://{request.host}"


def security_headers(response: web.StreamResponse, *, html: bool) -> None:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if html:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
