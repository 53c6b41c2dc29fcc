"""The Redis key layout, in one place. Every shared-state key starts with the hash
tag ``{JENGA_NAMESPACE}`` so that several deployments (or test runs) can share one
Redis and, on a Redis Cluster, all of a deployment's keys sit in one hash slot (every
Lua script, transaction and multi-key command touches keys of one slot). The broker's
keys (kombu's, when the broker is Redis, never a cluster) keep the untagged
``JENGA_NAMESPACE:broker:`` prefix, so an upgrade finds its queued tasks. The README's
"Redis key layout" section lists each key documented here."""

from __future__ import annotations

__all__ = ["KOMBU_PRIORITY_SUFFIXES", "RedisKeys", "hash_tag"]

# kombu's Redis transport: the lists of a queue's priorities 0, 3, 6 and 9.
KOMBU_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def hash_tag(namespace: str) -> str:
    """The hash tag every shared-state key of ``namespace`` starts with: ``{namespace}``."""
    return "{" + namespace + "}"


class RedisKeys:
    """Builds the keys of one namespace: ``RedisKeys("jenga").key("alarm", "postgres")``
    is ``{jenga}:alarm:postgres``."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self.tag = hash_tag(namespace)

    def key(self, *parts: str) -> str:
        return ":".join((self.tag, *parts))

    def pattern(self) -> str:
        """``SCAN MATCH`` pattern of every shared-state key (the broker's excepted);
        ``{`` is not special in Redis patterns."""
        return self.key("*")

    # --- no level: the broker (kombu's own keys, when the broker is Redis) ------

    def broker_prefix(self) -> str:
        """kombu's ``global_keyprefix``: every key of a Redis broker starts with it."""
        return ":".join((self.namespace, "broker", ""))

    def broker_queue(self, queue: str) -> str:
        """List: the messages waiting in Celery queue ``queue`` (default priority)."""
        return self.broker_prefix() + queue

    def broker_queue_lists(self, queue: str) -> tuple[str, ...]:
        """Lists: every priority list of ``queue``; kombu keeps priorities 3, 6
        and 9 in lists named queue + ``"\\x06\\x16"`` + priority."""
        return tuple(self.broker_queue(queue) + suffix for suffix in KOMBU_PRIORITY_SUFFIXES)

    # --- level 2: health (common/health, the smoke-test tasks) ------------------

    def worker_heartbeat(self, hostname: str) -> str:
        """String (JSON), TTL 3 intervals: one worker's last heartbeat."""
        return self.key("worker", hostname, "heartbeat")

    def workers(self) -> str:
        """Sorted set: the host name of every worker that wrote a heartbeat → when that
        heartbeat expires (its clock), so readers find the heartbeats without a SCAN."""
        return self.key("workers")

    def beat(self) -> str:
        """Hash, TTL 7 days from its last write: the beat lease (holder, fencing token,
        expiry) and the active beat's heartbeat (last tick, last run of each entry);
        written only by ``common/health/beat_lock.lua``."""
        return self.key("beat")

    def metric(self, name: str) -> str:
        """Hash: one fleet-wide counter or histogram, a field per label set."""
        return self.key("metrics", name)

    def named_services(self) -> str:
        """Sorted set: the receivers shown by name in /metrics and /status (at most
        ``METRICS_MAX_SERVICES``), scored by their attempts when they were ranked."""
        return self.key("services", "named")

    def own_services(self) -> str:
        """Set: the services that are not receivers (always shown by name)."""
        return self.key("services", "own")

    def service_activity(self, period: int) -> str:
        """Sorted set, TTL 3 periods: delivery attempts per receiver in one ranking period."""
        return self.key("services", "activity", str(period))

    def services_ranked(self, period: int) -> str:
        """String, TTL 3 periods: set (``NX``) by the one process that ranks ``period``."""
        return self.key("services", "ranked", str(period))

    def named_applications(self) -> str:
        """Sorted set: the applications shown by name in /metrics (at most
        ``METRICS_MAX_APPLICATIONS``), scored by their deliveries when they were ranked."""
        return self.key("applications", "named")

    def application_activity(self, period: int) -> str:
        """Sorted set, TTL 3 periods: deliveries per application in one ranking period."""
        return self.key("applications", "activity", str(period))

    def applications_ranked(self, period: int) -> str:
        """String, TTL 3 periods: set (``NX``) by the one process that ranks ``period``."""
        return self.key("applications", "ranked", str(period))

    def history(self, service: str, minute: int) -> str:
        """Hash, TTL 65 min: one minute of one service (deliveries, failures, limit)."""
        return self.key("history", service, str(minute))

    def selftest(self, token: str) -> str:
        """String, TTL 5 min: host name of the worker that ran ``jenga.selftest``."""
        return self.key("selftest", token)

    def metrics_probe(self, token: str) -> str:
        """Set, TTL 5 min: processes that ran the ``jenga.metrics.probe`` smoke test."""
        return self.key("metrics_probe", token)

    # --- level 3: alarms (common/alarms) ----------------------------------------

    def alarms_active(self) -> str:
        """Set: the ids of the open alarms."""
        return self.key("alarms", "active")

    def alarm(self, alarm_id: str) -> str:
        """Hash: one open alarm (written only by ``common/alarms/policy.lua``)."""
        return self.key("alarm", alarm_id)

    def alarms_history(self) -> str:
        """Stream: set/clear events, trimmed to about ``ALARM_HISTORY_MAX``."""
        return self.key("alarms", "history")

    # --- level 4: circuit breakers (common/guards/breaker) ----------------------

    def breaker_index(self) -> str:
        """Sorted set: the name of every breaker whose keys exist -> when they expire
        unless used again (Redis time; ``+inf`` while forced open); trimmed by ``policy.lua``."""
        return self.key("breakers", "index")

    def legacy_breakers(self) -> str:
        """Set, no TTL: breaker names as earlier versions kept them; read only to list
        the breakers they left (pruned as their keys disappear), never written."""
        return self.key("breakers")

    def breaker(self, name: str) -> str:
        """Hash, TTL refreshed on use: one breaker's shared state (written only by
        ``policy.lua``)."""
        return self.key("breaker", name)

    def breaker_window(self, name: str) -> str:
        """Hash, TTL 2 windows: one breaker's sliding-window counts per bucket."""
        return self.key("breaker", name, "window")

    def breaker_leases(self, name: str) -> str:
        """Hash, TTL refreshed on use: one half-open breaker's trial calls in flight
        (lease id -> expiry)."""
        return self.key("breaker", name, "leases")

    def breaker_events(self) -> str:
        """Pub/sub channel: one message per breaker transition."""
        return self.key("breaker", "events")

    # --- level 4: adaptive concurrency limits (common/guards/limit) -------------

    def limit_index(self) -> str:
        """Sorted set: every service whose limit keys exist -> when they expire unless
        used again (Redis time); trimmed by ``aimd.lua``."""
        return self.key("limits", "index")

    def limit(self, service: str) -> str:
        """Hash, TTL refreshed on use: one service's AIMD limit and window counters."""
        return self.key("limit", service)

    def limit_leases(self, service: str) -> str:
        """Sorted set, TTL refreshed on use: one service's slots held by worker
        processes (slot id -> expiry)."""
        return self.key("limit", service, "leases")

    def limit_peaks(self, service: str) -> str:
        """Hash, TTL refreshed on use: process id -> most calls it had in flight
        during the open window."""
        return self.key("limit", service, "peaks")

    # --- API access (common/access) ---------------------------------------------

    def rate_limit(self, principal: str) -> str:
        """Hash, TTL: the time an empty bucket takes to fill + 60 s: one API key's request
        bucket (``tokens``, ``at``), named by the key's visible prefix (or ``admin token``),
        never the key; written only by ``common/access/ratelimit.lua``."""
        return self.key("ratelimit", principal)

    # --- level 5: promised rates (common/delivery/rate_slots.py) --------------------

    def delivery_rate(self, endpoint_id: str) -> str:
        """Hash, TTL: the time its deepest debt takes to fill + 60 s: one endpoint's send
        slots (``tokens``, negative while slots are reserved ahead, and ``at``); written
        only by ``common/delivery/rate_slots.lua``."""
        return self.key("rate", endpoint_id)
