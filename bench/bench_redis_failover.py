"""Redis failover under a running stack: what a Sentinel failover costs the API,
the breakers and deliveries.

A throwaway Sentinel group (primary, replica, three Sentinels; down-after 1 s,
tests.support.sentinel) is ``REDIS_URL``, and the broker (``redis``: the same
group; ``amqp``: the local RabbitMQ). The API, one worker (threads, 4) and beat
run as processes; messages are posted every 20 ms, for ``--seconds`` before the
failover (the baseline, same run) and ``--seconds`` after it. Per round:

* accept gap: the longest time between two accepted (202) POSTs, and the
  slowest POST, before and after the failover; refused POSTs (anything not 202);
* delivery gap: the longest time between two first deliveries at the receiver,
  and the largest post-to-delivery latency, before and after; messages never
  delivered within ``--settle`` s (lost);
* breaker reconvergence (in this process, two registries on the group): the
  longest time a registry ran per process (fallback), and the time from the
  failover to a trip made by one registry being seen by the other (baseline:
  the same trip before the failover).

Failover modes: ``failover`` (``SENTINEL FAILOVER``: the old primary is demoted
later), ``kill`` (SIGKILL the primary).

    .venv/bin/python -m bench.bench_redis_failover [--mode both] [--broker both] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from contextlib import ExitStack

import httpx

from common.guards.breaker import policy as bp
from common.guards.breaker.registry import BreakerRegistry
from common.redis.client import make_redis
from tests.support.brokers import RABBITMQ_URL, Broker
from tests.support.receiver import WebhookReceiver
from tests.support.sentinel import SentinelGroup
from tests.support.stack import (
    AUTH,
    create_endpoint,
    fresh_database,
    stack_env,
    start_api,
    start_beat,
    start_worker,
)

POST_INTERVAL = 0.02


def gaps(times: list[float]) -> float:
    ordered = sorted(times)
    return max((b - a for a, b in zip(ordered, ordered[1:], strict=False)), default=0.0)


class Poster(threading.Thread):
    """POSTs a message every POST_INTERVAL s: (sent_at, answered_at, status, id)."""

    def __init__(self, base_url: str, endpoint_id: str):
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base_url, timeout=15)
        self.endpoint_id = endpoint_id
        self.posts: list[tuple[float, float, int, str | None]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        body = {"endpoint_id": self.endpoint_id, "event_type": "bench", "payload": {}}
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                response = self.client.post("/v1/messages", json=body, headers=AUTH)
                status = response.status_code
                message_id = response.json().get("id") if status == 202 else None
            except httpx.HTTPError:
                status, message_id = 0, None
            self.posts.append((sent, time.monotonic(), status, message_id))
            self.stop.wait(POST_INTERVAL)


def breaker_reconvergence(group: SentinelGroup, namespace: str, fail) -> dict[str, float]:
    """Seconds the registries ran per process (fallback), and from ``fail()`` to a trip
    made by one registry being seen by the other (baseline: the same before ``fail``)."""
    policy = bp.BreakerPolicy(failure_threshold=3, failure_rate=0, open_seconds=30)
    clients = [make_redis(group.url(), timeout=0.5) for _ in range(2)]
    events: list[tuple[float, int, bool]] = []  # (time, registry, fallback on)

    def listener(index: int):
        return lambda on, error: events.append((time.monotonic(), index, on))

    tripping = BreakerRegistry(
        clients[0], namespace, policy, refresh_seconds=2.0, on_fallback=listener(0)
    ).start()
    watching = BreakerRegistry(
        clients[1], namespace, policy, refresh_seconds=2.0, on_fallback=listener(1)
    ).start()
    try:

        def trip(name: str) -> float:
            started = time.monotonic()
            watcher = watching.breaker(name)
            tripper = tripping.breaker(name)
            while watcher.admit().allowed:
                if time.monotonic() - started > 60:
                    raise RuntimeError("the trip never reached the other registry")
                for _ in range(3):
                    tripper.record(True)
                time.sleep(0.01)
            return time.monotonic() - started

        baseline = trip("before")
        stop = threading.Event()

        def use() -> None:  # both processes keep calling through the failover
            while not stop.is_set():
                for registry in (tripping, watching):
                    breaker = registry.breaker("busy")
                    if breaker.admit().allowed:
                        breaker.record(False)
                time.sleep(0.01)

        user = threading.Thread(target=use, daemon=True)
        user.start()
        started = time.monotonic()
        fail()
        trip("after")
        seen = time.monotonic() - started
        time.sleep(2.5)  # a refresh period: a late fallback would show
        stop.set()
        user.join(5)
        fallback = 0.0
        for index in (0, 1):
            opened = None
            for at, who, on in events:
                if who != index:
                    continue
                if on and opened is None:
                    opened = at
                elif not on and opened is not None:
                    fallback = max(fallback, at - opened)
                    opened = None
        return {"baseline_trip": baseline, "fallback_seconds": fallback, "trip_seen": seen}
    finally:
        tripping.close()
        watching.close()
        for client in clients:
            client.close()


def one_round(broker: str, mode: str, seconds: float, settle: float) -> dict[str, float]:
    with ExitStack() as stack, WebhookReceiver() as receiver, SentinelGroup() as group:
        arrivals: dict[str, float] = {}

        def respond(seen) -> int:
            arrivals.setdefault(seen.webhook_id, time.monotonic())
            return 200

        receiver.respond = respond
        database_url = stack.enter_context(fresh_database())
        namespace = f"bf{int(time.time() * 1000) % 10**8}"
        settings = {"REDIS_URL": group.url(), "JENGA_NAMESPACE": namespace}
        if broker == "amqp":
            settings["BROKER_URL"] = RABBITMQ_URL
            stack.callback(Broker("rabbitmq", RABBITMQ_URL).delete_queues, namespace)
        env = stack_env(settings, database_url, DELIVERY_REDISPATCH_SECONDS="30")
        client = start_api(stack, env)
        start_worker(stack, env)
        start_beat(stack, env)
        endpoint = create_endpoint(client, receiver)
        fail = group.failover if mode == "failover" else group.kill_primary

        poster = Poster(str(client.base_url), endpoint["id"])
        poster.start()
        time.sleep(seconds)
        failed_at = time.monotonic()
        breakers = breaker_reconvergence(group, namespace, fail)
        time.sleep(seconds)
        poster.stop.set()
        poster.join(20)

        ids = {message_id for *_, message_id in poster.posts if message_id}
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline and not ids <= set(arrivals):
            time.sleep(0.2)
        accepted = [(sent, answered, i) for sent, answered, status, i in poster.posts if i]
        before = [a for a in accepted if a[1] < failed_at]
        after = [a for a in accepted if a[0] >= failed_at]
        latency = {i: arrivals[i] - sent for sent, _, i in accepted if i in arrivals}
        return {
            "refused": sum(1 for *_, status, _ in poster.posts if status != 202),
            "accept_gap_before": gaps([answered for _, answered, _ in before]),
            "accept_gap_after": gaps([answered for _, answered, _ in after]),
            "slowest_post_before": max(answered - sent for sent, answered, _ in before),
            "slowest_post_after": max(answered - sent for sent, answered, _ in after),
            "delivery_gap_before": gaps([arrivals[i] for *_, i in before if i in arrivals]),
            "delivery_gap_after": gaps([arrivals[i] for *_, i in after if i in arrivals]),
            "latency_max_before": max(latency[i] for *_, i in before if i in latency),
            "latency_max_after": max(latency[i] for *_, i in after if i in latency),
            "lost": len(ids - set(arrivals)),
            "messages": len(ids),
            **breakers,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["failover", "kill", "both"], default="both")
    parser.add_argument("--broker", choices=["redis", "amqp", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--settle", type=float, default=60.0)
    args = parser.parse_args()
    modes = ["failover", "kill"] if args.mode == "both" else [args.mode]
    brokers = ["redis", "amqp"] if args.broker == "both" else [args.broker]
    for broker in brokers:
        for mode in modes:
            rounds = [
                one_round(broker, mode, args.seconds, args.settle) for _ in range(args.rounds)
            ]
            print(f"\n== broker={broker} failover={mode} rounds={args.rounds}")
            for key in rounds[0]:
                values = [r[key] for r in rounds]
                median = statistics.median(values)
                print(f"{key:22} median {median:8.3f}  max {max(values):8.3f}  all {values}")


if __name__ == "__main__":
    main()
