"""Each dependency check is a real round trip, bounded by its timeout."""

import signal

import pytest

from common.connections.probes import check_broker, check_redis
from common.redis.client import make_redis
from tests.support.servers import free_port, port_open


def test_a_frozen_redis_fails_the_broker_and_redis_checks_within_the_timeout(redis_server):
    assert check_broker(redis_server.url, 0.5).ok
    redis_server.proc.send_signal(signal.SIGSTOP)  # accepts TCP connections, answers nothing
    try:
        broker = check_broker(redis_server.url, 0.5)
        cache = check_redis(make_redis(redis_server.url, 0.5))
        assert not broker.ok and not cache.ok
        assert broker.latency_seconds < 3 and cache.latency_seconds < 3
        assert "Timeout" in broker.error
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert check_broker(redis_server.url, 0.5).ok


def test_amqp_broker_check():
    if not port_open("127.0.0.1", 5672):
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    assert check_broker("amqp://guest:guest@127.0.0.1:5672//", 1).ok
    refused = check_broker(f"amqp://guest:guest@127.0.0.1:{free_port()}//", 1)
    assert not refused.ok and "guest" not in (refused.error or "")
