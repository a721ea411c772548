"""Dashboard sessions: a signed JWT in an HttpOnly cookie, and CSRF tokens bound to it.

The cookie holds the admin's id, their `session_version` (bumped on password/role change or
disable, which ends older sessions) and a random session id `sid`, which must name an open
session on the server (`security/admin_sessions.py`: signing out ends it). A form's CSRF token is an
HMAC of `sid`: a page of another origin can neither read it nor compute it. Before sign-in the
login form uses a double-submit token (a random cookie repeated in the form).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from tonrail import clock
from tonrail.settings import Settings

COOKIE = "tonrail_session"
LOGIN_CSRF_COOKIE = "tonrail_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_ALGORITHM = "HS256"
_AUDIENCE = "tonrail-dashboard"


@dataclass(frozen=True)
class SessionClaims:
    admin_id: str
    session_version: int
    sid: str


def _key(settings: Settings) -> str:
    return settings.jwt_secret.get_secret_value()


@dataclass(frozen=True)
class NewSession:
    token: str  # the cookie's value
    sid: str
    expires_at: datetime


def issue(settings: Settings, admin_id: str, session_version: int) -> NewSession:
    """A new session's cookie; the caller opens its row (`admin_sessions.start`)."""
    now = clock.now()
    sid = secrets.token_urlsafe(16)
    expires_at = now + timedelta(minutes=settings.dashboard_session_minutes)
    claims = {
        "sub": admin_id,
        "ver": session_version,
        "sid": sid,
        "aud": _AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    return NewSession(jwt.encode(claims, _key(settings), algorithm=_ALGORITHM), sid, expires_at)


def read(settings: Settings, token: str | None) -> SessionClaims | None:
    """The claims of a valid, unexpired cookie; None for anything else."""
    if not token:
        return None
    try:
        claims = jwt.decode(
            token,
            _key(settings),
            algorithms=[_ALGORITHM],
            audience=_AUDIENCE,
            # The service clock (tests move it) decides expiry, below, not the wall clock.
            options={
                "require": ["sub", "ver", "sid", "exp"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError:
        return None
    if int(claims["exp"]) <= int(clock.now().timestamp()):
        return None
    return SessionClaims(str(claims["sub"]), int(claims["ver"]), str(claims["sid"]))


def csrf_token(settings: Settings, sid: str) -> str:
    return hmac.new(_key(settings).encode(), f"csrf:{sid}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(settings: Settings, sid: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(settings, sid), presented or "")


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)
