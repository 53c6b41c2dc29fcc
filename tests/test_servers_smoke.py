"""The throwaway servers the other tests rely on really stop and start."""

import psycopg
import redis

from tests.servers import port_open


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
