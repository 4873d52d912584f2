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

``LoginLimiter`` counts failed sign-ins (a wrong token in the form or in a bearer header) per
client address: after ``max_failures`` within any ``window`` seconds the address is locked out for
``lockout`` seconds, during which every sign-in from it is refused without the token being checked
(so guessing cannot go on, even slowly). A correct token ends the address's count. At most
``max_clients`` addresses are tracked (the least recently seen goes first).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

__all__ = ["COOKIE", "CSP", "LoginLimiter", "Sessions", "security_headers"]

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


@dataclass(slots=True)
class _Client:
    failures: deque[float]  # the times of the latest failures (at most max_failures)
    locked_until: float


class LoginLimiter:
    """Failed sign-ins per client address, and the lockout that follows (see the module doc).

    ``failed`` counts one and says whether it locked the address; ``locked`` gives the seconds of
    lockout left (0: not locked); ``succeeded`` forgets the address. ``clock``: monotonic seconds.
    """

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 900.0,
        lockout: float = 900.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window <= 0 or lockout <= 0 or max_clients < 1:
            raise ValueError(
                "max_failures and max_clients must be at least 1, window and lockout positive; got "
                f"{max_failures}, {max_clients}, {window}, {lockout}"
            )
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self.lockouts = 0  # addresses locked out so far

    def locked(self, client: str) -> float:
        """Seconds of lockout left for ``client`` (0.0: it may try)."""
        entry = self._clients.get(client)
        if entry is None:
            return 0.0
        return max(0.0, entry.locked_until - self._clock())

    def failures(self, client: str) -> int:
        """Failures of ``client`` within the last ``window`` seconds (a lockout starts a new count)."""
        entry = self._clients.get(client)
        if entry is None:
            return 0
        since = self._clock() - self.window
        return sum(1 for t in entry.failures if t >= since)

    def failed(self, client: str) -> bool:
        """Count one failure; True when it locks ``client`` out."""
        now = self._clock()
        entry = self._clients.get(client)
        if entry is None:
            entry = self._clients[client] = _Client(deque(maxlen=self.max_failures), 0.0)
        self._clients.move_to_end(client)
        entry.failures.append(now)
        locked = len(entry.failures) == self.max_failures and entry.failures[0] >= now - self.window
        if locked:
            entry.failures.clear()
            entry.locked_until = now + self.lockout
            self.lockouts += 1
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        return locked

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)


def minutes(seconds: float) -> str:
    """``15 minutes``, ``1 minute``: a lockout's length as a sign-in page says it (rounded up)."""
    n = max(1, math.ceil(seconds / 60))
    return f"{n} minute" if n == 1 else f"{n} minutes"


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
