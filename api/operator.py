"""The operator routes (``/health``, ``/status``, ``/metrics``, ``/alarms``,
``GET /breakers``): an ``admin`` key on the public listener, or nothing on the
private one.

They name hosts, users and driver errors, so the public listener answers them
only with an ``admin`` key (:func:`require_operator`). ``OPS_PORT`` opens a
second listener in the same process, bound to ``OPS_HOST`` (a private
interface: the usual place for Prometheus to scrape), where they need no key:
requests that arrive there are marked by :class:`OperatorListener` and pass.
``/up`` and ``/live`` stay open everywhere and say nothing secret.
"""

from __future__ import annotations

import threading

import uvicorn
from fastapi import FastAPI, Request, Security

from api.auth import ADMIN_ERRORS, BEARER, require_admin

__all__ = ["OPERATOR_ERRORS", "OperatorListener", "require_operator", "start_operator_listener"]

# What the public listener answers without an admin key (the document describes that one).
OPERATOR_ERRORS = ADMIN_ERRORS

MARK = "jenga.operator_listener"


class OperatorListener:
    """The application as served on the private listener: every request is marked."""

    def __init__(self, app: FastAPI):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, MARK: True}
        await self.app(scope, receive, send)


def require_operator(request: Request, _scheme=Security(BEARER)) -> None:
    """Pass on the private listener; elsewhere, an ``admin`` key (401/403)."""
    if not request.scope.get(MARK):
        require_admin(request)


def start_operator_listener(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """Serve ``app`` (its state already set up: no lifespan of its own) on
    ``host:port`` from a daemon thread; stop it with ``server.should_exit = True``."""
    config = uvicorn.Config(
        OperatorListener(app),
        host=host,
        port=port,
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, name="jenga-ops-listener", daemon=True).start()
    return server
