"""The ``authstore`` command as a script sees it: output and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
    assert "applied 2" in first.stdout and "applied 0" in second.stdout
    purge = _authstore("purge", url)
    assert purge.returncode == 0
    assert "cache" in purge.stdout and "purged 0" in purge.stdout


def test_usage_error_exit_code_2() -> None:
    assert _authstore("frobnicate").returncode == 2
    assert _authstore().returncode == 2
