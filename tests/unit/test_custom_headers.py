"""An endpoint's custom headers: which names and values are refused, and masking."""

from __future__ import annotations

import pytest

from common.delivery.custom_headers import MASK, header_problems, masked


def test_ordinary_headers_pass():
    assert header_problems({"Authorization": "Bearer abc.def", "X-Tenant": "acme 1"}) == []


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"webhook-signature": "v1,x"}, "set by Jenga"),
        ({"Webhook-Id": "x"}, "set by Jenga"),
        ({"Host": "evil.example"}, "set by Jenga"),
        ({"Content-Length": "1"}, "set by Jenga"),
        ({"Transfer-Encoding": "chunked"}, "set by Jenga"),
        ({"Connection": "close"}, "set by Jenga"),
        ({"content-type": "text/plain"}, "set by Jenga"),
        ({"Bad Name": "x"}, "not a header name"),
        ({"X-A:b": "x"}, "not a header name"),
        ({"": "x"}, "not a header name"),
        ({"X-Inject": "a\r\nHost: evil"}, "no CR, LF"),
        ({"X-Nul": "a\x00b"}, "no CR, LF"),
        ({"X-Long": "v" * 4097}, "at most 4096"),
        ({"X-Dup": "a", "x-dup": "b"}, "given twice"),
        ({f"X-{i}": "v" for i in range(21)}, "at most 20 headers"),
    ],
)
def test_refused_headers_name_the_header_and_never_quote_the_value(headers, why):
    problems = header_problems(headers)
    assert problems and why in "; ".join(problems)
    assert "Bearer" not in "; ".join(problems) and "evil" not in "; ".join(problems)


def test_masked_keeps_names_and_hides_values():
    assert masked({"Authorization": "Bearer s3cret"}) == {"Authorization": MASK}
