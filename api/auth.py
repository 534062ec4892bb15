"""Who may call the HTTP API: a bearer token, or the session cookie a browser gets from a login URL.

Every endpoint but /health, /openapi.json and /docs needs a valid token (401 otherwise). A cookie-borne request
that changes anything must also carry the session's CSRF token (header X-CSRF-Token), which a page of this
origin can know and another site cannot; bearer requests need none (browsers never attach those on their own).
The cookie holds a server-side session's random id (api.sessions), never the token.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from convlens.api import sessions
from convlens.api.sessions import LoggedIn
from convlens.api.tokens import Principal, authenticate
from convlens.worker.audit import current_actor

SESSION_COOKIE = "convlens_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
bearer = HTTPBearer(auto_error=False, description="a token from `convlens tokens create NAME --scope SCOPE`")


def clean(text: str) -> str:
    """Text safe to put in a UTF-8 response, whatever bytes a request smuggled into it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def problem(status: int, message: str, errors: list[dict[str, str]] | None = None,
            headers: dict[str, str] | None = None) -> HTTPException:
    """The one error shape (api.schemas.ErrorBody)."""
    errors = [{k: clean(v) for k, v in e.items()} for e in errors or []]
    return HTTPException(status_code=status, detail={"message": clean(message), "errors": errors}, headers=headers)


def unauthorized(message: str) -> HTTPException:
    return problem(401, message, headers={"WWW-Authenticate": "Bearer"})


def session_of(request: Request) -> LoggedIn | None:
    """The browser session the request's cookie names, if it is live."""
    return sessions.current(request.cookies.get(SESSION_COOKIE))


def session_principal(request: Request) -> Principal | None:
    found = session_of(request)
    return found.who if found else None


def principal(request: Request,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    who = _principal(request, credentials)
    current_actor().name = who.name  # what this request changes is recorded under the token's name
    return who


def _principal(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if credentials is not None:
        who = authenticate(credentials.credentials)
        if who is None:
            raise unauthorized("invalid or revoked token")
        return who
    if request.cookies.get(SESSION_COOKIE):
        found = session_of(request)
        if found is None:
            raise unauthorized("the session ended (logged out, expired, or its token revoked): log in again")
        sent = request.headers.get(CSRF_HEADER, "")
        if request.method not in SAFE_METHODS and not hmac.compare_digest(sent.encode(), found.csrf.encode()):
            raise problem(403, f"missing or wrong {CSRF_HEADER} header (needed with a session cookie)")
        return found.who
    raise unauthorized("no credentials: send 'Authorization: Bearer TOKEN' (create one with `convlens tokens "
                       "create NAME --scope read|submit|admin`) or open the login URL `convlens api` printed")


def require(scope: str):  # noqa: ANN201  (a FastAPI dependency)
    def dependency(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.allows(scope):
            raise problem(403, f"token {who.name!r} has scope {who.scope!r}; this needs {scope!r}")
        return who

    return dependency


Reader = Annotated[Principal, Depends(require("read"))]
Submitter = Annotated[Principal, Depends(require("submit"))]
Admin = Annotated[Principal, Depends(require("admin"))]
