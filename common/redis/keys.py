"""The Redis key layout, in one place. Every key starts with ``JENGA_NAMESPACE``
so that several deployments (or test runs) can share one Redis; the README's
"Redis key layout" section lists each key documented here."""

from __future__ import annotations


class RedisKeys:
    """Builds the keys of one namespace: ``RedisKeys("jenga").key("alarm", "postgres")``
    is ``jenga:alarm:postgres``."""

    def __init__(self, namespace: str):
        self.namespace = namespace

    def key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))
