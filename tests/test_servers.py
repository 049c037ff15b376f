"""Every server the backends need answers here: under strict mode a missing one fails
this run with a message naming it (a later backend test would fail too, less clearly)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.servers import SERVERS


@pytest.mark.parametrize("name", sorted(SERVERS))
def test_server_answers(name: str, server_url: Callable[[str], str]) -> None:
    url = server_url(name)
    SERVERS[name].probe(url)  # a protocol-level round trip, not only an open port
