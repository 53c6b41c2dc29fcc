"""Who is asking: the bearer token of a request, as FastAPI dependencies.

Every ``/v1`` route and every operator action needs ``Authorization: Bearer
<key>``: an API key (``jk_…``, scoped: ``common/access/scopes.py``) or the
bootstrap admin token ``JENGA_ADMIN_TOKEN``. Missing, malformed, unknown or
revoked: 401 with ``WWW-Authenticate: Bearer`` and nothing else said.

* :func:`authenticate`: the :class:`~common.access.scopes.Principal` of the request,
  charged one request of its rate limit (429 over it: :mod:`api.rate_limit`).
* :func:`require_admin`: an ``admin`` principal, else 401 (no key) or 403 (a key
  without the scope). With no admin token configured and no API key sent, 403
  ``admin API disabled``, as before keys existed.

The admin token is compared with :func:`hmac.compare_digest`; a key is looked
up by its SHA-256 (an index scan, no secret compared). Lookups are cached for
``KEY_CACHE_SECONDS`` per process, so a revoked key stops working within that.

Both declare :data:`BEARER` (the OpenAPI ``securityScheme`` of every operation that
needs a key) and answer the errors in :data:`KEY_ERRORS` / :data:`ADMIN_ERRORS`, which
routers declare as their ``responses``.
"""

from __future__ import annotations

import hmac
import threading

from cachetools import TTLCache
from fastapi import HTTPException, Request, Response, Security
from fastapi.security import HTTPBearer
from sqlalchemy.orm import Session

from api.errors import error_responses
from api.rate_limit import enforce_rate_limit
from common.access.key_store import live_key
from common.access.keys import key_hash, key_prefix, looks_like_key
from common.access.scopes import ADMIN, Principal, parse_scope

__all__ = [
    "ADMIN_ERRORS",
    "BEARER",
    "KEY_CACHE_SECONDS",
    "KEY_ERRORS",
    "authenticate",
    "require_admin",
]

DISABLED = "admin API disabled: set JENGA_ADMIN_TOKEN to enable it"
KEY_CACHE_SECONDS = 5.0
ADMIN_TOKEN = Principal("admin token", (parse_scope(ADMIN),))

# Documents the scheme; the header itself is read by bearer(), which also serves direct callers.
BEARER = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="API key",
    description="An API key (`jk_…`) or JENGA_ADMIN_TOKEN. The operator routes need an `admin`"
    " one on the public listener and none on the OPS_PORT listener.",
    auto_error=False,
)
# 503: a key is looked up in PostgreSQL (api/errors.py answers database_unavailable).
KEY_ERRORS = error_responses(401, 429, 503)
ADMIN_ERRORS = error_responses(401, 403, 429, 503)

_cache: TTLCache = TTLCache(maxsize=10_000, ttl=KEY_CACHE_SECONDS)
_cache_lock = threading.Lock()


def unauthorized() -> HTTPException:
    return HTTPException(
        status_code=401,
        detail="missing, unknown or revoked key: send `Authorization: Bearer <API key>`",
        headers={"WWW-Authenticate": "Bearer"},
    )


def bearer(request: Request) -> str | None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


# ``response``: FastAPI's, for the RateLimit headers; None when called directly (no headers).
# ``_scheme``: declares BEARER on the operation (its value is bearer(request) again).
def authenticate(
    request: Request, response: Response = None, _scheme=Security(BEARER)
) -> Principal:
    """The principal of the request's bearer token; 401 when there is none, 429 when it
    is over its rate limit."""
    principal = identify(request)
    enforce_rate_limit(request, response, principal)
    return principal


def identify(request: Request) -> Principal:
    """The principal of the request's bearer token; 401 when there is none."""
    given = bearer(request)
    if given is None:
        raise unauthorized()
    token = request.app.state.settings.jenga_admin_token
    if token is not None and hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        return ADMIN_TOKEN
    if not looks_like_key(given):
        raise unauthorized()
    principal = principal_of_key(request, given)
    if principal is None:
        raise unauthorized()
    return principal


def principal_of_key(request: Request, key: str) -> Principal | None:
    digest = key_hash(key)
    with _cache_lock:
        if digest in _cache:
            return _cache[digest]
    with Session(request.app.state.engine) as session:
        row = live_key(session, key)
        principal = (
            None
            if row is None
            else Principal(key_prefix(key), tuple(parse_scope(s) for s in row.scopes))
        )
    with _cache_lock:
        _cache[digest] = principal
    return principal


def forget_cached_keys() -> None:
    """Drop every cached lookup (a revocation in this process takes effect at once)."""
    with _cache_lock:
        _cache.clear()


def require_admin(
    request: Request, response: Response = None, _scheme=Security(BEARER)
) -> Principal:
    """An ``admin`` principal, else 401/403."""
    given = bearer(request)
    if request.app.state.settings.jenga_admin_token is None and not (
        given and looks_like_key(given)
    ):
        raise HTTPException(status_code=403, detail=DISABLED)
    principal = authenticate(request, response)
    if not principal.is_admin:
        raise HTTPException(status_code=403, detail="this key has no `admin` scope")
    return principal
