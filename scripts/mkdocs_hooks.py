"""MkDocs hooks of the docs site (mkdocs.yml ``hooks:``).

- The home page is the repository's README.md: ``docs/index.md`` holds only a note, and
  its markdown is replaced by the README's, whose ``docs/x.md`` links become ``x.md``.
- A relative link that leaves ``docs/`` (``../examples/fastapi_app/app.py``) must name
  a file or folder of the repository, else the build fails: MkDocs alone cannot tell
  a broken one from a good one there. The target is copied into the site under
  ``repository/`` and the link (raw HTML, which MkDocs leaves alone) points at the
  copy, so the site works offline.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.utils import get_relative_url

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
COPIES = "repository"
LINK = re.compile(r"(?<!\!)\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")
_copied: set[str] = set()


def on_pre_build(config: Any) -> None:
    _copied.clear()


def _outside_text(markdown: str, rewrite: Any) -> str:
    """Apply ``rewrite`` to the links of every line outside fenced code blocks."""
    out, fenced = [], False
    for line in markdown.split("\n"):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
        out.append(line if fenced else LINK.sub(rewrite, line))
    return "\n".join(out)


def _is_relative(target: str) -> bool:
    return not (
        target.startswith(("#", "/", "mailto:")) or re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target)
    )


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs_dir = Path(config["docs_dir"]).resolve()
    source = page.file.src_uri
    if source == "index.md":
        markdown, base = README.read_text(encoding="utf-8"), ROOT
    else:
        base = (docs_dir / source).parent

    def rewrite(match: re.Match[str]) -> str:
        target = match["target"]
        if not _is_relative(target):
            return match[0]
        path, _, anchor = target.partition("#")
        resolved = (base / path).resolve()
        if resolved.is_relative_to(docs_dir):
            inside = PurePosixPath(resolved.relative_to(docs_dir).as_posix())
            here = PurePosixPath(source).parent
            relative = PurePosixPath(*[".."] * len(here.parts), inside).as_posix()
            return f"[{match['text']}]({relative}{'#' + anchor if anchor else ''})"
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            raise PluginError(f"{source}: the link {target!r} names no file of the repository")
        if resolved == README:
            url = get_relative_url("", page.url).rstrip("/") + "/"  # the home page
        else:
            name = resolved.relative_to(ROOT).as_posix()
            _copied.add(name)
            url = get_relative_url(f"{COPIES}/{name}", page.url)
            if resolved.is_dir():
                url += "/"
        # Raw HTML: MkDocs would look for the copy among the docs; it exists in the site.
        return f'<a href="{url}{"#" + anchor if anchor else ""}">{match["text"]}</a>'

    return _outside_text(markdown, rewrite)


def on_post_build(config: Any) -> None:
    site = Path(config["site_dir"])
    for name in sorted(_copied):
        source, copy = ROOT / name, site / COPIES / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(
                source, copy, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(source, copy)
