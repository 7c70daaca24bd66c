"""Shared HTTP plumbing: status classification, Retry-After, URL scrubbing, query helpers."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from trackflow.providers import http, parse
from trackflow.providers.errors import NotFound, PermanentError, TransientError

REQ = httpx.Request("GET", "https://example.test/2.0/?method=x&api_key=SECRETKEY")


def resp(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers, request=REQ)


@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_server_errors_are_transient(status: int) -> None:
    err = http.classify("p", resp(status))
    assert isinstance(err, TransientError), f"HTTP {status} should be transient, got {err!r}"
    assert not err.rate_limited


def test_429_is_rate_limited_with_retry_after_seconds() -> None:
    err = http.classify("p", resp(429, headers={"Retry-After": "7"}))
    assert isinstance(err, TransientError)
    assert err.rate_limited and err.retry_after == 7.0


def test_retry_after_http_date_form() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert http.parse_retry_after(header, now=now) == pytest.approx(30.0)
    assert http.parse_retry_after("garbage") is None
    assert http.parse_retry_after(None) is None
    assert http.parse_retry_after("-3") == 0.0


def test_503_rate_limit_detected_from_flag_or_body() -> None:
    plain = http.classify("p", resp(503))
    assert isinstance(plain, TransientError) and not plain.rate_limited
    flagged = http.classify("p", resp(503), rate_limit_on_503=True)
    assert isinstance(flagged, TransientError) and flagged.rate_limited
    body = http.classify(
        "p", resp(503, {"error": "Your requests are exceeding the allowable rate limit"})
    )
    assert isinstance(body, TransientError) and body.rate_limited


@pytest.mark.parametrize("status", [401, 403, 400])
def test_client_errors_are_permanent(status: int) -> None:
    assert isinstance(http.classify("p", resp(status)), PermanentError)


def test_404_is_not_found_and_2xx_is_none() -> None:
    assert isinstance(http.classify("p", resp(404)), NotFound)
    assert http.classify("p", resp(200, {})) is None


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("t", request=REQ),
        httpx.ConnectTimeout("t", request=REQ),
        httpx.ConnectError("c", request=REQ),
        httpx.RemoteProtocolError("r", request=REQ),
    ],
)
def test_network_exceptions_are_transient(exc: Exception) -> None:
    assert isinstance(http.classify("p", exc), TransientError)


def test_foreign_exceptions_are_not_classified() -> None:
    assert http.classify("p", ValueError("x")) is None


def test_error_messages_never_carry_the_query_string() -> None:
    for status in (400, 401, 404, 429, 500, 503):
        err = http.classify("p", resp(status))
        assert err is not None
        assert "SECRETKEY" not in str(err) and "api_key" not in str(err), str(err)


def test_httpx_log_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("httpx").info('HTTP Request: %s %s "%s"', "GET", REQ.url, "HTTP/1.1 200")
    assert "SECRETKEY" not in caplog.text
    assert "api_key=***" in caplog.text


def test_make_client_uses_explicit_timeout_and_base_url() -> None:
    client = http.make_client("https://x.test/ws/2", timeout=3.0)
    assert client.timeout == httpx.Timeout(3.0)
    assert str(client.base_url) == "https://x.test/ws/2/"
    default = http.make_client("https://x.test")
    assert default.timeout == http.DEFAULT_TIMEOUT


def test_quote_field_cannot_be_broken_out_of() -> None:
    assert parse.quote_field('AND (Remix) "Edit" OR artist:x') == '"AND (Remix) Edit OR artist:x"'
    assert parse.quote_field('a\\" b') == '"a b"'


def test_tolerant_converters() -> None:
    assert parse.as_int("231000") == 231000
    assert parse.as_int("") is None and parse.as_int(None) is None and parse.as_int("n/a") is None
    assert parse.as_float("123.4") == 123.4
    assert parse.as_str("  ") is None
    assert parse.as_list({"name": "x"}) == [{"name": "x"}]
    assert parse.compact({"a": None, "b": [], "c": 0}) == {"c": 0}
