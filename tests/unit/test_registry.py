"""URL parsing, redaction and scheme discovery through real entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import authstore
from authstore import (
    ConfigurationError,
    MissingDriverError,
    StoreURL,
    UnknownSchemeError,
    open_cache,
)
from authstore.registry import (
    Backend,
    backend_for,
    known_schemes,
    register_backend,
    unregister_backend,
)
from tests.repeatable import repeatable


def test_parse_full_url() -> None:
    url = StoreURL.parse("postgresql://alice:p%40ss@db.example:5432/auth?pool_size=5&namespace=app")
    assert url.scheme == "postgresql"
    assert url.username == "alice"
    assert url.password == "p@ss"
    assert url.hosts == (("db.example", 5432),)
    assert url.path == "/auth"
    assert dict(url.options) == {"pool_size": "5", "namespace": "app"}


def test_parse_many_hosts_and_ipv6() -> None:
    url = StoreURL.parse("memcached://h1:11211,h2:11212,[::1]:11213")
    assert url.hosts == (("h1", 11211), ("h2", 11212), ("::1", 11213))
    assert "[::1]:11213" in url.redacted()


@pytest.mark.parametrize(
    "text",
    [
        "redis://:hunter2@localhost:6379/0",
        "postgresql://bob:hunter2@localhost/db",
        "mysql://bob:hunter2@localhost/db?password=hunter2",
    ],
)
def test_password_never_in_repr_str_or_errors(text: str) -> None:
    url = StoreURL.parse(text)
    assert url.password == "hunter2" or url.options.get("password") == "hunter2"
    for shown in (repr(url), str(url), url.redacted(), repr(StoreURL.parse(text))):
        assert "hunter2" not in shown
    with pytest.raises(UnknownSchemeError) as caught:
        open_cache(text.replace("://", "x://", 1))
    assert "hunter2" not in str(caught.value)


def test_malformed_url_error_hides_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        StoreURL.parse("redis://bob:hunter2@localhost:notaport/0")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigurationError):
        StoreURL.parse("localhost:6379")
    with pytest.raises(TypeError):
        StoreURL.parse(b"memory://")  # type: ignore[arg-type]


def test_unknown_scheme_lists_known_ones() -> None:
    with pytest.raises(UnknownSchemeError) as caught:
        open_cache("nosuch://x")
    message = str(caught.value)
    assert "nosuch" in message
    for scheme in ("memory", "sqlite"):
        assert scheme in message
    assert set(known_schemes()) >= {"memory", "sqlite"}


def test_unknown_option_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="colour"):
        open_cache("memory://?colour=blue")
    with pytest.raises(ConfigurationError, match="max_entries"):
        open_cache("memory://", max_entries="many")


def test_register_backend_conflict_and_unregister() -> None:
    memory_backend, _ = backend_for("memory://")
    assert isinstance(memory_backend, Backend)
    with pytest.raises(authstore.SchemeConflictError):
        register_backend("memory", memory_backend)
    register_backend("mem2", memory_backend)
    try:
        with open_cache("mem2://") as cache:
            cache.set("k", 1)
            assert cache.get("k") == 1
    finally:
        unregister_backend("mem2")
    with pytest.raises(UnknownSchemeError):
        open_cache("mem2://")


def _fake_distribution(root: Path, name: str, scheme: str, target: str) -> None:
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[authstore.backends]\n{scheme} = {target}\n")


def _run(code: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={"PYTHONPATH": str(path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _scheme_conflict(tmp_path: Path, url: str, *claims: tuple[str, str, str]) -> str:
    """In a fresh interpreter with the fake distributions ``claims`` (name, scheme,
    target) installed, opening a cache at ``url`` fails: the error's message."""
    for name, scheme, target in claims:
        _fake_distribution(tmp_path, name, scheme, target)
    code = f"""
        import authstore
        try:
            authstore.open_cache({url!r})
        except authstore.SchemeConflictError as error:
            print("CONFLICT", error)
        """
    result = _run(code, tmp_path)
    assert "CONFLICT" in result.stdout, result.stderr
    return result.stdout


def test_two_packages_claiming_one_scheme_is_an_error(tmp_path: Path) -> None:
    message = _scheme_conflict(
        tmp_path,
        "memory://",
        ("plugin_a", "dup", "authstore.adapters.memory:backend"),
        ("plugin_b", "dup", "plugin_b:backend"),
    )
    assert "plugin_a" in message and "plugin_b" in message


def test_third_party_cannot_take_a_builtin_scheme(tmp_path: Path) -> None:
    _scheme_conflict(tmp_path, "sqlite:///:memory:", ("hijack", "sqlite", "hijack:backend"))


