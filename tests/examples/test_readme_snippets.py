"""Snippets of the example apps shown in README.md or docs/*.md are the examples' code.

A block preceded by ``<!-- snippet: PATH#NAME -->`` must equal the region of PATH
between ``# [readme:NAME]`` and ``# [/readme:NAME]`` (dedented): the examples' tests run
that code, so the docs cannot drift from something tested. Every other python block,
``<!-- snippet: run:NAME -->`` ones included, is run by tests/docs/test_code_blocks.py.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPET = re.compile(
    r"<!-- snippet: (?P<target>[^\s:]+#\S+) -->\n```python\n(?P<code>.*?)```", re.S
)


def snippets() -> list[tuple[str, str, str]]:
    """(page, PATH#NAME, code) of every example snippet in the docs."""
    found = []
    for page in PAGES:
        for match in SNIPPET.finditer(page.read_text(encoding="utf-8")):
            found.append((page.name, match["target"], match["code"]))
    return found


def region(path: Path, name: str) -> str:
    text = path.read_text(encoding="utf-8")
    begin, end = f"# [readme:{name}]\n", f"# [/readme:{name}]"
    assert text.count(begin) == 1 and text.count(end) == 1, f"{path}: markers for {name!r}"
    body = text[text.index(begin) + len(begin) : text.index(end)]
    body = body[: body.rfind("\n") + 1]  # drop the end marker's own indentation
    return textwrap.dedent(body).strip() + "\n"


def test_every_snippet_is_the_examples_code() -> None:
    for page, target, code in snippets():
        path, _, name = target.partition("#")
        expected = region(ROOT / path, name)
        assert code == expected, (
            f"{page}: the snippet {target} differs from the example's code; paste this:\n{expected}"
        )


def test_a_snippet_that_drifted_is_caught(tmp_path: Path) -> None:
    """The comparison itself: a region and a changed copy of it differ."""
    source = tmp_path / "app.py"
    source.write_text("x = 1\n# [readme:demo]\ny = 2\n# [/readme:demo]\n", encoding="utf-8")
    assert region(source, "demo") == "y = 2\n"
    assert region(source, "demo") != "y = 3\n"
