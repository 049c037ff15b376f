"""The framework integrations (``authstore.integrations.fastapi`` / ``.django``) on the
embedded backends and the PostgreSQL and Redis servers (strict runs fail without them).

``integration_url`` is one backend's URL in a fresh namespace (SQL servers also get a
table prefix of their own, dropped afterwards).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.backends import backend_url

INTEGRATION_BACKENDS = ["memory", "sqlite", "postgres", "redis"]


@pytest.fixture(params=INTEGRATION_BACKENDS)
def integration_backend(
    request: pytest.FixtureRequest, server_url: Callable[[str], str], tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """(backend name, URL): memory is a named data set, so sync and async stores share it."""
    name: str = request.param
    namespace = f"i{uuid.uuid4().hex[:12]}"
    if name == "memory":
        memory_name = f"integrations-{uuid.uuid4().hex}"
        yield name, f"memory://{memory_name}?namespace={namespace}"
        from authstore.adapters.memory import backend

        backend.forget(memory_name)
        return
    with backend_url(name, server_url, tmp_path, namespace=namespace) as url:
        yield name, url


@pytest.fixture
def integration_url(integration_backend: tuple[str, str]) -> str:
    return integration_backend[1]
