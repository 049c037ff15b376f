"""The backend authors' API: one module, no driver import, documented."""

import subprocess
import sys
from pathlib import Path

import authstore.authoring as authoring
from authstore.contracts.cache import CACHE_CAPABILITIES

DOC = Path(__file__).parents[2] / "docs" / "backend-authors.md"


def test_everything_listed_is_exported() -> None:
    missing = [name for name in authoring.__all__ if not hasattr(authoring, name)]
    assert missing == []


def test_importing_it_imports_no_driver_nor_backend() -> None:
    code = "import sys, authstore.authoring\nprint(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.check_output([sys.executable, "-c", code], text=True).split())
    heavy = {"sqlite3", "psycopg", "asyncpg", "pymysql", "redis", "pymongo", "pymemcache"}
    # the shared machinery (limits, rate-limit arithmetic) may load; no backend may
    backends = {m for m in loaded if m.startswith("authstore.adapters.")}
    backends -= {m for m in backends if m.startswith("authstore.adapters.common")}
    assert not {m for m in loaded if m.split(".")[0] in heavy} | backends


def test_the_guide_names_every_capability_and_helper() -> None:
    text = DOC.read_text()
    for capability in CACHE_CAPABILITIES:
        assert f"| `{capability}` |" in text, capability
    for helper in (
        "url.reader()",
        "options.done()",
        "check_key",
        "check_ttl",
        "check_count",
        "authstore_unreachable_url",
        "backend_does_io",
        "ConfigurationError",
        "migrate",
        "authstore.backends",
    ):
        assert helper in text, helper


def test_public_helpers_have_docstrings() -> None:
    from authstore.registry import Options, StoreURL

    helpers = [StoreURL.reader, Options.text, Options.done, Options.integer, Options.seconds]
    helpers += [getattr(authoring, name) for name in authoring.__all__ if name.startswith("check_")]
    assert [h.__qualname__ for h in helpers if not (h.__doc__ or "").strip()] == []
