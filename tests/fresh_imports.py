"""What a fresh interpreter has imported once it imported one module: for the tests
that keep drivers and heavy dependencies out of an import until a store needs them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable


def loaded_after_import(module: str, candidates: Iterable[str]) -> list[str]:
    """Which of ``candidates`` are in ``sys.modules`` of a new interpreter that ran
    ``import module``."""
    code = (
        f"import sys, {module}\n"
        f"print(*(name for name in {sorted(candidates)!r} if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return result.stdout.split()
