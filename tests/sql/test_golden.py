"""The SQL each operation sends, per dialect, is what the golden files say.

A change to an operation's SQL fails here with the diff; if the change is meant,
regenerate with ``python -m tests.sql.golden --write`` and review the diff of the
files like any other code.
"""

from __future__ import annotations

import pytest

from authstore.adapters.common.ops import CacheOps, MagicLinkOps, SessionOps, TotpOps
from tests.sql import golden


def test_the_golden_files_hold_the_sql_every_operation_sends() -> None:
    problems = golden.differences()
    if problems:
        pytest.fail(
            f"{len(problems)} golden SQL file(s) differ from what the operations send now.\n"
            f"If the change is meant, regenerate with `{golden.COMMAND}` and review the diff.\n\n"
            + "\n".join(problems),
            pytrace=False,
        )


def test_every_dialect_has_a_file_for_every_operation() -> None:
    expected = {path for path, _ in golden.generate()}
    assert len(expected) == len(golden.DIALECTS) * len(golden.OPERATIONS)
    for path in expected:
        assert (golden.GOLDEN / path).is_file(), path


def test_every_operation_of_every_contract_has_golden_sql() -> None:
    """A new operation gets its golden file (and its branches) with it."""
    contracts = {"cache": CacheOps, "sessions": SessionOps, "totp": TotpOps, "links": MagicLinkOps}
    missing = [
        f"{contract}.{name}"
        for contract, protocol in contracts.items()
        for name in vars(protocol)
        if not name.startswith("_") and f"{contract}.{name}" not in golden.OPERATIONS
    ]
    assert "health.ping" in golden.OPERATIONS
    assert not missing, f"add these to tests/sql/golden.py OPERATIONS: {missing}"
