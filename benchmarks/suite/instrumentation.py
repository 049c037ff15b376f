"""What OpenTelemetry instrumentation costs an operation (section ``observability``).

Three memory stores, opened with instrumentation off (the default: the store calls its
backend directly), on over the API's no-op providers (no SDK configured) and on over
the SDK with an in-memory span exporter and metric reader (the most a process pays),
take turns in the same rounds. A memory operation costs microseconds, so the ratios
show the instrumentation's own cost at its largest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from benchmarks.suite import measure
from benchmarks.suite.measure import Budget, Contender
from benchmarks.suite.ops import Stores, contenders, run_sync, seed
from benchmarks.suite.targets import close_stores, open_stores

if TYPE_CHECKING:
    from benchmarks.suite.session import Results

__all__ = ["measure_instrumentation"]

BACKEND = "observability"
MEASURED = ("cache get", "fixed_window allowed", "session get")


def _sdk() -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


def measure_instrumentation(budget: Budget, results: Results) -> None:
    from authstore import observability
    from benchmarks.suite.session import record_row

    try:
        tracer_provider, meter_provider = _sdk()
    except ImportError as error:
        results.notes.append(f"observability: not measured ({error})")
        return
    settings: list[tuple[str, Callable[[], None]]] = [
        ("authstore", observability.disable),
        ("instrumented, no SDK", observability.enable),
        (
            "instrumented, SDK with in-memory exporters",
            lambda: observability.enable(
                tracer_provider=tracer_provider, meter_provider=meter_provider
            ),
        ),
    ]
    opened: list[Stores] = []
    try:
        calls: list[tuple[str, dict[str, Contender]]] = []
        for label, switch in settings:
            switch()  # a store keeps what it was opened with
            stores = open_stores(f"memory://{BACKEND}-{len(opened)}", ("cache", "sessions"), False)
            opened.append(stores)
            run_sync(seed(stores, 1))
            calls.append((label, contenders(stores, 1)))
    finally:
        observability.disable()
    try:
        for op in MEASURED:
            group = [
                Contender(label, "authstore" if label == "authstore" else "variant", found[op].call)
                for label, found in calls
            ]
            record_row(results, BACKEND, "sync", op, measure.measure_sync(group, budget))
    finally:
        for stores in opened:
            close_stores(stores)
    results.notes.append(
        "observability: memory stores with instrumentation off (authstore), on without an "
        "SDK, and on with the SDK's in-memory span exporter and metric reader"
    )
