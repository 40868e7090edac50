"""Console logins: a bearer token exchanged for an HttpOnly, SameSite=Strict session cookie.

The cookie carries a random id; the store keeps its SHA-256, the token it stands for, and a CSRF
secret every form of the console embeds (and the console's script sends as `X-CSRF-Token`). A write
whose CSRF value does not match, or whose Origin is another site, is refused before it is looked at.
Revoking the token ends its logins at once (every request looks the login up).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request

from gridshare.server.operator.auth import SESSION_COOKIE, Caller, context, session_caller, token_digest
from gridshare.store.access_models import ApiRole
from gridshare.store.db import transaction
from gridshare.store.queries.access import token_by_digest
from gridshare.store.queries.console import add_console_session, end_console_session

LOGIN_CSRF_COOKIE = "gridshare_login_csrf"


class NeedLogin(Exception):
    """No live console login: the page answers with a redirect to the login form."""


class Refused(Exception):
    """A console write refused (role, CSRF, origin): answered with a 403 page saying why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Login:
    caller: Caller
    csrf: str

    @property
    def can_write(self) -> bool:
        return self.caller.role is ApiRole.operator


def console_login(request: Request) -> Login:
    """FastAPI dependency of every console page."""
    cookie = request.cookies.get(SESSION_COOKIE)
    found = session_caller(request, cookie) if cookie else None
    if found is None:
        raise NeedLogin()
    return Login(*found)


def start_login(request: Request, token: str) -> str | None:
    """A new session id for a valid, unrevoked token (None otherwise)."""
    ctx = context(request)
    session_id = secrets.token_urlsafe(32)
    with transaction(ctx.sessions) as session:
        row = token_by_digest(session, token_digest(token.strip()))
        if row is None or row.revoked_s is not None:
            return None
        add_console_session(
            session,
            session_sha256=token_digest(session_id),
            token_id=row.id,
            csrf=secrets.token_urlsafe(32),
            now_s=ctx.now_s(),
            lifetime_s=ctx.settings.console_session_s,
        )
    return session_id


def end_login(request: Request) -> None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return
    ctx = context(request)
    with transaction(ctx.sessions) as session:
        end_console_session(session, token_digest(cookie), ctx.now_s())


def check_write(request: Request, login: Login, sent_csrf: str, *, needs_operator: bool = True) -> None:
    """Raise Refused unless this form post may write: same origin, matching CSRF token, operator role."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Refused(f"a write from another site ({origin}) is refused")
    if not sent_csrf or not secrets.compare_digest(sent_csrf.encode(), login.csrf.encode()):
        raise Refused("the form's CSRF token is missing or wrong: reload the page and try again")
    if needs_operator and not login.can_write:
        raise Refused(
            f"{login.caller.name} has the {login.caller.role} role: this console is read-only for it"
        )
