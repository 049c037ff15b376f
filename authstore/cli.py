"""``authstore``: check a deployment's backend against the contract suite, migrate, purge.

Exit codes scripts can rely on: 0 success; 1 contract failures; 2 usage error;
3 configuration error (bad URL, unknown scheme, missing driver; credentials, database
or TLS the backend refused: retrying will not help); 4 backend unavailable.
``authstore ping URL`` is a readiness probe: 0 answered, 4 unavailable, 3 misconfigured,
one line printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from authstore import __version__
from authstore.contracts.errors import (
    AuthStoreError,
    BackendUnavailableError,
    ConfigurationError,
    UnsupportedOperationError,
)
from authstore.contracts.records import StoreKind
from authstore.registry import StoreURL, backend_for, migrate

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
SUITE = "authstore.contracts.testing.suite"
STORES = [kind.value for kind in StoreKind]
OWNERS = {"Session": "sessions", "Totp": "totp", "MagicLink": "magic_links"}
CACHE_MODULES = frozenset({"cache", "cache_input", "ratelimit", "revocation"})
"""The suite's modules of the cache contract (contracts.testing)."""
FAIL_CLOSED_OUTCOMES = ("passed", "failed", "skipped", "unproven", "not applicable")
UNPROVEN = "fail-closed is unproven"
NOT_APPLICABLE = "not applicable"
"""How the suite's fail-closed tests begin their messages when they cannot run."""


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:
        return _bench(arguments[1:])
    parser = argparse.ArgumentParser(prog="authstore", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"authstore {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="run the contract suite against a store URL")
    check.add_argument("url", nargs="?", help="default: a temporary SQLite file")
    check.add_argument("-v", "--verbose", action="store_true", help="show every test")
    check.add_argument("-k", metavar="EXPRESSION", help="only the tests pytest -k selects")
    check.add_argument(
        "--unreachable-url",
        metavar="URL",
        help="a URL of the same backend that cannot be reached, for the fail-closed tests "
        "(default: the backend's own unreachable twin of URL, when it declares one)",
    )
    check.add_argument(
        "--strict",
        action="store_true",
        help="fail (exit 1) unless fail-closed was proven or does not apply to the backend",
    )
    commands.add_parser("migrate", help="create or upgrade the schema").add_argument("url")
    commands.add_parser("purge", help="delete expired entries now").add_argument("url")
    ping = commands.add_parser(
        "ping",
        help="readiness probe: exit 0 when the backend answers, 4 when not, 3 if misconfigured",
    )
    ping.add_argument("url")
    ping.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="the store's timeout option for this probe"
    )
    commands.add_parser(
        "bench", help="the benchmark report (python -m benchmarks; a source checkout)"
    )
    if not arguments:
        # a bare command did nothing it was asked to: help, and the usage exit code, so a
        # script calling ``authstore $COMMAND`` with an empty variable does not "succeed"
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(arguments)
    try:
        if args.command == "check":
            return _check(
                args.url,
                args.verbose,
                args.k,
                unreachable=args.unreachable_url,
                strict=args.strict,
            )
        if args.command == "ping":
            return _ping(args.url, args.timeout)
        if args.command == "migrate":
            for line in migrate(args.url):
                print(line)
            return EXIT_OK
        return _purge(args.url)
    except ConfigurationError as error:
        print(f"authstore: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except BackendUnavailableError as error:
        print(f"authstore: backend unavailable: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except AuthStoreError as error:
        print(f"authstore: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED


def _bench(arguments: list[str]) -> int:
    """``authstore bench ...`` is ``python -m benchmarks ...`` run from the checkout the
    package comes from: the suite is not installed with the package."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "__main__.py").exists():
        print(
            "authstore: the benchmarks live in the source repository: "
            "run python -m benchmarks from a checkout",
            file=sys.stderr,
        )
        return EXIT_USAGE
    command = [sys.executable, "-m", "benchmarks", *arguments]
    return subprocess.call(command, cwd=root)  # noqa: S603 - our interpreter, our module


def _ping(url: str, timeout: float | None) -> int:
    """One round trip on the URL's pool (``open_stores``: memcached has only the cache),
    and one line on stdout or stderr, whatever the driver's message looked like."""
    from authstore.groups import open_stores

    logging.getLogger("psycopg").addHandler(logging.NullHandler())  # its pool logs retries
    options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    started = time.perf_counter()
    try:
        with open_stores(url, **options) as stores:
            stores.ping()
    except AuthStoreError as error:
        code, what = EXIT_FAILED, type(error).__name__
        if isinstance(error, ConfigurationError):
            code, what = EXIT_CONFIG, "configuration error"
        elif isinstance(error, BackendUnavailableError):
            code, what = EXIT_UNAVAILABLE, "backend unavailable"
        print(f"authstore: {what}: {' '.join(str(error).split())}", file=sys.stderr)
        return code
    elapsed = (time.perf_counter() - started) * 1000
    print(f"authstore: {StoreURL.parse(url).redacted()} answered in {elapsed:.1f} ms")
    return EXIT_OK


def _purge(url: str) -> int:
    backend, parsed = backend_for(url)
    for kind in StoreKind:
        try:
            store = backend.open(parsed, kind, asynchronous=False)
        except UnsupportedOperationError:
            print(f"{kind.value:<12} not supported by {parsed.scheme}://")
            continue
        with store:
            if hasattr(store, "purge_expired"):
                print(f"{kind.value:<12} purged {store.purge_expired()}")
            else:
                print(f"{kind.value:<12} nothing to purge")
    return EXIT_OK


class _Tally:
    """Collects pytest reports into (store, mode) -> outcome counts, as a pytest plugin,
    and reports progress on stderr: a line per store as its last test finishes (and on a
    terminal, a running count)."""

    def __init__(self, progress: bool) -> None:
        self.store_of: dict[str, str] = {}
        self.cells: dict[tuple[str, str], dict[str, int]] = {}
        self.failures: list[str] = []
        self.errors: list[str] = []
        self.skipped: dict[str, list[str]] = {}
        """skip reason -> the tests it skipped"""
        self.fail_closed: dict[str, int] = dict.fromkeys(FAIL_CLOSED_OUTCOMES, 0)
        self.fail_closed_reason: dict[str, str] = {}
        self.unreachable_urls: set[str] = set()
        self.left_behind = 0
        self.uncounted = 0
        self.started = time.monotonic()
        self._progress = progress
        self._live = progress and sys.stderr.isatty()
        self._remaining: dict[str, int] = {}
        self._done = 0
        self._total = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def pytest_collection_modifyitems(self, items: list[Any]) -> None:
        for item in items:
            function = getattr(item, "function", None)
            owner = getattr(function, "__qualname__", "").split(".")[0]
            module = getattr(function, "__module__", "")
            store = "cache" if module.rsplit(".", 1)[-1] in CACHE_MODULES else "other"
            for prefix, name in OWNERS.items():
                if owner.startswith(prefix):
                    store = name
            self.store_of[item.nodeid] = store

    def pytest_collection_finish(self, session: Any) -> None:
        """After ``-k``: how many tests each store has left to run."""
        for item in session.items:
            store = self.store_of.get(item.nodeid, "other")
            self._remaining[store] = self._remaining.get(store, 0) + 1
        self._total = len(session.items)

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "teardown":
            for name, value in report.user_properties:
                if name == "authstore_left_behind":
                    if value is None:
                        self.uncounted += 1
                    else:
                        self.left_behind += value
        for name, value in report.user_properties:
            if name == "authstore_unreachable":
                self.unreachable_urls.add(str(value))
        if report.when != "call" and not (report.failed or report.skipped):
            return
        store = self.store_of.get(report.nodeid, "other")
        test = report.nodeid.rsplit("::", 1)[-1]
        params = test.rsplit("[", 1)[-1] if "[" in test else ""
        mode = "async" if "async" in params else "sync"
        counts = self.cells.setdefault((store, mode), {"passed": 0, "failed": 0, "skipped": 0})
        outcome = "failed" if report.failed else report.outcome
        counts[outcome] = counts.get(outcome, 0) + 1
        if "fails_closed" in test:
            self._fail_closed(outcome, report)
        if report.failed:
            self.failures.append(f"{test}: {_failure_summary(report.longrepr)}")
        elif report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else "skipped"
            reason = reason.removeprefix("Skipped: ")
            self.skipped.setdefault(reason, []).append(test)

    def _fail_closed(self, outcome: str, report: Any) -> None:
        """Sort a fail-closed test's outcome: proven, failed, not applicable to the
        backend, unproven (no unreachable URL), or skipped for a store it lacks."""
        text = str(report.longrepr) if report.longrepr else ""
        if isinstance(report.longrepr, tuple):
            text = report.longrepr[2].removeprefix("Skipped: ")
        kind = outcome
        if UNPROVEN in text:
            kind = "unproven"
        elif outcome == "skipped" and text.startswith(NOT_APPLICABLE):
            kind = "not applicable"
        self.fail_closed[kind] += 1
        lines = text.strip().splitlines() or [""]
        first = next((line for line in lines if UNPROVEN in line), lines[-1])
        self.fail_closed_reason.setdefault(kind, first.strip())

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        if not self._progress:
            return
        store = self.store_of.get(nodeid, "other")
        self._done += 1
        self._remaining[store] -= 1
        if self._remaining[store] == 0:
            cells = [_cell(self.cells.get((store, mode))) for mode in ("sync", "async")]
            summary = f"{store:<12} {cells[0]:<28} {cells[1]:<28}".rstrip()
            self._say(f"authstore check: {summary} ({self.elapsed():.1f} s)")
        elif self._live:
            line = f"authstore check: {self._done}/{self._total} tests, {self.elapsed():.0f} s"
            sys.stderr.write(f"\r{line}")
            sys.stderr.flush()

    def _say(self, line: str) -> None:
        clear = "\r\x1b[K" if self._live else ""
        sys.stderr.write(f"{clear}{line}\n")
        sys.stderr.flush()

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.errors.append(str(report.longrepr))

    def fail_closed_row(self) -> tuple[bool, str]:
        """(proven or not applicable, the table's text) for the fail-closed tests."""
        counts, reasons = self.fail_closed, self.fail_closed_reason
        if counts["failed"]:
            return False, f"FAIL {counts['failed']} failed: a security read answered while down"
        if counts["unproven"]:
            return False, f"NOT TESTED: {reasons['unproven']}"
        if counts["passed"]:
            urls = sorted(self.unreachable_urls) or ["an unreachable URL"]
            where = urls[0] + (" (a twin per test)" if len(urls) > 1 else "")
            return True, f"ok   {counts['passed']} passed, on {where}"
        if counts["not applicable"]:
            return True, f"n/a  {reasons['not applicable']}"
        return False, "NOT TESTED: no fail-closed test ran (deselected by -k?)"


def _failure_summary(longrepr: Any) -> str:
    """What failed, in a line: the assertion's own message (its first lines, before
    pytest's explanation), else the report's last line."""
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and crash.message:
        lines: list[str] = []
        for line in crash.message.splitlines():
            if line.strip().startswith("assert ") or len(lines) == 4:
                break
            lines.append(line.strip())
        return " | ".join(line for line in lines if line)
    lines = str(longrepr).strip().splitlines()
    return lines[-1] if lines else "failed"


def _check(
    url: str | None,
    verbose: bool,
    select: str | None = None,
    *,
    unreachable: str | None = None,
    strict: bool = False,
) -> int:
    try:
        import pytest
    except ImportError:
        raise ConfigurationError(
            'authstore check needs pytest: pip install "authstore[check]"'
        ) from None
    tally = _Tally(progress=not verbose)
    with tempfile.TemporaryDirectory(prefix="authstore-check-") as folder:
        target = url or f"sqlite:///{Path(folder) / 'check.db'}"
        _preflight(target)
        if unreachable is not None and backend_for(unreachable)[0] is not backend_for(target)[0]:
            print(
                f"authstore: --unreachable-url {StoreURL.parse(unreachable).redacted()} "
                f"is not a URL of the {StoreURL.parse(target).scheme}:// backend",
                file=sys.stderr,
            )
            return EXIT_USAGE
        if StoreURL.parse(target).scheme == "memory" and not StoreURL.parse(target).hosts:
            # the suite opens several stores over one data set: name it for this run
            target = f"memory://check-{os.getpid()}"
        arguments = [
            "--pyargs",
            SUITE,
            f"--authstore-url={target}",
            "-p",
            "no:cacheprovider",
            # async stores run on the suite's own loop thread, whatever pytest-asyncio
            # version (or none) the deployment has installed
            "-p",
            "no:asyncio",
            f"--rootdir={folder}",
            "-o",
            "addopts=",
        ]
        # without it, the suite uses the backend's own unreachable twin of the URL
        arguments += [f"--authstore-unreachable-url={unreachable}"] if unreachable else []
        # --strict: an unproven fail-closed test fails instead of skipping
        arguments += ["--authstore-strict"] if strict else []
        arguments += ["-v", "--no-header", "--tb=short"] if verbose else ["-p", "no:terminal"]
        arguments += ["-k", select] if select else []
        environment_strict = os.environ.pop("AUTHSTORE_STRICT", None)
        try:
            code = pytest.main(arguments, plugins=[tally])
        finally:
            if environment_strict is not None:
                os.environ["AUTHSTORE_STRICT"] = environment_strict
    _print_table(tally, target)
    if tally.errors:
        print("\n".join(tally.errors), file=sys.stderr)
    if tally.left_behind:
        print(f"authstore: the check left {tally.left_behind} entries behind", file=sys.stderr)
        return EXIT_FAILED
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("authstore: the contract suite collected no test", file=sys.stderr)
        return EXIT_FAILED
    if code != pytest.ExitCode.OK or tally.failures:
        return EXIT_FAILED
    proven, _ = tally.fail_closed_row()
    if strict and not proven:
        print(
            "authstore: --strict: fail-closed was not tested (see the fail-closed row)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


def _preflight(url: str) -> None:
    """Fail fast, with one clear message, when the backend is unknown or unreachable."""
    backend, parsed = backend_for(url)
    for kind in (StoreKind.CACHE, StoreKind.SESSIONS):
        try:
            store = backend.open(parsed, kind, asynchronous=False)
        except UnsupportedOperationError:
            continue
        with store:
            if kind is StoreKind.CACHE:
                store.exists("authstore-check-preflight")
            else:
                store.count("authstore-check-preflight")
        return


def _print_table(tally: _Tally, url: str) -> None:
    print(f"authstore check {StoreURL.parse(url).redacted()}")
    print(f"{'store':<12} {'sync':<28} {'async':<28}")
    for store in [*STORES, "other"]:
        row = [tally.cells.get((store, mode)) for mode in ("sync", "async")]
        if not any(row):
            continue
        cells = [_cell(counts) for counts in row]
        print(f"{store:<12} {cells[0]:<28} {cells[1]:<28}")
    if tally.cells:
        print(f"{'fail-closed':<12} {tally.fail_closed_row()[1]}")
    if tally.uncounted:
        scheme = StoreURL.parse(url).scheme
        print(
            f"{'left behind':<12} unknown: {scheme}:// cannot list a namespace's keys, so "
            f"the check could not remove what its tests wrote (see docs/backend-authors.md)"
        )
    elif tally.cells:
        note = "NOT removed: FAIL" if tally.left_behind else "every test's namespace was cleared"
        print(f"{'left behind':<12} {tally.left_behind} ({note})")
    suite = sys.modules.get(SUITE)
    if suite is not None and tally.cells:
        run = suite.RUN
        print(f"{'namespaces':<12} t{run}*, o{run}* (one per test)")
    print(f"{'elapsed':<12} {tally.elapsed():.1f} s")
    for reason, tests in tally.skipped.items():
        print(f"SKIPPED ({len(tests)}) {reason}")
        print(f"    {_test_names(tests)}")
    for failure in tally.failures:
        print(f"FAILED {failure}")


def _test_names(tests: list[str], shown: int = 8) -> str:
    """``test_a[sync, async], test_b[sync]``: each test once, its parameters together."""
    params: dict[str, list[str]] = {}
    for test in tests:
        name, _, rest = test.partition("[")
        params.setdefault(name, []).extend([rest.rstrip("]")] if rest else [])
    names = [f"{name}[{', '.join(ids)}]" if ids else name for name, ids in params.items()]
    more = f", and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _cell(counts: dict[str, int] | None) -> str:
    if not counts:
        return "-"
    status = "ok" if not counts["failed"] else "FAIL"
    parts = [f"{counts['passed']} passed"]
    if counts["failed"]:
        parts.append(f"{counts['failed']} failed")
    if counts["skipped"]:
        parts.append(f"{counts['skipped']} skipped")
    return f"{status:<4} " + ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
