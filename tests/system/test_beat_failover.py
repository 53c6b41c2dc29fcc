"""One live beat, watched, with real beat and worker processes: of two beats only
one schedules; the standby takes over when the active one is killed, paused past
its lease or has its lease taken; with no beat at all the workers raise alarm
``beat`` once and clear it once when a beat runs again. Short leases and
intervals (settings) keep each test to seconds."""

from __future__ import annotations

import os
import signal
import tempfile
import time

import pytest
import redis

from common.health.beat_store import BeatStore
from common.redis.keys import RedisKeys
from tests.support.fake_slack import FakeSlack
from tests.support.servers import JengaProcess, jenga_env, wait_for

pytestmark = pytest.mark.slow

# A beat whose tick stalls longer than TTL - RENEW loses its lease (as it must): 2.5 s of
# slack, where 1.5 s flapped once in a CI run on an idle machine.
TTL, RENEW, INTERVAL = 3.0, 0.5, 0.5
# A standby takes over at most TTL + RENEW after the active beat's last renewal;
# generous on a loaded machine.
TAKEOVER_BOUND = 15.0
SENT = "Sending due task watchdog-postgres"


def beat_env(env: dict[str, str], name: str) -> dict[str, str]:
    return jenga_env(
        **{
            **env,
            "BEAT_NAME": name,
            "BEAT_LOCK_TTL_SECONDS": str(TTL),
            "BEAT_LOCK_RENEW_SECONDS": str(RENEW),
            "WATCHDOG_INTERVAL_SECONDS": str(INTERVAL),
            # DEBUG keeps beat's "Sending due task" lines, which the tests count.
            "LOG_LEVEL": "DEBUG",
        }
    )


def start_beat(env: dict[str, str], name: str) -> JengaProcess:
    return JengaProcess.celery(
        "beat", "--loglevel=DEBUG", env=beat_env(env, name), name=name
    ).start()


def sends(beat: JengaProcess) -> int:
    return beat.output().count(SENT)


@pytest.fixture
def beat_settings_env(broker_env):
    return {**broker_env, "HEARTBEAT_DIR": tempfile.mkdtemp(prefix="jenga-beat-hb-")}


def active_name(store: BeatStore) -> str | None:
    record = store.read()
    return record.active.split(":", 1)[0] if record and record.active else None


def test_of_two_beats_one_schedules_and_the_standby_takes_over_when_it_is_killed(
    beat_settings_env, redis_client, namespace
):
    store = BeatStore(redis_client, namespace)
    beats = {name: start_beat(beat_settings_env, name) for name in ("beat1", "beat2")}
    try:
        first = wait_for(lambda: active_name(store), 30, what="an active beat")
        other = "beat2" if first == "beat1" else "beat1"
        wait_for(lambda: sends(beats[first]) >= 6, 30, what="the active beat's sends")
        assert sends(beats[other]) == 0
        assert "beat.standby" in beats[other].output()

        killed_redis_time = float(redis_client.time()[0])
        killed_at = time.monotonic()
        beats[first].kill()
        wait_for(lambda: sends(beats[other]) >= 1, TAKEOVER_BOUND, interval=0.02, what="takeover")
        took = time.monotonic() - killed_at
        assert took <= TTL + RENEW + 5, took  # a bound of TTL + RENEW, and the machine's slack
        assert active_name(store) == other
        record = store.read()
        assert record.token == 2  # one grant each
        wait_for(lambda: store.read().watchdogs_at > killed_redis_time, 10, what="its stamp")
    finally:
        for beat in beats.values():
            beat.stop()


def test_a_beat_paused_past_its_lease_stops_scheduling_when_it_wakes(
    beat_settings_env, redis_client, namespace
):
    store = BeatStore(redis_client, namespace)
    beat1 = start_beat(beat_settings_env, "beat1")
    beat2 = None
    try:
        wait_for(lambda: active_name(store) == "beat1", 30, what="beat1 active")
        beat2 = start_beat(beat_settings_env, "beat2")
        wait_for(lambda: "beat.standby" in beat2.output(), 30, what="beat2 standby")
        os.killpg(beat1.proc.pid, signal.SIGSTOP)  # a long GC pause, a frozen VM
        try:
            wait_for(lambda: active_name(store) == "beat2", TAKEOVER_BOUND, what="takeover")
            wait_for(lambda: sends(beat2) >= 2, 10, what="beat2 sends")
            before = sends(beat1)
        finally:
            os.killpg(beat1.proc.pid, signal.SIGCONT)
        beat1.wait_for_output("beat.standby", 10)  # it claims first, and is refused
        target = sends(beat2) + 4
        wait_for(lambda: sends(beat2) >= target, 10, what="beat2 sending on")
        assert sends(beat1) == before
        assert active_name(store) == "beat2"
    finally:
        beat1.stop()
        if beat2 is not None:
            beat2.stop()


