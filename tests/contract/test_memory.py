"""The whole contract suite, sync and async, against the in-memory backend."""

import uuid
from collections.abc import Iterator

import pytest

from authstore.adapters.memory import backend
from authstore.contracts.testing import StoreContract


class TestMemory(StoreContract):
    backend_does_io = False  # in-process data: it cannot be down

    @pytest.fixture
    def authstore_url(self) -> Iterator[str]:
        # A named memory store, so every store opened in one test shares its data;
        # forgotten afterwards so a long run does not keep every test's data alive.
        name = f"contract-{uuid.uuid4().hex}"
        yield f"memory://{name}"
        backend.forget(name)
