"""The end-to-end latency's ``application`` label is bounded (pure rules): every
application is ranked (none keeps its name for being one the code names), the unnamed
ones are shown under ``other`` with their buckets added up, and the span is measured
on one clock per part (worker/delivery/end_to_end.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.samples import Sample

from common.health.fleet_collector import families
from common.health.metric_specs import END_TO_END, END_TO_END_BUCKETS, bucket_for, label_field
from common.health.named_services import APPLICATIONS, OTHER, SERVICES, Named, Ranking, rank
from worker.delivery.end_to_end import end_to_end_seconds


def test_every_application_is_ranked_unlike_services_the_code_names():
    named = Named(("app_a",), frozenset(), APPLICATIONS.ranked)
    assert named.label("app_a") == "app_a"
    assert named.label("app_b") == OTHER
    assert named.label("notify:slack") == OTHER  # an app id that looks like a service: ranked
    assert named.label(OTHER) == OTHER and not APPLICATIONS.ranked(OTHER)  # never folded away
    assert Named((), frozenset()).label("notify:slack") == "notify:slack"  # services: own
    assert SERVICES.ranked("webhook:h.example") and not SERVICES.ranked("notify:slack")


def test_a_ranking_of_applications_drops_the_ranked_out_and_folds_leftovers():
    ranking = Ranking(1, frozenset({"app_a", "app_b"}), {"app_b": 9.0, "app_c": 7.0}, APPLICATIONS)
    assert [ranking.fate(app) for app in ("app_b", "app_a", "app_z")] == ["keep", "drop", "fold"]
    assert ranking.fate(OTHER) == "keep"  # what other holds stays there
    tops = [{"app_a": 1, "app_b": 4}, {"app_c": 7, "app_b": 5}]
    assert rank(tops, 2) == {"app_b": 9.0, "app_c": 7.0}


def test_unnamed_applications_are_exposed_under_other_with_their_buckets_added():
    def fields(app: str, bound: float, n: int) -> dict[str, str]:
        field = label_field(END_TO_END, {"application": app})
        return {f"{field}|le={bound!r}": str(n), f"{field}|sum": str(n), f"{field}|count": str(n)}

    raw = {**fields("app_a", 0.5, 2), **fields("app_b", 0.5, 1), **fields("app_c", 60.0, 3)}
    family = families(
        END_TO_END, raw, {"application": Named(("app_a",), frozenset(), APPLICATIONS.ranked)}
    )
    counts = {s.labels["application"]: s.value for s in family.samples if s.name.endswith("_count")}
    assert counts == {"app_a": 2.0, OTHER: 4.0}
    bucket = "jenga_delivery_end_to_end_seconds_bucket"
    assert Sample(bucket, {"application": OTHER, "le": "0.5"}, 1.0) in family.samples
    assert Sample(bucket, {"application": OTHER, "le": "60.0"}, 4.0) in family.samples


def test_the_buckets_cover_a_tenth_of_a_second_to_a_day():
    assert list(END_TO_END_BUCKETS) == sorted(END_TO_END_BUCKETS)
    assert END_TO_END_BUCKETS[0] == 0.1 and END_TO_END_BUCKETS[-1] == 86400.0
    assert bucket_for(END_TO_END_BUCKETS, 0.05) == 0.1
    assert bucket_for(END_TO_END_BUCKETS, 5.2) == 10.0  # a retry after 5 s
    assert bucket_for(END_TO_END_BUCKETS, 2 * 86400) is None  # +Inf only


def test_end_to_end_adds_the_age_at_claim_on_the_database_clock_to_the_worker_span():
    created = datetime(2024, 1, 1, tzinfo=UTC)
    claimed = created + timedelta(seconds=300)
    # The worker's monotonic clock has any origin: only its difference counts.
    assert end_to_end_seconds(created, claimed, 1_000.0, 1_000.25) == 300.25
    assert end_to_end_seconds(None, claimed, 0.0, 1.0) is None
    assert end_to_end_seconds(created, None, 0.0, 1.0) is None
    # Never negative (a created_at stamped after the claim cannot happen, but never below 0).
    assert end_to_end_seconds(claimed, created, 5.0, 5.0) == 0.0