def test_entry_point_scheme_is_found(tmp_path: Path) -> None:
    _fake_distribution(tmp_path, "extra_memory", "extramem", "authstore.adapters.memory:backend")
    result = _run(
        """
        import authstore
        with authstore.open_cache("extramem://") as cache:
            cache.set("k", "v")
            print("GOT", cache.get("k"), "extramem" in authstore.known_schemes())
        """,
        tmp_path,
    )
    assert "GOT v True" in result.stdout, result.stderr


def test_missing_driver_names_the_extra(tmp_path: Path) -> None:
    result = _run(
        """
        import sys
        sys.modules["aiomcache"] = None  # as if it were not installed
        import authstore
        try:
            authstore.open_async_cache("memcached://127.0.0.1:11211")
        except authstore.MissingDriverError as error:
            print("MISSING", error)
        """,
        tmp_path,
    )
    assert 'pip install "authstore[memcached]"' in result.stdout, result.stdout + result.stderr
    assert issubclass(MissingDriverError, ImportError)


def test_importing_authstore_imports_no_third_party_module() -> None:
    result = _run(
        """
        import sys
        import authstore, authstore.adapters.memory, authstore.adapters.sqlite, authstore.cli
        foreign = sorted(
            name for name in sys.modules
            if name.split(".")[0] not in sys.stdlib_module_names
            and not name.startswith(("authstore", "_"))
        )
        print("FOREIGN", foreign)
        """,
        Path(authstore.__file__).parent.parent,
    )
    assert "FOREIGN []" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "password", "hosts", "path"),
    [
        (
            "redis://:Zq1234/x+5678==@127.0.0.1:6379/0",
            "Zq1234/x+5678==",
            [("127.0.0.1", 6379)],
            "/0",
        ),
        ("redis://bob:p?ss@host:6379/0", "p?ss", [("host", 6379)], "/0"),
        ("redis://bob:a@b@h:1/0", "a@b", [("h", 1)], "/0"),
        ("postgresql://u:x/y@h1:5432,h2:5433/db", "x/y", [("h1", 5432), ("h2", 5433)], "/db"),
    ],
)
def test_unencoded_password_characters_stay_in_the_password(
    text: str, password: str, hosts: list[tuple[str, int]], path: str
) -> None:
    # base64 passwords hold '/', '+' and '='; people paste them without percent-encoding
    url = StoreURL.parse(text)
    assert (url.password, list(url.hosts), url.path) == (password, hosts, path)
    assert password not in repr(url) and password not in url.redacted()


def test_an_at_sign_outside_the_authority_is_not_userinfo() -> None:
    assert StoreURL.parse("sqlite:////tmp/a@b.db").path == "//tmp/a@b.db"
    url = StoreURL.parse("redis://host:1/0?client_name=a%40b.com")
    assert (url.password, url.hosts) == (None, (("host", 1),))
    assert dict(url.options) == {"client_name": "a@b.com"}
    # Unencoded, an '@' in an option could as well end a password holding '?' and '=':
    # refused with a message that repeats nothing of the URL past its scheme.
    for text in ("redis://host:1/0?client_name=a@b.com", "redis://bob:p/w?x=y@h/0"):
        with pytest.raises(ConfigurationError, match="percent-encode") as caught:
            StoreURL.parse(text)
        assert "host" not in str(caught.value) and "p/w" not in str(caught.value)


PASSWORD_CHARS = "abcdefXYZ0123456789/+=?#@:%!$&'()*;,[]~._-"


def _fragments(secret: str, size: int = 4) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def test_no_part_of_any_password_reaches_a_message() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    templates = [
        "redis://bob:{}@127.0.0.1:6379/0",
        "redis://:{}@127.0.0.1:notaport/0",
        "postgresql://bob:{}@db.example:5432/app?bogus=1",
        "mysql://bob:{}@h1,h2:x/app",
        "mongodb://bob:{}@h/db?readPreference=secondary",
        "redisx://bob:{}@h/0",
    ]

    @repeatable(300)
    @given(st.text(PASSWORD_CHARS, min_size=8, max_size=40), st.sampled_from(templates))
    def check(password: str, template: str) -> None:
        text = template.format(password)
        # fragments the template itself shows (a host, a scheme) prove nothing
        secret = _fragments(password) - _fragments(template.replace("{}", "\x00"))
        shown: list[str] = []
        try:
            url = StoreURL.parse(text)
            shown += [repr(url), str(url)]
            open_cache(url, connect_timeout=0.01).close()
        except (ConfigurationError, UnknownSchemeError, ValueError, TypeError) as error:
            shown.append(str(error))
        except authstore.AuthStoreError as error:  # a backend that could not connect
            shown.append(str(error))
        leaked = sorted(f for f in secret for message in shown if f in message)
        assert not leaked, (text, shown)

    check()
