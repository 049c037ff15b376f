"""The SQL each operation sends, per dialect, is what the golden files say.

A change to an operation's SQL fails here with the diff; if the change is meant,
regenerate with ``python -m tests.sql.golden --write`` and review the diff of the
files like any other code.
"""

from __future__ import annotations

import pytest

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
