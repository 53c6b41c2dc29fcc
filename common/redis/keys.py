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

    # --- level 4: circuit breakers (common/guards/breaker) ----------------------

    def breakers(self) -> str:
        """Set: the name of every circuit breaker."""
        return self.key("breakers")

    def breaker(self, name: str) -> str:
        """Hash: one breaker's shared state (written only by ``policy.lua``)."""
        return self.key("breaker", name)

    def breaker_window(self, name: str) -> str:
        """Hash: one breaker's sliding-window counts per bucket."""
        return self.key("breaker", name, "window")

    def breaker_leases(self, name: str) -> str:
        """Hash: one half-open breaker's trial calls in flight (lease id -> expiry)."""
        return self.key("breaker", name, "leases")

    def breaker_events(self) -> str:
        """Pub/sub channel: one message per breaker transition."""
        return self.key("breaker", "events")

    # --- level 4: adaptive concurrency limits (common/guards/limit) -------------

    def limits(self) -> str:
        """Set: every service that has a concurrency limit."""
        return self.key("limits")

    def limit(self, service: str) -> str:
        """Hash: one service's AIMD limit and window counters."""
        return self.key("limit", service)

    def limit_leases(self, service: str) -> str:
        """Sorted set: one service's slots held by worker processes (slot id -> expiry)."""
        return self.key("limit", service, "leases")

    def limit_peaks(self, service: str) -> str:
        """Hash: process id -> most calls it had in flight during the open window."""
        return self.key("limit", service, "peaks")
