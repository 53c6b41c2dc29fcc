"""The admin bearer-token check, as a FastAPI dependency.

``Depends(require_admin)`` on a route refuses the call unless it carries
``Authorization: Bearer $JENGA_ADMIN_TOKEN``:

* no token configured: 403 ``admin API disabled`` (a deployment that never set
  a token has no write API, rather than an open one);
* header missing, malformed or wrong: 401 with ``WWW-Authenticate: Bearer``.

The token is compared with :func:`hmac.compare_digest` so the time a wrong
guess takes says nothing about how close it was.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

DISABLED = "admin API disabled: set JENGA_ADMIN_TOKEN to enable it"


def require_admin(request: Request) -> None:
    """Raise 401/403 unless the request carries the admin bearer token."""
    token = request.app.state.settings.jenga_admin_token
    if token is None:
        raise HTTPException(status_code=403, detail=DISABLED)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong admin token: send `Authorization: Bearer $JENGA_ADMIN_TOKEN`",
            headers={"WWW-Authenticate": "Bearer"},
        )