def test_a_beat_whose_lease_is_taken_stops_within_a_renewal(
    beat_settings_env, redis_client, namespace
):
    store = BeatStore(redis_client, namespace)
    beat = start_beat(beat_settings_env, "beat1")
    try:
        wait_for(lambda: active_name(store) == "beat1", 30, what="beat1 active")
        # Another holder with the next token, as after a partition that outlived the lease.
        key = RedisKeys(namespace).beat()
        holder, token = redis_client.hget(key, "holder"), int(redis_client.hget(key, "token"))
        expires = float(redis_client.time()[0]) + 60
        redis_client.hset(key, mapping={"holder": "intruder", "token": token + 1})
        redis_client.hset(key, "expires_at", expires)
        beat.wait_for_output("beat.standby", 10)
        stopped = sends(beat)
        time.sleep(4 * INTERVAL)  # long enough for several more sends, were it still sending
        assert sends(beat) == stopped
        assert not store.record(holder, token, ["x"], watchdogs=True)  # fenced out
        assert redis_client.hget(key, "holder") == "intruder"
    finally:
        beat.stop()


def worker(env: dict[str, str], name: str) -> JengaProcess:
    ns = env["JENGA_NAMESPACE"]
    return JengaProcess.celery(
        "worker",
        "-P",
        "threads",
        "-c",
        "2",
        "-Q",
        f"{ns}.alarms",
        "--without-mingle",
        "--without-gossip",
        "--loglevel=INFO",
        "-n",
        f"{name}-{ns}@%h",
        env=jenga_env(**env),
        name=name,
    )


def beat_texts(slack: FakeSlack, kind: str) -> list[str]:
    marker = "ALARM SET" if kind == "set" else "ALARM CLEARED"
    return [t for t in slack.texts() if marker in t and " beat - " in t]


def test_no_beat_raises_the_beat_alarm_once_and_a_new_beat_clears_it_once(
    beat_settings_env, redis_client, namespace, slack
):
    env = {
        **beat_settings_env,
        "SLACK_WEBHOOK_URL": slack.url,
        "WATCHDOG_INTERVAL_SECONDS": str(INTERVAL),
        "HEARTBEAT_INTERVAL_SECONDS": "0.2",
        "ALARM_CLEAR_AFTER": "3",
        # The watchers' grace is the fleet's takeover time (the beats' lease settings).
        "BEAT_LOCK_TTL_SECONDS": str(TTL),
        "BEAT_LOCK_RENEW_SECONDS": str(RENEW),
    }
    workers = [worker(env, f"w{i}") for i in (1, 2)]  # two watchers
    beat = None
    try:
        for process in workers:
            process.start()
        beat = start_beat(env, "beat1")
        for process in workers:
            process.wait_for_output("ready.", timeout=60)
        wait_for(lambda: sends(beat) >= 4, 30, what="beat sends")
        assert beat_texts(slack, "set") == []

        beat.kill()
        wait_for(lambda: beat_texts(slack, "set"), 30, what="the beat alarm")
        open_alarm = redis_client.hgetall(RedisKeys(namespace).alarm("beat"))
        assert open_alarm["severity"] == "critical"

        beat = start_beat(env, "beat2")
        wait_for(lambda: beat_texts(slack, "clear"), 30, what="the clear")
        time.sleep(1.0)  # many more checks by both watchers: nothing more may be said
        assert len(beat_texts(slack, "set")) == 1
        assert len(beat_texts(slack, "clear")) == 1
        assert not redis_client.sismember(RedisKeys(namespace).alarms_active(), "beat")
    finally:
        if beat is not None:
            beat.stop()
        for process in workers:
            process.stop()
    for process in workers:
        assert "Traceback" not in process.output()


def test_beat_starts_without_redis_and_takes_the_lease_when_redis_arrives(
    settings_env, redis_server, redis_url, broker, namespace
):
    env = {
        **broker.env(settings_env),
        "REDIS_URL": redis_server.url,
        "BROKER_URL": broker.url or redis_url,
        "HEARTBEAT_DIR": tempfile.mkdtemp(prefix="jenga-beat-hb-"),
    }
    redis_server.stop()
    beat = start_beat(env, "beat1")
    try:
        beat.wait_for_output("beat.orphan", 30)
        # Orphaned, it still sends the watchdog that tells about Redis, and nothing else.
        wait_for(lambda: "Sending due task watchdog-redis" in beat.output(), 30, what="redis wd")
        assert sends(beat) == 0
        redis_server.start()
        beat.wait_for_output("beat.active", 30)
        wait_for(lambda: sends(beat) >= 1, 10, what="a send after Redis arrived")
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        assert BeatStore(client, namespace).read().active.startswith("beat1:")
        client.close()
    finally:
        beat.stop()
    assert beat.proc.returncode == 0, beat.output()[-3000:]
