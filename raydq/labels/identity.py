"""Who is calling: named identities with a role, and the API tokens that prove them.

A token is 32 random bytes (URL-safe base64 behind a ``rdq_`` prefix, so secret scanners can spot it). Only its
SHA-256 is stored: a token has 256 bits of entropy, so a fast unsalted hash is enough (no password hashing needed),
and it lets ``authenticate`` find the row with one indexed lookup. Digests are compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal, get_args

from raydq.labels.errors import InvalidField
from raydq.labels.text import check_text

Role = Literal["annotator", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
TOKEN_PREFIX = "rdq_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
# Names the service and the CLI use for callers that hold no per-annotator token.
SHARED_TOKEN_NAME = "api-token"
ANONYMOUS_NAME = "anonymous"
CLI_NAME = "admin-cli"
RESERVED_NAMES = frozenset({SHARED_TOKEN_NAME, ANONYMOUS_NAME, CLI_NAME, "system"})


@dataclass(frozen=True)
class Identity:
    """A caller: ``name`` is recorded with its labels, batches and audit entries; ``role`` decides what it may do."""

    name: str
    role: Role = "annotator"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


ANONYMOUS = Identity(ANONYMOUS_NAME, "annotator")
CLI = Identity(CLI_NAME, "admin")


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise InvalidField(("role",), f"must be one of {list(ROLES)}")
    return role  # type: ignore[return-value]


def check_token_name(name: str) -> str:
    """Token names become annotator names: 1-64 characters of letters, digits and ``._@+-``, not a reserved name."""
    check_text(name, ("name",), max_length=64)
    if not _NAME.fullmatch(name):
        raise InvalidField(("name",), "use 1-64 letters, digits or ._@+- (starting with a letter or digit)")
    if name in RESERVED_NAMES:
        raise InvalidField(("name",), f"{name!r} is reserved; reserved names: {sorted(RESERVED_NAMES)}")
    return name


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Hex SHA-256 of the token (what the database stores)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def match_shared_token(given: str, expected: str | None) -> Identity | None:
    """The single shared token of the environment, compared in constant time: an admin named ``api-token``."""
    if not expected:
        return None
    if hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")):
        return Identity(SHARED_TOKEN_NAME, "admin")
    return None
