"""One Retry-After parser for every external service."""

from hypothesis import given
from hypothesis import strategies as st

from common.support.retry_after import retry_after_seconds

NOW = 1_700_000_000.0


def test_delta_seconds_and_http_dates():
    assert retry_after_seconds("120", NOW, 3600) == 120
    assert retry_after_seconds("1.5", NOW, 3600) == 1.5
    assert (
        retry_after_seconds("Tue, 14 Nov 2023 22:14:20 GMT", NOW, 3600) == 60
    )  # an HTTP date 60 s after NOW
    assert (
        retry_after_seconds("Tue, 14 Nov 2023 22:14:20 -0000", NOW, 3600) == 60
    )  # -0000 is UTC too
    assert retry_after_seconds("Tue, 14 Nov 2023 22:14:20 GMT", NOW, 30) == 30  # capped
    assert retry_after_seconds("Tue, 14 Nov 2023 21:00:00 GMT", NOW, 3600) == 0  # in the past


def test_unreadable_or_absent_is_none():
    for value in (None, "", "  ", "soon", "nan", "Mon, 99 Foo 2023"):
        assert retry_after_seconds(value, NOW, 3600) is None


def test_what_float_reads_but_is_no_delay_is_garbage():
    """ "inf" would otherwise park a message for the whole cap."""
    for value in ("inf", "-Infinity", "1e3", "1_000", "0x10", "\u0663", "12 s"):
        assert retry_after_seconds(value, NOW, 3600) is None, value


def test_negative_is_zero_and_years_are_capped():
    assert retry_after_seconds("-30", NOW, 3600) == 0
    assert retry_after_seconds("+5", NOW, 3600) == 5
    assert retry_after_seconds("9" * 400, NOW, 3600) == 3600  # float("9" * 400) is inf
    assert retry_after_seconds("Fri, 31 Dec 9999 23:59:59 GMT", NOW, 3600) == 3600


@given(st.text(max_size=40), st.floats(min_value=0, max_value=1e6))
def test_never_negative_never_over_the_cap(value, cap):
    seconds = retry_after_seconds(value, NOW, cap)
    assert seconds is None or 0 <= seconds <= cap
