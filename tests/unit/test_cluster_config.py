"""Level 0: ``REDIS_URL`` accepts a Redis Cluster for the shared state, the broker
refuses one (Celery's Redis transport has no Cluster support) with a message that
says what to set, and the cluster URL's password is masked wherever settings show."""

import pytest

from common.config import ConfigError, describe_settings, read_settings
from common.support.masking import mask_url

DATABASE = {"DATABASE_URL": "postgresql://jenga:pg-pass-123@db.internal:5432/jenga"}
CLUSTER = "redis+cluster://:cl-pass-789@n1:7000,n2:7001"
QUERY_CLUSTER = "redis+cluster://n1:7000,n2:7001?password=cl-query-789"


@pytest.mark.parametrize("url", [CLUSTER, QUERY_CLUSTER])
def test_redis_url_accepts_a_cluster_with_rabbitmq_as_broker(url):
    settings = read_settings({**DATABASE, "REDIS_URL": url, "BROKER_URL": "amqp://g:g@mq//"})
    assert settings.redis_url == url
    described = repr(describe_settings(settings))
    assert "cl-pass-789" not in described and "cl-query-789" not in described
    assert "cl-pass-789" in settings.secret_values() or "cl-query-789" in settings.secret_values()


def test_a_cluster_broker_is_refused_with_what_to_set():
    with pytest.raises(ConfigError) as caught:
        read_settings({**DATABASE, "REDIS_URL": "redis://cache/0", "BROKER_URL": CLUSTER})
    message = caught.value.message()
    assert "BROKER_URL: is a Redis Cluster" in message and "amqp://" in message
    assert "cl-pass-789" not in message


def test_a_cluster_redis_url_without_a_broker_url_is_refused():
    """BROKER_URL defaults to REDIS_URL, which a cluster cannot be."""
    with pytest.raises(ConfigError) as caught:
        read_settings({**DATABASE, "REDIS_URL": CLUSTER})
    message = caught.value.message()
    assert "BROKER_URL is unset and REDIS_URL is a Redis Cluster" in message
    assert "cl-pass-789" not in message


def test_a_malformed_cluster_url_is_named_without_its_password():
    with pytest.raises(ConfigError) as caught:
        read_settings(
            {
                **DATABASE,
                "REDIS_URL": "redis+cluster://:cl-pass-789@n1:7000/0",
                "BROKER_URL": "amqp://mq//",
            }
        )
    message = caught.value.message()
    assert "REDIS_URL: Cluster URL has a path" in message and "cl-pass-789" not in message


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (CLUSTER, "redis+cluster://:***@n1:7000,n2:7001"),
        (QUERY_CLUSTER, "redis+cluster://n1:7000,n2:7001?password=***"),
    ],
)
def test_mask_url_masks_a_cluster_url(url, masked):
    assert mask_url(url) == masked
