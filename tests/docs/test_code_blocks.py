"""Every ```python block of README.md and docs/*.md runs, so no guide shows code that fails.

A page's blocks run in order in one namespace, as a reader pastes them one after the
other (like a doctest), in a temporary working directory (``sqlite:///auth.db`` lands
there). A URL on ``localhost`` stands for the test server of its scheme: it is replaced
by that server's URL (``AUTHSTORE_TEST_*_URL``, see tests/servers.py), keeping the
block's query options, with a fresh
``namespace`` (a ``namespace="..."`` argument gets the same suffix) and, on SQL servers, a ``table_prefix`` of its own whose tables are
dropped afterwards. So ``redis://localhost:6379/0`` in a quick start runs against the
shared test Redis without touching anyone's keys.

A block that cannot run on its own carries a visible marker with its reason on the
line before it, ``<!-- run: skip (needs a tenxyte project) -->``; an unmarked block
that raises fails the test. A block after ``<!-- snippet: PATH#NAME -->`` is the code
of an example app region, checked equal to it by tests/examples/test_readme_snippets.py
and run by the example's own tests, so it is not run here either.
"""

from __future__ import annotations

import re
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.backends import CLEANUPS

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```python[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.S | re.M)
SKIP = re.compile(r"<!-- run: skip \((?P<reason>[^)]*\S[^)]*)\) -->")
SNIPPET = re.compile(r"<!-- snippet: (?!run:)\S+#\S+ -->")
LOCAL_URL = re.compile(
    r"""(?P<quote>["'])(?P<scheme>redis|rediss|postgresql|postgres|mysql|mariadb|mongodb|memcached)"""
    r"""://(?:[^"'@/]*@)?localhost(?::\d+)?(?P<rest>[^"']*)(?P=quote)"""
)
NAMESPACE_ARGUMENT = re.compile(r"""\bnamespace=(?P<quote>["'])(?P<name>[\w.-]{1,40})(?P=quote)""")
SERVER_OF = {
    "redis": "redis",
    "rediss": "redis",
    "postgresql": "postgres",
    "postgres": "postgres",
    "mysql": "mariadb",
    "mariadb": "mariadb",
    "mongodb": "mongodb",
    "memcached": "memcached",
}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    code: str
    skip_reason: str | None
    marked_skip: bool

    @property
    def where(self) -> str:
        shown = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page.name
        return f"{shown}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The page's python blocks, each with the marker on the last non-blank line before it."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        line = text.count("\n", 0, match.start()) + 1
        skip = SKIP.fullmatch(before)
        if before.startswith("<!-- run:") and skip is None:
            raise AssertionError(
                f"{page.name}:{line}: malformed marker {before!r}; "
                "write <!-- run: skip (why it cannot run) -->"
            )
        reason = skip["reason"] if skip else None
        if SNIPPET.fullmatch(before):
            reason = "an example app's code, checked by tests/examples/test_readme_snippets.py"
        found.append(Block(page, line, match["code"], reason, skip is not None))
    return found


@pytest.fixture
def local_servers(server_url: Callable[[str], str]) -> Iterator[Callable[[str], str]]:
    """Rewrites a block's localhost URLs to the test servers, each in a fresh namespace."""
    tag = f"docs{uuid.uuid4().hex[:10]}"
    used: set[tuple[str, str]] = set()

    def rewrite(code: str) -> str:
        def replace(match: re.Match[str]) -> str:
            server = SERVER_OF[match["scheme"]]
            url = server_url(server)
            query = match["rest"].partition("?")[2]  # the block's own options are kept
            options = [*filter(None, query.split("&")), f"namespace={tag}"]
            if server in CLEANUPS:
                options.append(f"table_prefix={tag}_")
                used.add((server, url))
            joined = "&".join(options)
            return f"{match['quote']}{url}{'&' if '?' in url else '?'}{joined}{match['quote']}"

        code = LOCAL_URL.sub(replace, code)
        # namespace="myapp" would override the URL's: it gets the run's tag too.
        return NAMESPACE_ARGUMENT.sub(lambda m: f'namespace="{m["name"]}-{tag}"', code)

    yield rewrite
    for server, url in used:
        CLEANUPS[server](url, f"{tag}_")


def run_page(page: Path, rewrite: Callable[[str], str]) -> None:
    """Run the page's blocks in order in one namespace; fail naming the first that raises.
    Process-wide switches a page flips (observability.enable()) are put back afterwards."""
    from authstore import observability

    was_enabled = observability.enabled()
    try:
        _run_blocks(page, rewrite)
    finally:
        if observability.enabled() and not was_enabled:
            observability.disable()


def _run_blocks(page: Path, rewrite: Callable[[str], str]) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for block in blocks(page):
        if block.skip_reason is not None:
            continue
        failure = None
        try:
            exec(compile(rewrite(block.code), block.where, "exec"), namespace)
        except BaseException as error:  # a block's SystemExit or KeyboardInterrupt fails too
            if isinstance(error, pytest.skip.Exception | pytest.fail.Exception):
                raise
            frames = error.__traceback__.tb_next if error.__traceback__ else None
            failure = "".join(traceback.format_exception(type(error), error, frames))
        if failure is not None:
            pytest.fail(
                f"the ```python block at {block.where} does not run "
                f"(mark it <!-- run: skip (why) --> only if it cannot):\n{failure}",
                pytrace=False,
            )


@pytest.mark.filterwarnings("ignore:TENXYTE_JWT_ALGORITHM is 'HS256'")
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_code_block_runs(
    page: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    local_servers: Callable[[str], str],
) -> None:
    monkeypatch.chdir(tmp_path)
    run_page(page, local_servers)


def test_skips_stay_few() -> None:
    """Each skip is visible and justified; this keeps them rare (raise the bound knowingly)."""
    skipped = [b.where for page in PAGES for b in blocks(page) if b.marked_skip]
    assert len(skipped) <= 6, skipped


PAGE = """# A page

```python
total = 1
```

{marker}
```python
total += 1
assert total == 3, total
```
"""


def test_an_unmarked_block_that_raises_fails(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE.format(marker=""), encoding="utf-8")
    with pytest.raises(pytest.fail.Exception, match=r"page.md:8 does not run"):
        run_page(page, str)


def test_a_marked_block_is_not_run_and_a_bad_marker_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE.format(marker="<!-- run: skip (shows a failure) -->"), encoding="utf-8")
    run_page(page, str)
    page.write_text(PAGE.format(marker="<!-- run: skip -->"), encoding="utf-8")
    with pytest.raises(AssertionError, match="malformed marker"):
        blocks(page)


def test_localhost_urls_become_the_test_servers(
    local_servers: Callable[[str], str], server_url: Callable[[str], str]
) -> None:
    code = local_servers('open_cache("redis://localhost:6379/0?timeout=2", namespace="app")')
    assert server_url("redis") in code
    assert "localhost" not in code
    assert "timeout=2&namespace=docs" in code
    assert re.search(r"namespace=docs\w+", code)
    assert re.search(r'namespace="app-docs\w+"', code)


def test_sql_urls_get_a_table_prefix_of_their_own(
    local_servers: Callable[[str], str], server_url: Callable[[str], str]
) -> None:
    code = local_servers('open_sessions("postgresql://app:secret@localhost:5432/app")')
    assert server_url("postgres") in code
    assert re.search(r"namespace=docs\w+&table_prefix=docs\w+_", code)
