"""OpenTelemetry instrumentation, read back through the SDK's in-memory exporters.

A normal get, a rate-limit refusal, a fail-closed security read (a store on a port
nobody listens on) and bad input, sync and async: each gives one span with the
backend, store, operation and outcome, a duration point, and the counters that
apply; no key, token, user id or password appears in anything recorded. Off (the
default), a store calls its backend directly and opentelemetry is never imported.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from authstore import BackendUnavailableError, observability
from authstore.contracts.records import StoreKind
from authstore.contracts.testing.harness import Mode, Stores, url_factory
from tests.outages import free_port

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace", reason="pip install opentelemetry-sdk")
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode  # noqa: E402

SECRET = "Otel-Secret-Pw-7"
KEY = "login:alice@example.com"


@dataclass
class Recorded:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[Any]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[tuple[dict[str, Any], float]]:
        """(attributes, value or count) of every data point of metric ``name``."""
        found = []
        data = self.metrics.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        found.append(
                            (dict(point.attributes), point.count if value is None else value)
                        )
        return found

    def everything(self) -> str:
        """Every recorded name and attribute value, for "no secret anywhere" checks."""
        texts = []
        for span in self.finished():
            texts += [span.name, *map(str, span.attributes.values())]
            texts.append(str(span.status.description))
            for event in span.events:
                texts += [event.name, *map(str, event.attributes.values())]
        data = self.metrics.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        texts += map(str, point.attributes.values())
        return "\n".join(texts)


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    tracer_provider = sdk_trace.TracerProvider()
    spans = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    observability.enable(
        tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader])
    )
    try:
        yield Recorded(spans, reader)
    finally:
        observability.disable()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> Mode:
    chosen: Mode = request.param
    return chosen


def _cache(url: str, mode: Mode) -> tuple[Stores, Any]:
    """A cache store in a namespace of its own (memory data sets outlive a test)."""
    stores = Stores(url_factory(url, f"otel{uuid.uuid4().hex[:8]}"), mode)
    return stores, stores.open(StoreKind.CACHE)


def test_a_get_is_one_span_and_one_duration_point(recorded: Recorded, mode: Mode) -> None:
    stores, cache = _cache("memory://otel-get", mode)
    try:
        assert cache.get(KEY) is None
    finally:
        stores.close()
    (span,) = recorded.finished()
    assert span.name == "authstore.cache.get"
    assert dict(span.attributes) == {
        "authstore.backend": "memory",
        "authstore.store": "cache",
        "authstore.operation": "get",
        "authstore.outcome": "ok",
    }
    assert span.status.status_code is StatusCode.UNSET
    ((attributes, count),) = recorded.points(observability.DURATION)
    assert attributes["authstore.outcome"] == "ok" and count == 1
    assert recorded.points(observability.RATE_LIMIT_REFUSED) == []
    assert "alice" not in recorded.everything()


def test_a_rate_limit_refusal_is_counted(recorded: Recorded, mode: Mode) -> None:
    stores, cache = _cache("memory://otel-limit", mode)
    try:
        assert cache.check_rate_limit(KEY, 1, 60).allowed
        assert not cache.check_rate_limit(KEY, 1, 60).allowed
    finally:
        stores.close()
    outcomes = [span.attributes["authstore.outcome"] for span in recorded.finished()]
    assert outcomes == ["ok", "refused"]
    assert {s.name for s in recorded.finished()} == {"authstore.cache.check_rate_limit"}
    ((attributes, refusals),) = recorded.points(observability.RATE_LIMIT_REFUSED)
    assert refusals == 1 and attributes["authstore.operation"] == "check_rate_limit"
    durations = {p[0]["authstore.outcome"]: p[1] for p in recorded.points(observability.DURATION)}
    assert durations == {"ok": 1, "refused": 1}
    assert "alice" not in recorded.everything()


def test_a_fail_closed_read_is_counted(recorded: Recorded, mode: Mode) -> None:
    pytest.importorskip("redis")
    url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0?timeout=1&connect_timeout=1"
    stores, cache = _cache(url, mode)
    try:
        with pytest.raises(BackendUnavailableError):
            cache.is_blacklisted("jti-" + KEY)
    finally:
        stores.close()
    (span,) = recorded.finished()
    assert span.name == "authstore.cache.is_blacklisted"
    assert span.attributes["db.system"] == "redis"
    assert span.attributes["authstore.outcome"] == "unavailable"
    assert span.attributes["error.type"] == "BackendUnavailableError"
    assert span.status.status_code is StatusCode.ERROR
    ((attributes, closed),) = recorded.points(observability.FAIL_CLOSED)
    assert closed == 1 and attributes["authstore.operation"] == "is_blacklisted"
    everything = recorded.everything()
    assert SECRET not in everything and "alice" not in everything and "127.0.0.1" not in everything


def test_bad_input_is_its_own_outcome(recorded: Recorded, mode: Mode) -> None:
    stores, cache = _cache("memory://otel-bad", mode)
    try:
        with pytest.raises(ValueError):
            cache.check_rate_limit(KEY, 0, 60)
    finally:
        stores.close()
    (span,) = recorded.finished()
    assert span.attributes["authstore.outcome"] == "bad_input"
    assert recorded.points(observability.FAIL_CLOSED) == []


def test_off_the_store_calls_its_backend_directly() -> None:
    """No wrapper, no opentelemetry import: a store opened while off pays nothing."""
    script = (
        "import sys\n"
        "from authstore import open_cache, open_async_sessions\n"
        "cache = open_cache('memory://off')\n"
        "cache.check_rate_limit('k', 1, 60)\n"
        "sessions = open_async_sessions('memory://off')\n"
        "assert type(cache._runner).__name__ == 'MemoryRunner', cache._runner\n"
        "assert type(sessions._runner).__name__ == 'AsyncMemoryRunner', sessions._runner\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')]\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_stores_opened_before_enable_stay_uninstrumented(recorded: Recorded) -> None:
    observability.disable()
    stores, cache = _cache("memory://otel-before", "sync")
    try:
        observability.enable()
        cache.get(KEY)
    finally:
        stores.close()
    assert recorded.finished() == []
