"""FencedScheduler in this process against the real Redis (no broker is touched): a
beat that gets a new lease makes every entry due at once; a standby sends nothing."""

from common.config import load_settings, set_settings
from common.health.beat_store import BeatStore


def test_a_new_lease_makes_every_entry_due_and_a_standby_does_not_tick(
    settings_env, redis_client, namespace, tmp_path
):
    settings = load_settings(
        {**settings_env, "HEARTBEAT_DIR": str(tmp_path), "BEAT_LOCK_TTL_SECONDS": "30"},
        wait_seconds=0,
    )
    set_settings(settings)
    from worker.app import app
    from worker.beat_scheduler import FencedScheduler

    active, standby = FencedScheduler(app=app), FencedScheduler(app=app)
    try:
        for scheduler in (active, standby):
            for entry in scheduler.schedule.values():
                entry.last_run_at = entry.default_now()  # just ran: nothing due
        assert not any(active.is_due(e)[0] for e in active.schedule.values())

        active.claim()
        assert active.role == "active" and active.token == 1
        assert all(active.is_due(e)[0] for e in active.schedule.values())
        assert BeatStore(redis_client, namespace).read().active == active.holder

        standby.holder += "-standby"  # the same process: tell the two apart
        delay = standby.tick()
        assert standby.role == "standby" and standby.refused_by == active.holder
        assert 0 <= delay <= settings.beat_lock_renew_seconds
        assert "producer" not in standby.__dict__  # never connected to the broker
        assert (tmp_path / f"{standby.name}.json").exists()
    finally:
        standby.close()
        active.close()
    assert BeatStore(redis_client, namespace).read().active == ""  # released on close
