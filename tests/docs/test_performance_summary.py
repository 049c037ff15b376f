"""The benchmark command rewrites the summary block of docs/performance.md, and only it."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.suite.report import END, START, SUMMARY_PAGE, replace_summary

ROOT = Path(__file__).resolve().parents[2]


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


def test_a_full_run_writes_its_summary_into_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``write`` of a full run into the default folder rewrites the page's block; a run
    with a smaller budget leaves it alone (both folders redirected to tmp_path)."""
    from benchmarks.suite import report
    from benchmarks.suite.session import Results

    page = tmp_path / "performance.md"
    page.write_text(f"# Performance\n\n{START}\nold\n{END}\n\nafter\n", encoding="utf-8")
    monkeypatch.setattr(report, "SUMMARY_PAGE", page)
    monkeypatch.setattr(report, "DEFAULT_OUT", tmp_path / "results")
    facts = {
        "date": "today",
        "cpu": "a CPU",
        "cores": 2,
        "load": "0.1 0.1 0.1",
        "platform": "Linux",
        "python": "3",
        "servers": {},
        "packages": {},
    }

    report.write(Results("quick", facts), tmp_path / "results")
    assert "\nold\n" in page.read_text(encoding="utf-8")

    report.write(Results("full", facts), tmp_path / "results")
    text = page.read_text(encoding="utf-8")
    assert "\nold\n" not in text
    assert "Last full run: today on a CPU" in text
    assert "(../benchmarks/results/report.md)" in text  # relative to docs/
    assert text.startswith("# Performance\n\n") and text.endswith(f"{END}\n\nafter\n")
