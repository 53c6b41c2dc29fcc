"""The FastAPI application factory.

``create_app(settings)`` builds clients but opens no connection: the Redis
client and the SQLAlchemy engine connect lazily, so the API answers ``/live``
at once whatever state its dependencies are in.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api import (
    alarms,
    apps,
    attempts,
    audit,
    breakers,
    endpoint_stats,
    endpoints,
    errors,
    event_types,
    health,
    jobs,
    keys,
    messages,
    metrics,
    openapi,
    status,
)
from api.body_limit import BodySizeLimit, body_limit
from api.operator import start_operator_listener
from api.tenancy import AppCache, app_in_path
from common.config import Settings
from common.connections.database import make_engine
from common.redis.client import redis_for


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.settings = settings
        app.state.redis = redis_for(settings)
        app.state.engine = make_engine(settings)
        # Reads get a pool of their own: slow lists can never starve writes (api/tenancy.py).
        app.state.read_engine = make_engine(settings)
        app.state.app_cache = AppCache()  # for POST …/messages (api/tenancy.py)
        for module in LIFECYCLE_MODULES:
            await module.startup(app)
        ops = None
        if settings.ops_port is not None:
            ops = start_operator_listener(app, settings.ops_host, settings.ops_port)
        try:
            yield
        finally:
            if ops is not None:
                ops.should_exit = True
            for module in reversed(LIFECYCLE_MODULES):
                await module.shutdown(app)
            app.state.engine.dispose()
            app.state.read_engine.dispose()
            app.state.redis.close()

    app = FastAPI(title="Jenga", version="0.1.0", lifespan=lifespan)
    errors.install(app)  # JSON errors: 4xx for bad input, 503 when PostgreSQL is down
    openapi.install(app)  # /openapi.json says so
    app.add_middleware(BodySizeLimit, limit=body_limit(settings.max_payload_bytes))
    tenant_routers = [router for routers in TENANT_ROUTERS.values() for router in routers]
    for module in ROUTER_MODULES:
        if module.router not in tenant_routers:
            app.include_router(module.router)
    for name, routers in TENANT_ROUTERS.items():
        for router in routers:
            app.include_router(
                router, prefix=f"/v1/apps/{{app}}/{name}", dependencies=[Depends(app_in_path)]
            )
            # The default application's, for one release (README: "Applications").
            app.include_router(router, prefix=f"/v1/{name}", deprecated=True)
    return app


ROUTER_MODULES = [
    health,
    alarms,
    breakers,
    apps,
    keys,
    audit,
    event_types,
    metrics,
    status,
    endpoints,
    messages,
    jobs,
]
# Routers mounted per application, under each name (their handlers take the
# application from api.tenancy).
TENANT_ROUTERS = {
    "endpoints": [endpoints.router, attempts.endpoint_router, endpoint_stats.router],
    "messages": [messages.router, attempts.message_router],
    "jobs": [jobs.router],
}
# Modules with startup(app)/shutdown(app) coroutines, started in this order.
LIFECYCLE_MODULES = [m for m in ROUTER_MODULES if hasattr(m, "startup")]
