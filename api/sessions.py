"""Dashboard logins kept on the server: the cookie holds a random session id (only its hash is stored), each
session has its own random CSRF token, logging out ends it, and revoking the token ends every session made
from it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from convlens.api.tokens import Principal, digest
from convlens.db.models import BrowserSession, Token, utcnow
from convlens.db.session import session_scope

LIFETIME = timedelta(days=7)
MAX_COOKIE = 128


@dataclass(frozen=True)
class LoggedIn:
    who: Principal
    csrf: str


def start_session(token: str) -> tuple[str, LoggedIn] | None:
    """A new session for a valid token: (the cookie's value, who and the CSRF token); None for a bad token."""
    cookie = secrets.token_urlsafe(32)
    with session_scope() as s:
        row = s.scalars(select(Token).where(Token.hash == digest(token), Token.revoked_at.is_(None))).first()
        if row is None:
            return None
        csrf = secrets.token_urlsafe(24)
        s.add(BrowserSession(hash=digest(cookie), token_id=row.id, csrf=csrf, expires_at=utcnow() + LIFETIME))
        return cookie, LoggedIn(Principal(name=row.name, scope=row.scope), csrf)


def current(cookie: str | None) -> LoggedIn | None:
    """The live session a cookie names: not ended, not expired, its token not revoked."""
    if not cookie or len(cookie) > MAX_COOKIE:
        return None
    with session_scope() as s:
        found = s.execute(select(BrowserSession, Token).join(Token, Token.id == BrowserSession.token_id).where(
            BrowserSession.hash == digest(cookie), BrowserSession.ended_at.is_(None),
            BrowserSession.expires_at > utcnow(), Token.revoked_at.is_(None))).first()
        return LoggedIn(Principal(name=found[1].name, scope=found[1].scope), found[0].csrf) if found else None


def end_session(cookie: str) -> None:
    with session_scope() as s:
        row = s.scalars(select(BrowserSession).where(BrowserSession.hash == digest(cookie))).first()
        if row is not None and row.ended_at is None:
            row.ended_at = utcnow()
