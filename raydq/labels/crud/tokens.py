"""API tokens: add (the secret is returned once, its SHA-256 stored), list, revoke, and authenticate."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from raydq.labels.errors import AlreadyExists, NotFound
from raydq.labels.identity import Identity, hash_token, new_token, same_digest
from raydq.labels.models import Token
from raydq.labels.schemas import NewToken, TokenPublic


def _live(session: Session, name: str) -> Token | None:
    return session.scalars(select(Token).where(Token.name == name, Token.revoked_at.is_(None))).first()


def add_token(*, session: Session, name: str, role: str, expires_at: datetime | None, now: datetime) -> NewToken:
    """A new token for ``name`` (already checked). A name has one live token at a time: an expired one is revoked
    on the way, an unexpired one must be revoked first (``AlreadyExists``)."""
    live = _live(session, name)
    if live is not None:
        if live.expires_at is None or live.expires_at > now:
            raise AlreadyExists(f"{name!r} already has a live token; revoke it first")
        live.revoked_at = now
        session.flush()
    token = new_token()
    session.add(Token(name=name, role=role, token_hash=hash_token(token), created_at=now, expires_at=expires_at))
    try:
        session.flush()
    except IntegrityError:  # a concurrent add of the same name won (the live-name unique index)
        raise AlreadyExists(f"{name!r} already has a live token; revoke it first") from None
    return NewToken(name=name, role=role, token=token, expires_at=expires_at)


def list_tokens(*, session: Session, include_revoked: bool) -> list[TokenPublic]:
    query = select(Token).order_by(Token.name, Token.id)
    if not include_revoked:
        query = query.where(Token.revoked_at.is_(None))
    return [TokenPublic.model_validate(t) for t in session.scalars(query)]


def revoke_token(*, session: Session, name: str, now: datetime) -> TokenPublic:
    live = _live(session, name)
    if live is None:
        raise NotFound(f"no live token named {name!r}")
    live.revoked_at = now
    session.flush()
    return TokenPublic.model_validate(live)


def authenticate(*, session: Session, token: str, now: datetime) -> Identity | None:
    """The identity of a live (unrevoked, unexpired) token, else None."""
    digest = hash_token(token)
    row = session.scalars(select(Token).where(Token.token_hash == digest)).first()
    if row is None or not same_digest(row.token_hash, digest):
        return None
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return Identity(row.name, row.role)  # type: ignore[arg-type]
