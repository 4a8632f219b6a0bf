"""Who is calling: a bearer token becomes a ``Caller`` (name and role) before any route runs.

Three ways to be let in, checked in this order:

- a personal token (``python -m raydq.admin tokens add NAME --role annotator|admin``), stored hashed in the label
  store: the caller is NAME with that role, and NAME is what the label history records;
- the service's shared token (``RAYDQ_API_TOKEN`` or ``api_token_file``: the single-token set-up of earlier
  versions): the caller is the admin ``api-token``;
- nothing, when no token of either kind exists (a single-user machine): the caller is the admin ``anonymous``. The
  service refuses to start that way on a non-loopback address unless the config says ``allow_anonymous: true``.

Lookups are cached for a few seconds, so a request costs no database round trip in the common case and a revoked
token stops working within ``cache_ttl_s``.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Protocol

from raydq.labels import Identity, TokenPublic, match_shared_token
from raydq.labels.identity import ANONYMOUS_NAME

#: The caller when the service has no token at all (loopback, or allow_anonymous): everything is open to it.
ANONYMOUS_ADMIN = Identity(ANONYMOUS_NAME, "admin")


class TokenDirectory(Protocol):
    """The label store's personal tokens (hashed at rest)."""

    def authenticate(self, token: str) -> Identity | None: ...
    def list_tokens(self) -> list[TokenPublic]: ...


class Authenticator:
    """Bearer token -> ``Identity``; ``None`` means 401."""

    def __init__(
        self,
        *,
        shared_token: str | None,
        directory: TokenDirectory | None,
        cache_ttl_s: float = 5.0,
        cache_size: int = 4096,
    ) -> None:
        self._shared = shared_token or None
        self._directory = directory
        self._ttl = cache_ttl_s
        self._size = cache_size
        self._cache: OrderedDict[str, tuple[float, Identity | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._tokens_exist: tuple[float, bool] = (-1.0, False)

    def mode(self) -> str:
        """``tokens`` (personal tokens exist), ``shared-token`` (only the shared token) or ``anonymous``."""
        if self._personal_tokens_exist():
            return "tokens"
        return "shared-token" if self._shared is not None else "anonymous"

    def authenticate(self, authorization: bytes | None) -> Identity | None:
        """The caller for an ``Authorization`` header value (None when missing or wrong and a token is required)."""
        token = _bearer(authorization)
        if token is None:
            return ANONYMOUS_ADMIN if self.mode() == "anonymous" else None
        shared = match_shared_token(token, self._shared)
        if shared is not None:
            return shared
        if self._directory is None:
            return None
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(token)
            if hit is not None and hit[0] > now:
                self._cache.move_to_end(token)
                return hit[1]
        caller = self._directory.authenticate(token)
        with self._lock:
            self._cache[token] = (now + self._ttl, caller)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return caller

    def _personal_tokens_exist(self) -> bool:
        if self._directory is None:
            return False
        now = time.monotonic()
        stamp, exist = self._tokens_exist
        if stamp < 0 or now - stamp > self._ttl:
            wall = datetime.now(UTC)
            exist = any(t.expires_at is None or t.expires_at > wall for t in self._directory.list_tokens())
            self._tokens_exist = (now, exist)
        return exist


def _bearer(authorization: bytes | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(b" ")
    value = value.strip()
    if scheme.lower() != b"bearer" or not value:
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_anonymous_bind(*, host: str, authenticator: Authenticator, allow_anonymous: bool) -> None:
    """Refuse to serve without any token on an address other machines can reach, unless the operator said so."""
    if authenticator.mode() == "anonymous" and not allow_anonymous and not is_loopback(host):
        raise RuntimeError(
            f"refusing to serve on {host} without authentication: set RAYDQ_API_TOKEN (or api_token_file), add "
            "personal tokens with `python -m raydq.admin tokens add NAME`, or set allow_anonymous: true"
        )
