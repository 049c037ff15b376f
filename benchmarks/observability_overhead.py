"""What OpenTelemetry instrumentation costs a memory store's ``get`` and ``check_rate_limit``.

``python -m benchmarks.observability_overhead``: ops/s with instrumentation off (the
default: the store calls its backend directly), on over the API's no-op providers (no
SDK configured), and on over the SDK with an in-memory span exporter and metric
reader (the most a process pays). Three rounds, best of each; a few seconds in all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from authstore import observability, open_cache

ROUNDS = 3
CALLS = 50_000


def _rate(call: Callable[[], object]) -> float:
    best = 0.0
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            call()
        best = max(best, CALLS / (time.perf_counter() - started))
    return best


def _measure(label: str) -> dict[str, float]:
    cache: Any = open_cache(f"memory://overhead-{label}")
    cache.set("k", "v")
    rates = {
        "get": _rate(lambda: cache.get("k")),
        "check_rate_limit": _rate(lambda: cache.check_rate_limit("r", 10**9, 3600)),
    }
    cache.close()
    return rates


def _sdk() -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracer_provider = TracerProvider()
    exporter = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return tracer_provider, meter_provider


def main() -> int:
    observability.disable()
    results = {"off": _measure("off")}
    imported = any(name.startswith("opentelemetry") for name in sys.modules)
    observability.enable()
    results["on, API only"] = _measure("api")
    tracer_provider, meter_provider = _sdk()
    observability.enable(tracer_provider=tracer_provider, meter_provider=meter_provider)
    results["on, SDK"] = _measure("sdk")
    observability.disable()
    print(f"opentelemetry imported while off: {imported}")
    print(f"{'instrumentation':<16} {'get ops/s':>12} {'check_rate_limit ops/s':>24}")
    for label, rates in results.items():
        print(f"{label:<16} {rates['get']:>12,.0f} {rates['check_rate_limit']:>24,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
