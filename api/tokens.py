"""API tokens: created (shown once), listed, revoked, and checked on every request.

A token is 32 random bytes; only its SHA-256 is stored (a fast hash is enough for a secret that long, as for
GitHub's and MLflow's tokens). Scopes nest: read < submit < admin.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from convlens.db.models import SCOPES, Token, utcnow
from convlens.db.session import session_scope
from convlens.ml.errors import ConvlensError
from convlens.worker import audit

PREFIX = "cl_"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


class TokenError(ConvlensError, ValueError):
    """A token name that is malformed or taken, or a scope that does not exist."""

    http_status = 409


class TokenNotFound(TokenError):
    http_status = 404


class TokenView(BaseModel):
    name: str
    scope: str
    max_jobs: int | None = Field(None, description="at most this many of its jobs unfinished at once (None: no limit)")
    created_at: datetime
    revoked_at: datetime | None = None


class TokenList(BaseModel):
    tokens: list[TokenView]


class NewToken(TokenView):
    token: str


class Principal(BaseModel):
    """Who a request comes from."""

    name: str
    scope: str

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _view(t: Token) -> TokenView:
    return TokenView(name=t.name, scope=t.scope, max_jobs=t.max_jobs, created_at=t.created_at,
                     revoked_at=t.revoked_at)


def create_token(name: str, scope: str, max_jobs: int | None = None) -> NewToken:
    if not NAME.fullmatch(name):
        raise TokenError(f"{name!r}: a token name is 1-64 letters, digits or _.@- (starting with a letter or digit)")
    if scope not in SCOPES:
        raise TokenError(f"{scope!r}: the scope is one of {', '.join(SCOPES)}")
    if max_jobs is not None and max_jobs < 1:
        raise TokenError(f"--max-jobs {max_jobs}: a quota is at least 1 unfinished job")
    secret = PREFIX + secrets.token_urlsafe(32)
    try:
        with session_scope() as s:
            row = Token(name=name, hash=digest(secret), scope=scope, max_jobs=max_jobs)
            s.add(row)
            s.flush()
            audit.record(audit.Action.TOKEN_CREATE, name, s, scope=scope, max_jobs=max_jobs)
            return NewToken(**_view(row).model_dump(), token=secret)
    except IntegrityError:
        raise TokenError(f"a token named {name!r} exists or existed (names are never reused)") from None


def list_tokens() -> list[TokenView]:
    with session_scope() as s:
        return [_view(t) for t in s.scalars(select(Token).order_by(Token.created_at, Token.id))]


def revoke_token(name: str) -> TokenView:
    with session_scope() as s:
        row = s.scalars(select(Token).where(Token.name == name)).first()
        if row is None:
            raise TokenNotFound(f"no token named {name!r}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            audit.record(audit.Action.TOKEN_REVOKE, name, s)
        return _view(row)


def authenticate(secret: str) -> Principal | None:
    """The principal of a valid, unrevoked token; None for anything else."""
    if not secret.startswith(PREFIX) or len(secret) > 128:
        return None
    with session_scope() as s:
        row = s.scalars(select(Token).where(Token.hash == digest(secret), Token.revoked_at.is_(None))).first()
        return Principal(name=row.name, scope=row.scope) if row else None


def first_admin_token() -> NewToken | None:
    """A new admin token when no usable token exists (the first start of `convlens api`), else None."""
    with session_scope() as s:
        if s.scalars(select(Token.id).where(Token.revoked_at.is_(None)).limit(1)).first() is not None:
            return None
        taken = set(s.scalars(select(Token.name)))
    name = next(n for n in ("admin", *(f"admin-{i}" for i in range(2, 10_000))) if n not in taken)
    return create_token(name, "admin")
