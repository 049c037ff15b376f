"""Example-app snippets in examples/README.md, README.md and docs/*.md are the examples' code.

A block preceded by ``<!-- snippet: PATH#NAME -->`` must equal the region of PATH
between ``# [readme:NAME]`` and ``# [/readme:NAME]`` (dedented; blank lines aside, as
``ruff format`` spaces dedented methods out in Markdown): the examples' tests run that
code, so the docs cannot drift from something tested. Other python blocks of README.md
and docs/*.md (``<!-- snippet: run:NAME -->`` ones included) are run by
tests/docs/test_code_blocks.py where that suite exists.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_README = ROOT / "examples" / "README.md"
PAGES = [EXAMPLES_README, ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPET = re.compile(
    r"<!-- snippet: (?P<target>[^\s:]+#\S+) -->\n```python\n(?P<code>.*?)```", re.S
)
SHOWN_BY_EXAMPLES_README = {
    "examples/fastapi_app/app.py#fastapi-lifespan",
    "examples/fastapi_app/app.py#fastapi-verify",
    "examples/authflows.py#authflows-verify",
    "examples/authflows.py#authflows-failed-attempts",
    "examples/django_app/settings.py#django-settings",
    "examples/django_app/stores.py#django-stores",
    "examples/django_app/views.py#django-verify",
}


def snippets(pages: list[Path] = PAGES) -> list[tuple[str, str, str]]:
    """(page, PATH#NAME, code) of every example snippet in the docs."""
    found = []
    for page in pages:
        for match in SNIPPET.finditer(page.read_text(encoding="utf-8")):
            found.append((page.relative_to(ROOT).as_posix(), match["target"], match["code"]))
    return found


def region(path: Path, name: str) -> str:
    text = path.read_text(encoding="utf-8")
    begin, end = f"# [readme:{name}]\n", f"# [/readme:{name}]"
    assert text.count(begin) == 1 and text.count(end) == 1, f"{path}: markers for {name!r}"
    body = text[text.index(begin) + len(begin) : text.index(end)]
    body = body[: body.rfind("\n") + 1]  # drop the end marker's own indentation
    return textwrap.dedent(body).strip() + "\n"


def lines(code: str) -> list[str]:
    """The code's lines but blank ones."""
    return [line for line in code.splitlines() if line.strip()]


def test_every_snippet_is_the_examples_code() -> None:
    for page, target, code in snippets():
        path, _, name = target.partition("#")
        expected = region(ROOT / path, name)
        assert lines(code) == lines(expected), (
            f"{page}: the snippet {target} differs from the example's code; paste this:\n{expected}"
        )


def test_the_examples_readme_shows_its_snippets() -> None:
    shown = [target for _, target, _ in snippets([EXAMPLES_README])]
    assert sorted(shown) == sorted(SHOWN_BY_EXAMPLES_README)


def test_a_snippet_that_drifted_is_caught(tmp_path: Path) -> None:
    """The comparison itself: a region and a changed copy of it differ."""
    source = tmp_path / "app.py"
    source.write_text("x = 1\n# [readme:demo]\ny = 2\n# [/readme:demo]\n", encoding="utf-8")
    assert lines(region(source, "demo")) == lines("y = 2\n\n")
    assert lines(region(source, "demo")) != lines("y = 3\n")
