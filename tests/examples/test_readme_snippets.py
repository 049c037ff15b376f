"""The examples' README shows the examples' code, and README.md's crypto snippet runs.

A block preceded by ``<!-- snippet: PATH#NAME -->`` must equal the region of PATH
between ``# [readme:NAME]`` and ``# [/readme:NAME]`` (dedented, blank lines aside): the
examples' tests run that code, so the docs cannot drift from something tested. A block preceded by
``<!-- snippet: run:NAME -->`` is executed here.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = re.compile(r"<!-- snippet: (?P<target>\S+) -->\n```python\n(?P<code>.*?)```", re.S)
DOCS = ("README.md", "examples/README.md")
EXPECTED = {
    "examples/fastapi_app/app.py#fastapi-lifespan",
    "examples/fastapi_app/app.py#fastapi-verify",
    "examples/authflows.py#authflows-verify",
    "examples/authflows.py#authflows-failed-attempts",
    "examples/django_app/settings.py#django-settings",
    "examples/django_app/stores.py#django-stores",
    "examples/django_app/views.py#django-verify",
    "run:crypto",
}


def snippets() -> dict[str, str]:
    found: dict[str, str] = {}
    for doc in DOCS:
        for match in SNIPPET.finditer((ROOT / doc).read_text(encoding="utf-8")):
            assert match["target"] not in found, f"{doc}: snippet {match['target']} twice"
            found[match["target"]] = match["code"]
    return found


def region(path: Path, name: str) -> str:
    text = path.read_text(encoding="utf-8")
    begin, end = f"# [readme:{name}]\n", f"# [/readme:{name}]"
    assert text.count(begin) == 1 and text.count(end) == 1, f"{path}: markers for {name!r}"
    body = text[text.index(begin) + len(begin) : text.index(end)]
    body = body[: body.rfind("\n") + 1]  # drop the end marker's own indentation
    return textwrap.dedent(body).strip() + "\n"


def lines(code: str) -> list[str]:
    """The code's lines but blank ones: ``ruff format`` spaces dedented methods out in Markdown."""
    return [line for line in code.splitlines() if line.strip()]


def test_the_readme_shows_every_snippet() -> None:
    assert set(snippets()) == EXPECTED


@pytest.mark.parametrize("target", sorted(t for t in EXPECTED if not t.startswith("run:")))
def test_a_readme_snippet_is_the_examples_code(target: str) -> None:
    path, _, name = target.partition("#")
    expected = region(ROOT / path, name)
    assert lines(snippets()[target]) == lines(expected), (
        f"the docs' snippet {target} differs from the example's code; paste this:\n{expected}"
    )


@pytest.mark.parametrize("target", sorted(t for t in EXPECTED if t.startswith("run:")))
def test_a_readme_snippet_runs(target: str) -> None:
    exec(compile(snippets()[target], f"README.md {target}", "exec"), {})
