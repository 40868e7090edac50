"""Bearer tokens and roles: who is calling the operator API and what they may do.

Tokens are random strings shown once; the store keeps only their SHA-256, so a leaked database does
not leak access. Each request looks its token up (no cache), so revoking a token takes effect at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gridshare.server.context import AppContext
from gridshare.store.operator_models import ApiRole
from gridshare.store.queries.operator import token_by_digest

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


def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Caller:
    """Any valid token: enough to read."""
    if credentials is None or not credentials.credentials:
        raise _unauthorized("send Authorization: Bearer <token>")
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
