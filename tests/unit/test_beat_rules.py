"""The pure rules around beat: the lease, the watchers' verdict and the probe's."""

from common.health.beat_lock import Lease, claim, may_write, release
from common.health.beat_probe import EXIT_DEAD, EXIT_OK, EXIT_STANDBY, probe_verdict
from common.health.beat_store import BeatRecord
from common.health.beat_watch import BeatWatch, observe, stale_after


def test_a_lease_is_renewed_by_its_holder_only_and_taken_once_expired():
    lease, granted = claim(Lease(), "a", 0, now=100, ttl=10)
    assert granted and lease == Lease("a", 1, 110)
    assert claim(lease, "b", 0, now=105, ttl=10) == (lease, False)
    assert claim(lease, "a", 0, now=105, ttl=10) == (lease, False)  # a's token is 1
    assert claim(lease, "a", 1, now=105, ttl=10) == (Lease("a", 1, 115), True)
    # Expired: whoever claims first gets the next token, the old holder included.
    assert claim(lease, "a", 1, now=110, ttl=10) == (Lease("a", 2, 120), True)
    assert claim(lease, "b", 0, now=110, ttl=10) == (Lease("b", 2, 120), True)


def test_only_the_holder_releases_and_writes():
    lease = Lease("a", 3, 110)
    assert may_write(lease, "a", 3, 109) and not may_write(lease, "a", 3, 110)
    assert not may_write(lease, "a", 2, 100) and not may_write(lease, "b", 3, 100)
    assert release(lease, "b", 3, 100) == (lease, False)
    released, ok = release(lease, "a", 3, 100)
    assert ok and not released.held(100) and released.token == 3
    assert claim(released, "b", 0, now=100, ttl=5) == (Lease("b", 4, 105), True)


def record(now, watchdogs_at=None):
    return BeatRecord(now=now, holder="a", token=1, expires_at=now + 5, watchdogs_at=watchdogs_at)


def test_the_watchers_verdict():
    watch = BeatWatch()
    watch, verdict = observe(watch, record(1000, 999), True, local_now=0, limit=3)
    assert verdict.kind == "ok" and watch.watching_since == 0
    # Stale by Redis's clock, watched long enough: stale at once.
    watch, verdict = observe(watch, record(1010, 999), True, local_now=10, limit=3)
    assert verdict.kind == "stale" and verdict.age == 11
    # A failed read forgets; the next reads must watch three intervals again.
    watch, verdict = observe(watch, None, False, local_now=11, limit=3)
    assert verdict.kind == "unknown" and watch.watching_since is None
    watch, verdict = observe(watch, record(1012, 999), True, local_now=12, limit=3)
    assert verdict.kind == "unknown"
    watch, verdict = observe(watch, record(1015, 999), True, local_now=15, limit=3)
    assert verdict.kind == "stale"
    # No beat ever: stale too, after watching.
    _, verdict = observe(BeatWatch(0), None, True, local_now=3.5, limit=3)
    assert verdict.kind == "stale" and "no beat has ever run" in verdict.reason
    # A longer limit (an interval and a standby's takeover) is watched out too.
    _, verdict = observe(BeatWatch(0), None, True, local_now=3.5, limit=5)
    assert verdict.kind == "unknown"


def test_a_takeover_never_looks_like_a_dead_beat():
    assert stale_after(10, 10, 3) == 30  # the defaults: three intervals
    assert stale_after(1, 2, 0.5) == 4  # an interval, the takeover and a renewal, if longer


def test_the_probe_verdict():
    assert probe_verdict(None, 100, 1).exit_code == EXIT_DEAD
    assert probe_verdict({"time": "x"}, 100, 1).exit_code == EXIT_DEAD
    assert probe_verdict({"time": 96, "role": "active"}, 100, 1).exit_code == EXIT_DEAD
    active = {"time": 99, "role": "active", "token": 4}
    assert probe_verdict(active, 100, 1, active_only=True).exit_code == EXIT_OK
    standby = {"time": 99, "role": "standby", "active": "beat@b:1:x"}
    assert probe_verdict(standby, 100, 1).exit_code == EXIT_OK
    verdict = probe_verdict(standby, 100, 1, active_only=True)
    assert verdict.exit_code == EXIT_STANDBY and "beat@b:1:x is active" in verdict.reason
    orphan = {"time": 99, "role": "orphan", "lock_error": "refused"}
    assert "Redis unreachable (refused)" in probe_verdict(orphan, 100, 1).reason
