"""The benchmark command rewrites the summary block of docs/performance.md, and only it."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # benchmarks/ is a top-level package of the checkout
try:
    from benchmarks.suite.report import END, START, SUMMARY_PAGE, replace_summary
finally:
    sys.path.remove(str(ROOT))


def test_the_summary_lives_between_markers_of_the_performance_page() -> None:
    assert SUMMARY_PAGE == ROOT / "docs" / "performance.md"
    text = SUMMARY_PAGE.read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1
    assert text.index(START) < text.index(END)


def test_a_full_run_replaces_the_block_and_nothing_else(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    original = SUMMARY_PAGE.read_text(encoding="utf-8")
    page.write_text(original, encoding="utf-8")
    summary = f"{START}\nLast full run: now.\n{END}"
    assert replace_summary(page, summary)
    rewritten = page.read_text(encoding="utf-8")
    before, after = original.split(START)[0], original.split(END)[1]
    assert rewritten == before + summary + after


def test_a_page_without_markers_is_left_alone(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n", encoding="utf-8")
    assert not replace_summary(page, f"{START}\nx\n{END}")
    assert page.read_text(encoding="utf-8") == "# Performance\n"
    assert not replace_summary(tmp_path / "missing.md", f"{START}\nx\n{END}")
