"""Level 2: which services keep their own name in ``/metrics`` and on ``/status``.

Whoever may create endpoints can make receivers up (``webhook:h1.example`` …
``webhook:h10000.example``); a Prometheus series, a status-page chart and a
Redis field per receiver would grow without bound. So only the busiest
``METRICS_MAX_SERVICES`` receivers keep their name, and every other one is
counted under :data:`OTHER`. Services that are not receivers (``notify:slack``,
a ``GuardedTask``'s service, ``probe:*``) always keep theirs: the code names them,
so they are few; they are listed in a set for the readers (:func:`note_service`).

A receiver gets a name:

* at its first attempt while fewer than the limit are named
  (``named_services.lua``, atomic: racing processes never name more);
* at a ranking: the first process that records in a new period
  (:data:`RANKING_PERIOD_SECONDS`) names the receivers with the most attempts in
  this period and the last one; the others lose their name.

Each process caches the names for :data:`REFRESH_SECONDS`: a receiver ranked out
may be recorded under its name that long by a process that has not seen the new
ranking. Readers count such leftovers under ``other``, and the next ranking moves
them there in Redis (:class:`~common.health.fleet_metrics.FleetMetrics` applies a
ranking to its fields).

The same rule bounds a second label: ``application`` in the end-to-end latency, where
every application is ranked (:data:`APPLICATIONS`, ``METRICS_MAX_APPLICATIONS``). A
:class:`Roster` says which label a ranking bounds, which of its values are ranked,
and where its names live in Redis; :data:`SERVICES` is the receivers'.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import redis

from common.redis.keys import RedisKeys
from common.redis.scripts import read_lua

__all__ = [
    "APPLICATIONS",
    "OTHER",
    "RANKING_PERIOD_SECONDS",
    "RECEIVER_PREFIX",
    "REFRESH_SECONDS",
    "SERVICES",
    "Named",
    "NamedServices",
    "Ranking",
    "Roster",
    "admit",
    "is_receiver",
    "note_service",
    "rank",
    "read_named",
]

OTHER = "other"  # the label of every receiver without a name of its own
RANKING_PERIOD_SECONDS = 600
REFRESH_SECONDS = 10.0
# What common.guards.names.webhook_service puts before a host (level 4 builds the
# names; this level only reads them). A test keeps the two equal.
RECEIVER_PREFIX = "webhook:"
# admit(), applied atomically; KEYS, ARGV and the reply are described in the file.
_ADMIT_LUA = read_lua("common.health", "named_services.lua")


def is_receiver(service: str) -> bool:
    """Whether ``service`` is a customer's receiver (``webhook:<host>``): one of arbitrarily
    many, named only while it is among the busiest."""
    return service.startswith(RECEIVER_PREFIX)


def is_application(value: str) -> bool:
    """Every application is ranked (none is named by the code: any may be one of many);
    only the label ``other`` itself is not an application's."""
    return value != OTHER


@dataclass(frozen=True)
class Roster:
    """One label bounded by a ranking: its name in the metrics, which of its values are
    ranked (the others always keep their own), and the Redis keys of its names."""

    label: str
    ranked: Callable[[str], bool]
    named_key: Callable[[RedisKeys], str]
    activity_key: Callable[[RedisKeys, int], str]
    ranked_key: Callable[[RedisKeys, int], str]


SERVICES = Roster(
    "service",
    is_receiver,
    RedisKeys.named_services,
    RedisKeys.service_activity,
    RedisKeys.services_ranked,
)
APPLICATIONS = Roster(
    "application",
    is_application,
    RedisKeys.named_applications,
    RedisKeys.application_activity,
    RedisKeys.applications_ranked,
)


def admit(named: frozenset[str], service: str, most: int) -> tuple[bool, frozenset[str]]:
    """The rule of ``named_services.lua``: is ``service`` named, and the names after it."""
    if service in named:
        return True, named
    if len(named) < most:
        return True, named | {service}
    return False, named


def rank(
    tops: Iterable[Mapping[str, float]], most: int, named: frozenset[str] = frozenset()
) -> dict[str, float]:
    """The ``most`` receivers with the most attempts summed over ``tops`` (one mapping
    per period), busiest first. A tie goes to a receiver already ``named`` (a name is
    not taken away for an equal one), then to the name that sorts first."""
    totals: dict[str, float] = {}
    for top in tops:
        for service, attempts in top.items():
            totals[service] = totals.get(service, 0.0) + float(attempts)
    ordered = sorted(
        ((s, n) for s, n in totals.items() if n > 0),
        key=lambda item: (-item[1], item[0] not in named, item[0]),
    )
    return dict(ordered[:most])


