"""Alembic environment: migrations run against ``DATABASE_URL`` from Jenga's
settings (validated like every other process: a bad configuration stops with
one clear message). Tests pass a URL in ``sqlalchemy.url`` instead.

The release process logs like the others: ``alembic.ini`` sets the levels and
the text format; with ``LOG_FORMAT=json`` Jenga's JSON handler replaces it."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from common.delivery.models import Base

config = context.config


def configure_release_logging(config_file: str) -> None:
    fileConfig(config_file, disable_existing_loggers=False)
    if config.get_main_option("sqlalchemy.url"):
        return  # a caller's own database: its own logging
    from common.config import get_settings
    from common.support.logs import configure_logging

    settings = get_settings()
    if settings.log_format == "json":
        configure_logging("json", settings.log_level)


if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    configure_release_logging(config.config_file_name)


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from common.config import get_settings

    return get_settings().sqlalchemy_url


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool, hide_parameters=True)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
