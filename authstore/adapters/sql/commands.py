"""What SQL operations yield to a runner.

Operations write SQL with named ``:name`` parameters whatever the database; the
dialect turns them into the driver's placeholders, so one operation serves
SQLite, PostgreSQL and MySQL. What each operation sends, compiled for each
database: ``tests/sql/golden/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

__all__ = ["Begin", "Command", "Fetch", "Query", "Row"]

Fetch = Literal["none", "one", "all", "rowcount"]
"""What the operation gets back: nothing, the first row or None, every row, or the rows changed."""

Row = tuple[Any, ...]


class Query(NamedTuple):
    """One statement. A named tuple: every operation builds one or more per call, and
    a frozen dataclass costs three times as much to build."""

    sql: str
    params: Mapping[str, object] = MappingProxyType({})
    fetch: Fetch = "none"


@dataclass(frozen=True, slots=True)
class Begin:
    """Start a transaction: the runner commits when the operation returns, rolls back if it raises.

    Only operations of several statements yield it: a lone statement is atomic by
    itself and an explicit transaction would cost extra round trips.
    """


Command = Query | Begin
