"""libpq options bound every PostgreSQL call on the client, from the check settings."""

import psycopg

from common.config import Settings
from common.connections.database import libpq_options


def _settings(**values) -> Settings:
    return Settings(
        database_url="postgresql://localhost/test", redis_url="redis://localhost", **values
    )


def test_a_request_on_a_dead_path_gives_up_after_the_check_timeout():
    options = libpq_options(_settings(check_timeout_seconds=2.5, check_interval_seconds=3))
    assert options["tcp_user_timeout"] == 2500
    assert options["connect_timeout"] == 3
    assert (options["keepalives"], options["keepalives_idle"]) == (1, 3)


def test_libpq_accepts_every_option():
    conninfo = psycopg.conninfo.make_conninfo("dbname=test", **libpq_options(_settings()))
    assert "tcp_user_timeout=1000" in conninfo
