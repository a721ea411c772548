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
from tonrail.settings import Settings, active_values

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


def _keys(settings: Settings) -> list[str]:
    """JWT_SECRET's values in force: the first signs; during a rotation the retired one still
    verifies until its expiry (`tonrail keys rotate-secret jwt`), then its sessions end."""
    return active_values(settings.jwt_secret.get_secret_value(), clock.now())


def _key(settings: Settings) -> str:
    keys = _keys(settings)
    if not keys:
        raise RuntimeError("JWT_SECRET has no value in force")  # the settings refuse this
    return keys[0]


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
    claims = None
    for key in _keys(settings):
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[_ALGORITHM],
                audience=_AUDIENCE,
                # The service clock (tests move it) decides expiry, below, not the wall clock.
                options={
                    "require": ["sub", "ver", "sid", "exp"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
            break
        except jwt.PyJWTError:
            continue
    if claims is None:
        return None
    if int(claims["exp"]) <= int(clock.now().timestamp()):
        return None
    return SessionClaims(str(claims["sub"]), int(claims["ver"]), str(claims["sid"]))


def _csrf(key: str, sid: str) -> str:
    return hmac.new(key.encode(), f"csrf:{sid}".encode(), hashlib.sha256).hexdigest()


def csrf_token(settings: Settings, sid: str) -> str:
    return _csrf(_key(settings), sid)


def csrf_ok(settings: Settings, sid: str, presented: str | None) -> bool:
    """A form made under any JWT_SECRET value in force (a page loaded before a rotation)."""
    return bool(presented) and any(
        hmac.compare_digest(_csrf(key, sid), presented or "") for key in _keys(settings)
    )


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)
