"""``authstore``: check a deployment's backend against the contract suite, migrate, purge.

Exit codes scripts can rely on: 0 success; 1 contract failures; 2 usage error;
3 configuration error (bad URL, unknown scheme, missing driver); 4 backend
unavailable. ``authstore ping URL`` is a readiness probe: 0 answered, 4 unavailable,
3 misconfigured, one line printed.
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


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:
        return _bench(arguments[1:])
    parser = argparse.ArgumentParser(prog="authstore", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="run the contract suite against a store URL")
    check.add_argument("url", nargs="?", help="default: a temporary SQLite file")
    check.add_argument("-v", "--verbose", action="store_true", help="show every test")
    check.add_argument("-k", metavar="EXPRESSION", help="only the tests pytest -k selects")
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
    args = parser.parse_args(arguments)
    try:
        if args.command == "check":
            return _check(args.url, args.verbose, args.k)
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
    """Collects pytest reports into (store, mode) -> outcome counts, as a pytest plugin."""

    def __init__(self) -> None:
        self.store_of: dict[str, str] = {}
        self.cells: dict[tuple[str, str], dict[str, int]] = {}
        self.failures: list[str] = []
        self.errors: list[str] = []
        self.left_behind = 0
        self.uncounted = 0

    def pytest_collection_modifyitems(self, items: list[Any]) -> None:
        for item in items:
            function = getattr(item, "function", None)
            owner = getattr(function, "__qualname__", "").split(".")[0]
            module = getattr(function, "__module__", "")
            store = "cache" if module.endswith(".cache") else "other"
            for prefix, name in OWNERS.items():
                if owner.startswith(prefix):
                    store = name
            self.store_of[item.nodeid] = store

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "teardown":
            for name, value in report.user_properties:
                if name == "authstore_left_behind":
                    if value is None:
                        self.uncounted += 1
                    else:
                        self.left_behind += value
        if report.when != "call" and not (report.failed or report.skipped):
            return
        store = self.store_of.get(report.nodeid, "other")
        params = report.nodeid.rsplit("[", 1)[-1] if "[" in report.nodeid else ""
        mode = "async" if "async" in params else "sync"
        counts = self.cells.setdefault((store, mode), {"passed": 0, "failed": 0, "skipped": 0})
        outcome = "failed" if report.failed else report.outcome
        counts[outcome] = counts.get(outcome, 0) + 1
        if report.failed:
            lines = str(report.longrepr).strip().splitlines()
            self.failures.append(f"{report.nodeid}: {lines[-1] if lines else 'failed'}")

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.errors.append(str(report.longrepr))


def _check(url: str | None, verbose: bool, select: str | None = None) -> int:
    try:
        import pytest
    except ImportError:
        raise ConfigurationError(
            'authstore check needs pytest: pip install "authstore[check]"'
        ) from None
    with tempfile.TemporaryDirectory(prefix="authstore-check-") as folder:
        target = url or f"sqlite:///{Path(folder) / 'check.db'}"
        _preflight(target)
        tally = _Tally()
        if StoreURL.parse(target).scheme == "memory" and not StoreURL.parse(target).hosts:
            # the suite opens several stores over one data set: name it for this run
            target = f"memory://check-{os.getpid()}"
        arguments = [
            "--pyargs",
            SUITE,
            f"--authstore-url={target}",
            *_unreachable(target, Path(folder)),
            "-p",
            "no:cacheprovider",
            f"--rootdir={folder}",
            "-o",
            "addopts=",
        ]
        arguments += ["-v", "--no-header", "--tb=short"] if verbose else ["-p", "no:terminal"]
        arguments += ["-k", select] if select else []
        # check reports on one deployment URL: without an unreachable URL of it the
        # fail-closed tests show as skipped in the table, they do not fail the check
        strict = os.environ.pop("AUTHSTORE_STRICT", None)
        try:
            code = pytest.main(arguments, plugins=[tally])
        finally:
            if strict is not None:
                os.environ["AUTHSTORE_STRICT"] = strict
    _print_table(tally, target)
    if tally.errors:
        print("\n".join(tally.errors), file=sys.stderr)
    if tally.left_behind:
        print(f"authstore: the check left {tally.left_behind} entries behind", file=sys.stderr)
        return EXIT_FAILED
    if code in (pytest.ExitCode.OK,) and not tally.failures:
        return EXIT_OK
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("authstore: the contract suite collected no test", file=sys.stderr)
    return EXIT_FAILED


def _unreachable(url: str, folder: Path) -> list[str]:
    """For the default SQLite file, an unreachable twin, so fail-closed runs too."""
    if url.startswith("sqlite:///") and Path(url[len("sqlite:///") :]).parent == folder:
        blocker = folder / "not-a-directory"
        blocker.write_text("")
        return [f"--authstore-unreachable-url=sqlite:///{blocker / 'check.db'}"]
    return []


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
    for failure in tally.failures:
        print(f"FAILED {failure}")


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
