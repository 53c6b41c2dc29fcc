"""The SQLAlchemy engine. Creating it opens no connection: the pool connects on
first use, so boot never waits on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings


def make_engine(settings: Settings, *, pool_size: int = 5) -> Engine:
    """An engine whose connects give up after the check timeout, and that
    notices dead pooled connections before handing them out."""
    return create_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=max(1.0, settings.check_timeout_seconds),
        connect_args={
            "connect_timeout": max(1, round(settings.check_timeout_seconds)),
            "application_name": f"jenga-{settings.jenga_namespace}",
        },
        hide_parameters=True,
    )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
