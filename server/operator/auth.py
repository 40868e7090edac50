"""Bearer tokens and roles: who is calling the operator API and what they may do.

Tokens are random strings shown once; the store keeps only their SHA-256, so a leaked database does
not leak access. Each request looks its token up (no cache), so revoking a token takes effect at once.

The web console exchanges a token for a session cookie (server/operator/web/session.py); a request
carrying that cookie instead of a bearer token is the token's holder too, but a write with it must
also send the login's CSRF token (header `X-CSRF-Token`): another site's page cannot read it, so it
cannot make a logged-in browser write.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gridshare.server.shared.context import AppContext
from gridshare.store.access_models import ApiRole
from gridshare.store.queries.access import token_by_digest
from gridshare.store.queries.console import live_console_session

bearer = HTTPBearer(
    auto_error=False,
    description="A token from `gridshare admin token create --role operator|viewer`.",
)


@dataclass(frozen=True)
class Caller:
    """The holder of a valid token: its name is what the audit log records as the actor."""

    name: str
    role: ApiRole


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def context(request: Request) -> AppContext:
    return request.app.state.ctx


def _unauthorized(reason: str, error: str | None = None) -> HTTPException:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return HTTPException(401, reason, headers={"WWW-Authenticate": challenge})


SESSION_COOKIE = "gridshare_console"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_caller(request: Request, cookie: str) -> tuple[Caller, str] | None:
    """(caller, CSRF token) of a live console login, or None."""
    ctx = context(request)
    with ctx.sessions() as session:
        found = live_console_session(session, token_digest(cookie), ctx.now_s())
    if found is None:
        return None
    login, token = found
    return Caller(token.name, token.role), login.csrf


def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Caller:
    """Any valid token (or console login): enough to read."""
    if credentials is None or not credentials.credentials:
        cookie = request.cookies.get(SESSION_COOKIE)
        found = session_caller(request, cookie) if cookie else None
        if found is None:
            raise _unauthorized("send Authorization: Bearer <token>")
        caller, csrf = found
        sent = request.headers.get(CSRF_HEADER, "")
        if request.method not in SAFE_METHODS and not secrets.compare_digest(sent.encode(), csrf.encode()):
            raise HTTPException(403, "a write from the console needs its CSRF token (X-CSRF-Token header)")
        return caller
    digest = token_digest(credentials.credentials)
    with context(request).sessions() as session:
        token = token_by_digest(session, digest)
    if token is None or token.revoked_s is not None:
        raise _unauthorized("the token is unknown or revoked", "invalid_token")
    return Caller(token.name, token.role)


def require_operator(caller: Caller = Depends(authenticate)) -> Caller:
    """A token with the operator role: needed for every write."""
    if caller.role is not ApiRole.operator:
        raise HTTPException(403, f"token {caller.name!r} has the {caller.role} role; writes need operator")
    return caller
