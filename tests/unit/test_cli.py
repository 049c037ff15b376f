"""The ``authstore`` command as a script sees it: output and exit codes."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from authstore.adapters.sql.schema import Tables, migrations
from authstore.adapters.sqlite.dialect import SQLiteDialect

STORES = ("cache", "sessions", "totp", "magic_links")


def _authstore(*args: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return subprocess.run(
        [sys.executable, "-m", "authstore", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


def _table(output: str) -> dict[str, str]:
    rows = {}
    for line in output.splitlines():
        name, _, rest = line.partition(" ")
        if name in STORES:
            rows[name] = rest
    return rows


@pytest.mark.parametrize("url", [None, "memory://"], ids=["default-sqlite", "memory"])
def test_check_passes_and_prints_a_table(url: str | None) -> None:
    result = _authstore("check", *([url] if url else []))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _table(result.stdout)
    assert set(rows) == set(STORES), result.stdout
    for store, row in rows.items():
        assert row.split()[0] == "ok", f"{store}: {row}"
        assert row.count("passed") == 2, f"{store} must show a sync and an async cell: {row}"
    assert ("sqlite:///" if url is None else "memory://") in result.stdout


def test_check_fails_a_broken_backend(tmp_path: Path) -> None:
    """A TOTP store that accepts a replayed step must fail the check, with exit code 1."""
    (tmp_path / "replaying.py").write_text(
        textwrap.dedent(
            """
            from authstore.adapters.common.ops import immediate
            from authstore.adapters.common.stores import AsyncTotp, Totp
            from authstore.adapters.memory.backend import MemoryBackend
            from authstore.adapters.memory.ops import MemoryTotpOps
            from authstore.contracts.records import StoreKind

            class ReplayingTotpOps(MemoryTotpOps):
                @immediate
                def claim_step(self, user_id, step):
                    return (user_id, self.namespace) in self.data.totp

            class ReplayingBackend(MemoryBackend):
                def open(self, url, kind, *, asynchronous):
                    store = super().open(url, kind, asynchronous=asynchronous)
                    if kind is StoreKind.TOTP:
                        ops = ReplayingTotpOps(store._logic.ops.data, store.namespace)
                        cls = AsyncTotp if asynchronous else Totp
                        return cls(ops, store._runner, namespace=store.namespace)
                    return store

            backend = ReplayingBackend()
            """
        )
    )
    info = tmp_path / "replaying-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: replaying\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[authstore.backends]\nreplaying = replaying:backend\n")
    result = _authstore("check", "replaying://shared", path=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    rows = _table(result.stdout)
    assert rows["totp"].split()[0] == "FAIL"
    assert rows["cache"].split()[0] == "ok"
    assert "claim_step" in result.stdout


def test_unknown_scheme_exit_code_3() -> None:
    result = _authstore("check", "nosuch://host")
    assert result.returncode == 3
    assert "known schemes" in result.stderr and "sqlite" in result.stderr


def test_unreachable_backend_exit_code_4(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = _authstore("check", f"sqlite:///{blocker}/auth.db")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "backend unavailable" in result.stderr


def test_migrate_is_idempotent_and_purge_reports(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    first, second = _authstore("migrate", url), _authstore("migrate", url)
    assert first.returncode == second.returncode == 0
    latest = len(migrations(SQLiteDialect(), Tables()))
    assert f"schema at version {latest} (applied {latest})" in first.stdout
    assert "applied 0" in second.stdout
    purge = _authstore("purge", url)
    assert purge.returncode == 0
    assert "cache" in purge.stdout and "purged 0" in purge.stdout


def test_usage_error_exit_code_2() -> None:
    assert _authstore("frobnicate").returncode == 2


def test_bare_command_prints_help_and_exits_2() -> None:
    """Help, not a one-line error; exit 2 so `authstore $EMPTY` never looks like success."""
    result = _authstore()
    assert result.returncode == 2
    for command in ("check", "migrate", "purge"):
        assert command in result.stderr
    assert "--version" in result.stderr


def test_version_is_the_installed_distribution_version() -> None:
    import authstore

    result = _authstore("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"authstore {authstore.__version__}"
    assert importlib.metadata.version("authstore") == authstore.__version__


def _fail_closed_row(stdout: str) -> str:
    rows = [line for line in stdout.splitlines() if line.startswith("fail-closed ")]
    assert len(rows) == 1, stdout
    return rows[0].removeprefix("fail-closed").strip()


FAIL_CLOSED = "fails_closed"


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgres"])
def test_check_proves_fail_closed_on_the_backends_twin(
    backend: str, server_url: Callable[[str], str]
) -> None:
    """check URL, with no --unreachable-url, runs every fail-closed test (4 stores, sync and
    async) on the backend's unreachable twin of URL, and --strict passes."""
    url = [] if backend == "sqlite" else [server_url(backend)]
    result = _authstore("check", *url, "-k", FAIL_CLOSED, "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
    row = _fail_closed_row(result.stdout)
    assert row.startswith("ok   12 passed, on "), row  # 4 stores, ping and a group, sync and async
    assert "127.0.0.1" in row or "sqlite:///" in row, row
    assert "SKIPPED" not in result.stdout


def test_check_says_fail_closed_does_not_apply_to_memory() -> None:
    """Memory declares it does no I/O: n/a, even under --strict; the skips name the tests
    and the reason."""
    result = _authstore("check", "memory://", "-k", FAIL_CLOSED, "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _fail_closed_row(result.stdout).startswith("n/a  not applicable: "), result.stdout
    assert "SKIPPED (12) not applicable: the memory:// backend does no I/O" in result.stdout
    assert "test_cache_fails_closed_when_unreachable[sync, async]" in result.stdout


def _run_check_with(
    tmp_path: Path, backend_code: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``authstore check`` in a process where ``backend_code`` registered its backend."""
    (tmp_path / "plugged.py").write_text(textwrap.dedent(backend_code))
    code = f"import sys, plugged\nfrom authstore.cli import main\nsys.exit(main({list(args)!r}))"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )


FAIL_OPEN = """
    from authstore.registry import register_backend
    import authstore_dictcache as dictcache

    class FailOpenCache(dictcache.DictCache):
        def is_blacklisted(self, jti):
            try:
                return super().is_blacklisted(jti)
            except dictcache.BackendUnavailableError:
                return False  # the bug: an outage reads as "not revoked"

    class FailOpenBackend(dictcache.DictCacheBackend):
        def open(self, url, kind, *, asynchronous):
            store = super().open(url, kind, asynchronous=asynchronous)
            (store._sync if asynchronous else store).__class__ = FailOpenCache
            return store

    register_backend("failopen", FailOpenBackend())
"""


def test_check_fails_a_fail_open_backend(tmp_path: Path) -> None:
    """An is_blacklisted that answers False while the backend is down fails the check,
    found through the backend's own unreachable_url (dictcache's offline=1)."""
    result = _run_check_with(
        tmp_path, FAIL_OPEN, "check", "failopen://x", "-k", "fails_closed or blacklist"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert _fail_closed_row(result.stdout).startswith("FAIL 2 failed"), result.stdout
    assert (
        "FAILED test_cache_fails_closed_when_unreachable[sync]: AssertionError: a down backend "
        "must raise BackendUnavailableError: | is_blacklisted answered False"
    ) in result.stdout
    assert _table(result.stdout)["cache"].split()[0] == "FAIL"


NO_TWIN = """
    from authstore.registry import register_backend
    import authstore_dictcache as dictcache

    class NoTwinBackend:
        name = "notwin"
        open = dictcache.backend.open
        migrate = dictcache.backend.migrate
        clear_namespace = dictcache.backend.clear_namespace
        count_namespace = dictcache.backend.count_namespace

    register_backend("notwin", NoTwinBackend())
"""


def test_check_without_an_unreachable_url_says_so_and_strict_fails(tmp_path: Path) -> None:
    args = ("check", "notwin://x", "-k", "cache_fails_closed")
    loose = _run_check_with(tmp_path, NO_TWIN, *args)
    assert loose.returncode == 0, loose.stdout + loose.stderr
    row = _fail_closed_row(loose.stdout)
    assert row.startswith("NOT TESTED: fail-closed is unproven: "), row
    assert "declares no unreachable_url()" in row

    strict = _run_check_with(tmp_path, NO_TWIN, *args, "--strict")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert _fail_closed_row(strict.stdout).startswith("NOT TESTED: "), strict.stdout

    given = _run_check_with(
        tmp_path, NO_TWIN, *args, "--strict", "--unreachable-url", "notwin://x?offline=1"
    )
    assert given.returncode == 0, given.stdout + given.stderr
    assert _fail_closed_row(given.stdout) == "ok   2 passed, on notwin://x?offline=1"


def test_unreachable_url_of_another_backend_is_a_usage_error() -> None:
    result = _authstore("check", "memory://", "--unreachable-url", "redis://127.0.0.1:1/0")
    assert result.returncode == 2
    assert "is not a URL of the memory:// backend" in result.stderr


def test_check_reports_progress_and_elapsed_time() -> None:
    """A line per store on stderr as its last test finishes; the elapsed time in the table."""
    result = _authstore("check", "memory://", "-k", "kv_set or session_create")
    assert result.returncode == 0, result.stdout + result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("authstore check: ")]
    assert {line.split()[2] for line in progress} >= {"cache", "sessions"}, result.stderr
    assert all(line.endswith(" s)") for line in progress), progress
    assert re.search(r"^elapsed\s+\d+\.\d s$", result.stdout, re.M), result.stdout
