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


def test_the_module_docstring_is_the_stores_reference() -> None:
    # Regenerate with authoring.stores_reference() when a protocol changes.
    assert authoring.stores_reference() in (authoring.__doc__ or "")


def test_every_name_is_documented() -> None:
    doc = authoring.__doc__ or ""
    undocumented = []
    for name in [*authoring.__all__, *authoring.TYPES]:
        value = getattr(authoring, name)
        if isinstance(value, (int, float, str, frozenset)):
            # constants: the docstring states each one's exact value or where it applies
            if name not in doc and name not in {"CACHE_CAPABILITIES", "ENTRY_POINT_GROUP"}:
                undocumented.append(name)
        elif (callable(value) and not (getattr(value, "__doc__", None) or "").strip()) or (
            name in authoring.TYPES and name not in doc
        ):
            undocumented.append(name)
    assert undocumented == []


def test_help_reads_as_a_reference() -> None:
    import pydoc

    text = pydoc.render_doc(authoring, renderer=pydoc.plaintext)
    assert len(text.splitlines()) < 600
    for noise in ("inherited from builtins", "inherited from typing.Protocol", "__weakref__"):
        assert noise not in text, noise
    for name in authoring.TYPES:
        assert name in text, name
        assert name not in authoring.__all__, name  # their own help() documents them


def test_every_type_is_importable_and_typed_as_a_re_export() -> None:
    code = "from authstore.authoring import " + ", ".join(authoring.TYPES)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_check_token_is_the_token_argument_rule() -> None:
    import pytest

    assert authoring.check_token("t" * 512) == "t" * 512
    for bad in ("", "x" * 513, "a\x00b", "\ud800"):
        with pytest.raises(ValueError):
            authoring.check_token(bad)
    with pytest.raises(TypeError):
        authoring.check_token(b"token")
    assert authoring.hash_token("abc") == authoring.hash_token(authoring.check_token("abc"))
