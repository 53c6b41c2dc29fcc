"""Celery beat's scheduler: any number of beats run, the one holding the lease schedules.

Before each tick the scheduler claims the beat lease in Redis
(:class:`~common.health.beat_store.BeatStore`, at most every
``BEAT_LOCK_RENEW_SECONDS``): granted, it is the *active* beat until
``BEAT_LOCK_TTL_SECONDS`` (less a margin for clock drift) after it *sent* the claim,
so it stops before Redis can give the lease to anyone else; refused, it is a
*standby* and sends nothing, leaving every entry due so that it runs them all at
once when it takes over; Redis unreachable, it keeps what is left of its lease and
then, *orphaned*, sends only the watchdogs of Redis and the broker
(:data:`worker.schedule.WITHOUT_LEASE`). Each send is checked against the lease
again, so a tick that outlives the lease sends nothing more.

Renewal happens in the scheduling loop itself, not a thread of its own: a beat
whose loop is stuck (a publish that never returns) stops renewing and loses the
lease to a standby, instead of holding it forever.

The active beat stamps each entry it sends in the lease's hash (fenced by its
token: a beat that lost the lease cannot overwrite its successor's heartbeat);
the workers alarm from that (:mod:`common.alarms.beat_alarm`). Every beat writes a
heartbeat file for ``jenga beat health`` (:mod:`common.health.beat_probe`). The
watchdogs marked :data:`~worker.schedule.IN_BEAT` run in a thread of this process.

The schedule itself is kept in memory: every entry is an interval whose missed
runs expire, so a beat that starts (or takes over) runs everything at once, and
beats on one host share no schedule file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time

import redis
from celery.beat import Scheduler

from common.broker import WATCHDOG_TASK
from common.config import get_settings
from common.connections.probes import describe_error
from common.health.beat_probe import beat_name, probe_payload
from common.health.beat_store import BeatStore
from common.health.heartbeat import remove_heartbeat_file, write_heartbeat_file
from common.redis.client import redis_for
from common.support.logs import log_event
from worker.schedule import IN_BEAT, WITHOUT_LEASE

__all__ = ["FencedScheduler"]

log = logging.getLogger("jenga.beat")
watchdog_log = logging.getLogger("jenga.watchdog")

# A lease is trusted for this share of its TTL less, in case this host's clock runs
# faster than Redis's.
CLOCK_DRIFT = 0.05
# Tells apart two processes that had the same pid (a restart), one per process.
PROCESS_TAG = secrets.token_hex(3)
ACTIVE, STANDBY, ORPHAN, STARTING = "active", "standby", "orphan", "starting"


class FencedScheduler(Scheduler):
    def __init__(self, *args, **kwargs):
        self.jenga = get_settings()
        self.name = beat_name(self.jenga)
        self.holder = f"{self.name}:{os.getpid()}:{PROCESS_TAG}"
        self.store = BeatStore(redis_for(self.jenga), self.jenga.jenga_namespace)
        self.token = 0
        self.valid_until = 0.0  # monotonic: when this beat must stop trusting its lease
        self.next_claim = 0.0
        self.refused_by: str | None = None  # the holder seen by our last refused claim
        self.lock_error: str | None = None
        self.role = STARTING
        self._in_beat: dict[str, threading.Thread] = {}
        super().__init__(*args, **kwargs)
        # Wake up at least once per renewal, so that the lease is renewed (or taken) in time.
        self.max_interval = min(self.max_interval, self.jenga.beat_lock_renew_seconds)

    # --- the lease ---------------------------------------------------------------

    def setup_schedule(self):
        super().setup_schedule()
        in_beat = [e.args[0] for e in self.schedule.values() if e.options.get(IN_BEAT)]
        log_event(watchdog_log, "watchdog.beat_started", alarm_ids=",".join(in_beat))

    def current_role(self, now: float) -> str:
        if now < self.valid_until:
            return ACTIVE
        if self.lock_error is not None:
            return ORPHAN
        return STANDBY if self.refused_by is not None else STARTING

    def claim(self) -> None:
        """One claim (or renewal) of the lease; never raises for Redis."""
        settings = self.jenga
        sent = time.monotonic()
        self.next_claim = sent + settings.beat_lock_renew_seconds
        try:
            reply = self.store.claim(self.holder, self.token, settings.beat_lock_ttl_seconds)
        except (redis.RedisError, OSError) as error:
            self.lock_error = describe_error(error)
        else:
            self.lock_error = None
            if reply.granted:
                if reply.token != self.token:
                    self._all_due()
                self.token, self.refused_by = reply.token, None
                self.valid_until = sent + settings.beat_lock_ttl_seconds * (1 - CLOCK_DRIFT)
            else:
                self.token, self.valid_until, self.refused_by = 0, 0.0, reply.holder
        self._role_changed(time.monotonic())
        self._write_probe_file()

    def _all_due(self) -> None:
        """A new lease: every entry is due now, whenever this beat started (a standby
        that takes over a second after its own start must not wait an interval)."""
        for entry in self.schedule.values():
            every = getattr(entry.schedule, "run_every", None)  # a crontab has none
            if every is not None:
                entry.last_run_at = entry.default_now() - every
        self._heap = None  # rebuilt at the next tick

    def _role_changed(self, now: float) -> None:
        role = self.current_role(now)
        if role == self.role:
            return
        previous, self.role = self.role, role
        fields = {"holder": self.holder, "previous": previous}
        if role == ACTIVE:
            log_event(log, "beat.active", token=self.token, **fields)
        elif role == STANDBY:
            level = logging.WARNING if previous == ACTIVE else logging.INFO
            log_event(log, "beat.standby", level=level, active=self.refused_by, **fields)
        elif role == ORPHAN:
            log_event(
                log,
                "beat.orphan",
                level=logging.WARNING,
                error=self.lock_error,
                sending=",".join(sorted(WITHOUT_LEASE)),
                **fields,
            )

    def _write_probe_file(self) -> None:
        payload = probe_payload(self, time.time())
        try:
            write_heartbeat_file(self.jenga.heartbeat_dir, self.name, payload)
        except OSError as error:
            log_event(log, "beat.probe_file_failed", level=logging.WARNING, error=str(error))

    # --- ticking -----------------------------------------------------------------

    def tick(self, *args, **kwargs):
        if time.monotonic() >= self.next_claim:
            self.claim()
        else:
            self._role_changed(time.monotonic())
        if self.role == STANDBY or self.role == STARTING:
            # Sends nothing and leaves every entry due: a takeover runs them all at once.
            return max(0.0, self.next_claim - time.monotonic())
        delay = super().tick(*args, **kwargs)
        return min(delay, max(0.0, self.next_claim - time.monotonic()))

    def may_send(self, entry_name: str, now: float) -> bool:
        if now < self.valid_until:
            return True
        return self.lock_error is not None and entry_name in WITHOUT_LEASE

    def apply_entry(self, entry, producer=None):
        now = time.monotonic()
        if not self.may_send(entry.name, now):
            # The lease ran out during this tick: the next claim decides.
            log_event(log, "beat.skipped", level=logging.DEBUG, entry=entry.name)
            return
        if entry.options.get(IN_BEAT):
            self._run_in_beat(entry)
        else:
            super().apply_entry(entry, producer=producer)
        if now < self.valid_until:
            self._record(entry)

    def _record(self, entry) -> None:
        try:
            self.store.record(
                self.holder, self.token, [entry.name], watchdogs=entry.task == WATCHDOG_TASK
            )
        except (redis.RedisError, OSError) as error:
            log_event(log, "beat.record_failed", level=logging.DEBUG, error=describe_error(error))

    def _run_in_beat(self, entry) -> None:
        """A watchdog that needs no broker, in a thread (it may wait for a check's
        timeout); skipped while its previous run is still going."""
        running = self._in_beat.get(entry.name)
        if running is not None and running.is_alive():
            return
        from worker.tasks.watchdogs import run_watchdog_safely

        thread = threading.Thread(
            target=run_watchdog_safely,
            args=(entry.args[0], self.jenga),
            name=f"jenga-beat-{entry.name}",
            daemon=True,
        )
        self._in_beat[entry.name] = thread
        thread.start()

    def close(self):
        self._bound_broker_close()
        try:
            super().close()
        finally:
            if time.monotonic() < self.valid_until:
                try:
                    self.store.release(self.holder, self.token)
                    log_event(log, "beat.released", holder=self.holder, token=self.token)
                except (redis.RedisError, OSError) as error:
                    log_event(
                        log,
                        "beat.release_failed",
                        level=logging.WARNING,
                        error=describe_error(error),
                    )
                self.valid_until = 0.0
            remove_heartbeat_file(self.jenga.heartbeat_dir, self.name)

    def _bound_broker_close(self) -> None:
        """Celery's ``Scheduler.close`` releases its publishing connection, and an AMQP
        release waits for the broker's Close-Ok with no time limit: a broker that stopped
        answering held a SIGTERM'd beat, and its lease, for ever. The connection's socket
        gets ``CHECK_TIMEOUT_SECONDS`` for that answer (Celery swallows the timeout). Only
        an open connection: the cache is read, never filled (that would connect)."""
        connection = self.__dict__.get("connection")
        transport_connection = getattr(connection, "_connection", None)
        sock = getattr(transport_connection, "sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.settimeout(self.jenga.check_timeout_seconds)

    @property
    def info(self):
        return (
            f"       . lease -> {self.store.key} as {self.holder} (TTL"
            f" {self.jenga.beat_lock_ttl_seconds}s, renewed every"
            f" {self.jenga.beat_lock_renew_seconds}s)"
        )
