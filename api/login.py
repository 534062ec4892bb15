"""Logging the browser in and out. A login URL (`/?token=...`) shows a confirmation page and switches identity
only when that page's form is sent from this origin (a nonce in a SameSite=Strict cookie must match the form's):
a link from someone else cannot log a visitor in as them unawares (login CSRF)."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from convlens.api import sessions
from convlens.api.auth import SESSION_COOKIE, session_of
from convlens.api.dashboard import render_error, templates
from convlens.api.tokens import authenticate
from convlens.ml.params import value_problem

router = APIRouter(include_in_schema=False)
NONCE_COOKIE = "convlens_login"
MAX_FORM = 4096
FAILURES_ALLOWED = 5  # failed logins per address within FAILURE_WINDOW_S before it must wait
FAILURE_WINDOW_S = 60.0


class FailedLogins:
    """Failed logins per client address, in this process: past FAILURES_ALLOWED in the window, that address
    is answered 429 until its oldest failure leaves the window. By hand: a dozen lines, where a rate-limit
    library would bring storage backends this needs none of."""

    def __init__(self) -> None:
        self.seen: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self.seen.setdefault(address, deque())
        while times and now - times[0] > FAILURE_WINDOW_S:
            times.popleft()
        return times

    def wait_s(self, address: str) -> float:
        """Seconds this address must wait before trying again (0: it may try now)."""
        now = time.monotonic()
        with self.lock:
            times = self._recent(address, now)
            return FAILURE_WINDOW_S - (now - times[0]) if len(times) >= FAILURES_ALLOWED else 0.0

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self.lock:
            if len(self.seen) > 10_000:  # forget addresses whose failures are all old
                self.seen = {a: t for a, t in self.seen.items() if t and now - t[-1] <= FAILURE_WINDOW_S}
            self._recent(address, now).append(now)


failed_logins = FailedLogins()


def _refused(request: Request, message: str) -> HTMLResponse:
    """A failed login, counted against its address; past the allowance, a 429 that says how long to wait."""
    address = request.client.host if request.client else "unknown"
    failed_logins.failed(address)
    return render_error(request, 401, message)


def _throttled(request: Request) -> HTMLResponse | None:
    wait = failed_logins.wait_s(request.client.host if request.client else "unknown")
    if not wait:
        return None
    response = render_error(request, 429, f"Too many failed logins from this address: try again in {wait:.0f} s.")
    response.headers["Retry-After"] = str(max(1, round(wait)))
    return response


def confirm_page(request: Request, token: str) -> HTMLResponse:
    """What `/?token=` shows: whose token it is, who is logged in now, and a button that logs in."""
    if (throttled := _throttled(request)) is not None:
        return throttled
    who = authenticate(token) if not value_problem(token) else None
    if who is None:
        return _refused(request, "That login link holds an invalid or revoked token.")
    nonce = secrets.token_urlsafe(24)
    now = session_of(request)
    response = templates.TemplateResponse(request, "login.html", {
        "who": None, "csrf": "", "kinds": [], "token": token, "nonce": nonce, "target": who,
        "current": now.who if now else None})
    response.set_cookie(NONCE_COOKIE, nonce, httponly=True, samesite="strict", path="/login", max_age=600,
                        secure=request.url.scheme == "https")
    response.headers["Cache-Control"] = "no-store"
    return response


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    try:
        fields = parse_qs(body.decode("ascii"), max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in fields.items()}


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    nonce, token = form.get("nonce", ""), form.get("token", "")
    expected = request.cookies.get(NONCE_COOKIE, "")
    if not expected or not hmac.compare_digest(nonce.encode(), expected.encode()):
        return render_error(request, 403, "This login was not confirmed on this site's own login page: open the "
                                          "login URL again and press Log in.")
    if (throttled := _throttled(request)) is not None:
        return throttled
    started = sessions.start_session(token) if not value_problem(token) else None
    if started is None:
        return _refused(request, "That login link holds an invalid or revoked token.")
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        sessions.end_session(old)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, started[0], httponly=True, samesite="lax", path="/",
                        secure=request.url.scheme == "https", max_age=int(sessions.LIFETIME.total_seconds()))
    response.delete_cookie(NONCE_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    found = session_of(request)
    form = await _form(request)
    if found is not None:
        if not hmac.compare_digest(form.get("csrf", "").encode(), found.csrf.encode()):
            return render_error(request, 403, "Log out from the dashboard's own button.")
        sessions.end_session(request.cookies[SESSION_COOKIE])
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