def period_of(timestamp: float) -> int:
    return int(timestamp // RANKING_PERIOD_SECONDS)


@dataclass(frozen=True)
class Named:
    """The services shown by name: the named receivers (busiest first) and every
    service that is not a receiver."""

    receivers: tuple[str, ...]
    own: frozenset[str]
    ranked: Callable[[str], bool] = is_receiver  # the roster's (APPLICATIONS: every one)

    def label(self, service: str) -> str:
        """The label ``service`` is shown under: its own name, or :data:`OTHER`."""
        if not self.ranked(service) or service in self.receivers:
            return service
        return OTHER

    @property
    def services(self) -> list[str]:
        """Every service shown by name: the receivers busiest first, then the others sorted."""
        return [*self.receivers, *sorted(self.own - set(self.receivers))]


@dataclass(frozen=True)
class Ranking:
    """The named receivers before a ranking (``old``) and after it (``new``, with their
    attempts)."""

    period: int
    old: frozenset[str]
    new: Mapping[str, float]
    roster: Roster = SERVICES

    def fate(self, service: str) -> str:
        """What the ranking does to a field of ``service``: ``keep`` (its name stays, or
        is not a receiver's), ``drop`` (ranked out: its series ends) or ``fold`` (a
        leftover recorded under a name it had lost: added to ``other``)."""
        if not self.roster.ranked(service) or service in self.new:
            return "keep"
        return "drop" if service in self.old else "fold"


def note_service(client: redis.Redis, namespace: str, service: str) -> None:
    """List ``service`` among the services always shown by name, unless it is a receiver."""
    if not is_receiver(service):
        client.sadd(RedisKeys(namespace).own_services(), service)


def read_named(client: redis.Redis, namespace: str) -> Named:
    """The services shown by name now (two keys, bounded replies)."""
    keys = RedisKeys(namespace)
    pipe = client.pipeline(transaction=False)
    pipe.zrevrange(keys.named_services(), 0, -1)
    pipe.smembers(keys.own_services())
    receivers, own = pipe.execute()
    return Named(tuple(_text(s) for s in receivers), frozenset(_text(s) for s in own))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class NamedServices:
    """One process's view of the named receivers (or of another ``roster``'s names), for
    recording: labels from a cache refreshed every :data:`REFRESH_SECONDS`, admission
    while there is room, and the ranking of a new period when this process is the first
    to see it. Every method that reaches Redis may raise ``redis.RedisError``;
    :meth:`cached_label` never does."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        most: int = 50,
        clock: Callable[[], float] = time.time,
        roster: Roster = SERVICES,
    ):
        self.client = client
        self.keys = RedisKeys(namespace)
        self.most = most
        self.clock = clock
        self.roster = roster
        self._admit = client.register_script(_ADMIT_LUA)
        self._named: frozenset[str] = frozenset()
        self._full = False
        self._fetched_at: float | None = None

    def cached_label(self, service: str) -> str:
        """The label by what this process last read (no Redis)."""
        if not self.roster.ranked(service) or service in self._named:
            return service
        return OTHER

    def label(self, service: str) -> str:
        """The label to record ``service`` under; names it while there is room."""
        label = self.cached_label(service)
        if label != OTHER or self._full:
            return label
        allowed, count = self._admit(keys=[self._named_key()], args=[service, self.most])
        self._full = int(count) >= self.most
        if int(allowed):
            self._named = self._named | {service}
            return service
        return OTHER

    def note(self, pipe: redis.client.Pipeline, service: str) -> None:
        """Count one attempt of ``service`` for the ranking (in the caller's transaction)."""
        if self.roster.ranked(service):
            key = self.roster.activity_key(self.keys, period_of(self.clock()))
            pipe.zincrby(key, 1, service)
            pipe.expire(key, 3 * RANKING_PERIOD_SECONDS)
        else:
            pipe.sadd(self.keys.own_services(), service)

    def refresh(self) -> Ranking | None:
        """Read the names again if the cache is older than :data:`REFRESH_SECONDS`; the
        ranking to apply when this process is the first to see a new period."""
        now = self.clock()
        if self._fetched_at is not None and now - self._fetched_at < REFRESH_SECONDS:
            return None
        self._fetched_at = now
        period = period_of(now)
        pipe = self.client.pipeline(transaction=False)
        pipe.zrange(self._named_key(), 0, -1)
        ranked = self.roster.ranked_key(self.keys, period)
        pipe.set(ranked, "1", nx=True, ex=3 * RANKING_PERIOD_SECONDS)
        named, first = pipe.execute()
        self._adopt(frozenset(_text(s) for s in named))
        if not first:
            return None
        # The busiest of each period, and what the named ones did (they win a tie).
        current = sorted(self._named)
        pipe = self.client.pipeline(transaction=False)
        for p in (period - 1, period):
            key = self.roster.activity_key(self.keys, p)
            pipe.zrevrange(key, 0, self.most - 1, withscores=True)
            if current:
                pipe.zmscore(key, current)
        replies = iter(pipe.execute())
        tops = []
        for _ in (period - 1, period):
            top = {_text(s): float(n) for s, n in next(replies)}
            if current:
                scores = zip(current, next(replies), strict=True)
                top.update((s, float(n)) for s, n in scores if n)
            tops.append(top)
        return Ranking(period, self._named, rank(tops, self.most, self._named), self.roster)

    def write_ranking(self, pipe: redis.client.Pipeline, ranking: Ranking) -> None:
        """Replace the named receivers by ``ranking.new`` (in the caller's transaction)."""
        pipe.delete(self._named_key())
        if ranking.new:
            pipe.zadd(self._named_key(), dict(ranking.new))

    def adopted(self, ranking: Ranking) -> None:
        """``ranking`` was written: label by it from now on."""
        self._adopt(frozenset(ranking.new))

    def _named_key(self) -> str:
        return self.roster.named_key(self.keys)

    def _adopt(self, named: frozenset[str]) -> None:
        self._named = named
        self._full = len(named) >= self.most
