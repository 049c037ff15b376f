"""Optional OpenTelemetry instrumentation of every store operation.

Off until the application calls :func:`enable` (with ``authstore[otel]``, i.e.
``opentelemetry-api``, installed). Then each store opened afterwards runs its
operations through an observing runner: one span per operation, a latency
histogram, and counters for rate-limit refusals and fail-closed security reads.
A store opened while it is off calls its backend directly: no import of
opentelemetry, no branch per call.

Why a call and not "on whenever opentelemetry-api is importable": the API is often
installed by something else, and without an SDK every span would still be made and
dropped, a few microseconds per operation nobody asked for. The application that
configures OpenTelemetry knows, and says so once.

Nothing recorded names a key, a token, a user or application id, an address or a
URL: only the backend, the store kind, the operation, its outcome, and on failure
the error's class name (never its message).
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, TypeVar, cast

from authstore.contracts.errors import (
    AuthStoreError,
    BackendError,
    BackendUnavailableError,
    MissingDriverError,
    TokenInUseError,
)

__all__ = [
    "DURATION",
    "FAIL_CLOSED",
    "OUTCOMES",
    "RATE_LIMIT_REFUSED",
    "SECURITY_READS",
    "disable",
    "enable",
    "enabled",
    "observe",
]

DURATION = "authstore.operation.duration"
RATE_LIMIT_REFUSED = "authstore.rate_limit.refused"
FAIL_CLOSED = "authstore.fail_closed"
OUTCOMES = ("ok", "refused", "unavailable", "bad_input", "error")

SECURITY_READS = frozenset(
    {
        "is_blacklisted",
        "user_tokens_revoked_at",
        "check_rate_limit",
        "get",  # of a session (a cache get is not one: see _security)
        "touch",
        "peek",
        "consume",
        "load",
        "claim_step",
        "use_backup_code",
    }
)
"""Operations whose answer decides access: when the backend cannot answer, they raise
(fail closed), and each such raise is counted in ``authstore.fail_closed``."""

_REFUSED_WHEN = {
    "check_rate_limit": lambda result: not result.allowed,
    "consume": lambda result: result is None,
    "claim_step": lambda result: result is False,
    "use_backup_code": lambda result: result is False,
}
"""Operations that can say no, and how their answer says it."""

_DB_SYSTEMS = {
    "postgres": "postgresql",
    "mysql": "mysql",
    "sqlite": "sqlite",
    "redis": "redis",
    "mongodb": "mongodb",
    "memcached": "memcached",
}
"""``db.system`` (OpenTelemetry's semantic conventions) of the built-in backends."""

R = TypeVar("R")

_active: _Telemetry | None = None


def enable(*, tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Instrument every store opened from now on (stores already open stay as they are).

    Uses the global tracer and meter providers unless others are given (tests pass
    the SDK's with in-memory exporters). Raises MissingDriverError without
    ``authstore[otel]``."""
    global _active
    try:
        from opentelemetry import metrics, trace
    except ImportError as error:
        raise MissingDriverError("OpenTelemetry", "otel", "opentelemetry") from error
    from authstore import __version__

    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("authstore", __version__)
    meter = (meter_provider or metrics.get_meter_provider()).get_meter("authstore", __version__)
    _active = _Telemetry(trace, tracer, meter)


def disable() -> None:
    """Stores opened from now on are not instrumented (open ones keep their state)."""
    global _active
    _active = None


def enabled() -> bool:
    return _active is not None


def observe(runner: R, store: str, asynchronous: bool) -> R:
    """The runner a new store should use: ``runner`` itself while instrumentation is off
    (the only cost: this call, once per store), else an observing wrapper around it."""
    telemetry = _active
    if telemetry is None:
        return runner
    backend = _backend_of(runner)
    wrapper = _ObservedAsyncRunner if asynchronous else _ObservedRunner
    return cast(R, wrapper(runner, telemetry, backend, store))  # the same run() and close()


def _backend_of(runner: Any) -> str:
    """``authstore.adapters.redis.sync`` -> ``redis``; another package -> its name."""
    parts = type(runner).__module__.split(".")
    if parts[:2] == ["authstore", "adapters"] and len(parts) > 2:
        return parts[2]
    return parts[0]


class _Telemetry:
    """The tracer and the instruments, made once per ``enable()``."""

    def __init__(self, trace: Any, tracer: Any, meter: Any) -> None:
        self.client_kind = trace.SpanKind.CLIENT
        self.error_status = trace.Status(trace.StatusCode.ERROR)
        self.use_span = trace.use_span
        self.tracer = tracer
        self.duration = meter.create_histogram(
            DURATION, unit="s", description="Time of one authstore store operation"
        )
        self.rate_limit_refused = meter.create_counter(
            RATE_LIMIT_REFUSED,
            unit="{refusal}",
            description="Rate-limit checks that refused the hit",
        )
        self.fail_closed = meter.create_counter(
            FAIL_CLOSED,
            unit="{read}",
            description="Security reads that raised because the backend could not answer",
        )


class _Operation:
    """One observed operation: a span current for its duration, then its outcome."""

    __slots__ = ("attributes", "name", "result", "scope", "span", "started", "telemetry")

    def __init__(self, telemetry: _Telemetry, attributes: dict[str, str], name: str) -> None:
        self.telemetry = telemetry
        self.attributes = attributes
        self.name = name
        self.result: Any = None

    def __enter__(self) -> _Operation:
        telemetry, attributes = self.telemetry, self.attributes
        self.span = telemetry.tracer.start_span(
            f"authstore.{attributes['authstore.store']}.{self.name}",
            kind=telemetry.client_kind,
            attributes=attributes,
        )
        # no exception event nor status text: a message may name what was looked up
        self.scope = telemetry.use_span(
            self.span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        )
        self.scope.__enter__()
        self.started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self.started
        telemetry, span, attributes = self.telemetry, self.span, self.attributes
        try:
            outcome = _outcome(self.name, self.result, error)
            span.set_attribute("authstore.outcome", outcome)
            measured = {**attributes, "authstore.outcome": outcome}
            if error is not None:
                span.set_attribute("error.type", type(error).__name__)
                measured["error.type"] = type(error).__name__
                if outcome != "refused":
                    span.set_status(telemetry.error_status)
                if isinstance(error, BackendError) and _security(
                    attributes["authstore.store"], self.name
                ):
                    telemetry.fail_closed.add(1, measured)
            elif outcome == "refused" and self.name == "check_rate_limit":
                telemetry.rate_limit_refused.add(1, attributes)
            telemetry.duration.record(elapsed, measured)
        finally:
            self.scope.__exit__(exc_type, error, tb)
            span.end()


def _security(store: str, operation: str) -> bool:
    return operation in SECURITY_READS and not (store == "cache" and operation == "get")


def _outcome(operation: str, result: Any, error: BaseException | None) -> str:
    if error is None:
        refused = _REFUSED_WHEN.get(operation)
        return "refused" if refused is not None and refused(result) else "ok"
    if isinstance(error, BackendUnavailableError):
        return "unavailable"
    if isinstance(error, TokenInUseError):
        return "refused"
    if isinstance(error, AuthStoreError):
        return "error"
    if isinstance(error, ValueError | TypeError):
        return "bad_input"
    return "error"


class _ObservedRunnerBase:
    __slots__ = ("_attributes", "_runner", "_telemetry")

    def __init__(self, runner: Any, telemetry: _Telemetry, backend: str, store: str) -> None:
        self._runner = runner
        self._telemetry = telemetry
        self._attributes = {"authstore.backend": backend, "authstore.store": store}
        system = _DB_SYSTEMS.get(backend)
        if system is not None:
            self._attributes["db.system"] = system

    def _operation(self, op: Any) -> _Operation:
        name = getattr(op, "__name__", "operation")
        attributes = {**self._attributes, "authstore.operation": name}
        return _Operation(self._telemetry, attributes, name)

    def __getattr__(self, name: str) -> Any:
        """Everything else (pool, client, settings...) is the wrapped runner's."""
        if name == "_runner":  # not set yet (a copy in the making): no recursion
            raise AttributeError(name)
        return getattr(self._runner, name)

    def __repr__(self) -> str:
        return repr(self._runner)


class _ObservedRunner(_ObservedRunnerBase):
    def run(self, op: Any) -> Any:
        with self._operation(op) as operation:
            operation.result = self._runner.run(op)
        return operation.result

    def close(self) -> None:
        self._runner.close()


class _ObservedAsyncRunner(_ObservedRunnerBase):
    async def run(self, op: Any) -> Any:
        with self._operation(op) as operation:
            operation.result = await self._runner.run(op)
        return operation.result

    async def close(self) -> None:
        await self._runner.close()
