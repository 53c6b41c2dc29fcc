"""Fixtures of the in-process API tests."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from common.config import load_settings
from tests.support.api import TOKEN


@pytest.fixture
def client(settings_env, migrated_database_url, redis_client):
    """The API in-process on the session's database and Redis, with the bootstrap admin
    token :data:`tests.support.api.TOKEN` (its header: ``ADMIN``). A module that needs
    other settings defines its own ``client``."""
    settings = load_settings({**settings_env, "JENGA_ADMIN_TOKEN": TOKEN}, wait_seconds=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="session")
def redis_cluster():
    """One throwaway Redis Cluster (three primaries, one replica each, password
    :data:`tests.support.cluster.TEST_PASSWORD`) for the session's cluster tests:
    starting one takes ~10 s. Tests that fail nodes over leave every node up and the
    cluster settled."""
    from tests.support.cluster import TEST_PASSWORD, RedisClusterGroup

    with RedisClusterGroup(password=TEST_PASSWORD) as group:
        yield group
