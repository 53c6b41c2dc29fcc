"""Cluster URLs: parsed into the startup nodes and credentials without touching the
network; a malformed one is a ValueError that never quotes the password."""

from __future__ import annotations

import pytest

from common.redis.urls import ClusterURL, is_cluster_url, parse_cluster_url


def test_a_cluster_url_names_its_nodes_and_password():
    assert parse_cluster_url("redis+cluster://:p%40ss@n1:7000,n2,[::1]:7002") == ClusterURL(
        nodes=(("n1", 7000), ("n2", 6379), ("::1", 7002)), password="p@ss"
    )
    assert is_cluster_url(" REDIS+CLUSTER://n1")


def test_the_password_may_be_an_option():
    parsed = parse_cluster_url("redis+cluster://n1:7000?password=pw&username=app")
    assert (parsed.username, parsed.password) == ("app", "pw")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://", "names no node"),
        ("redis+cluster://n1:port", "Cluster node address 1 has no valid port"),
        ("redis+cluster://n1,,n3", "Cluster node address 2 is not host or host:port"),
        ("redis+cluster://n1/0", "has a path"),
        ("redis+cluster://n1?db=1", "unknown option"),
        ("redis+cluster://:a@n1?password=b", "both before '@' and in ?password="),
    ],
)
def test_a_malformed_cluster_url_says_what_is_wrong(url, problem):
    with pytest.raises(ValueError, match=None) as caught:
        parse_cluster_url(url)
    assert problem in str(caught.value)


def test_the_password_is_never_quoted():
    with pytest.raises(ValueError) as caught:
        parse_cluster_url("redis+cluster://:hunter/22pw@n1")
    assert "hunter" not in str(caught.value) and "22pw" not in str(caught.value)
