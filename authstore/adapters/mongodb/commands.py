"""What a MongoDB operation yields to its runner, and what the runner throws back into it.

Every command is a raw database command document (``findAndModify``, ``update``,
``delete``, ``aggregate``, ``createIndexes`` ...), so the sync and async runners differ
by one call: ``database.command(document)`` or ``await database.command(document)``.
Multi-document steps (session eviction, a magic link revoking its predecessors) yield
``StartTransaction`` ... ``Commit``; a transaction that loses a write conflict gets
``Conflict`` thrown in, and the operation starts over. Such a transaction first yields
``Exclusive``: operations of one store on the same user take turns in the process
instead of conflicting on the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authstore.contracts.errors import BackendError

__all__ = [
    "Abort",
    "Command",
    "Commit",
    "Conflict",
    "DuplicateKey",
    "Exclusive",
    "StartTransaction",
]


@dataclass(frozen=True, slots=True)
class Command:
    """One database command; the runner answers with the server's reply document."""

    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StartTransaction:
    """Later commands run in one transaction until ``Commit`` or ``Abort``;
    ``write_concern`` (``durability=replicated``) is its commit's."""

    write_concern: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Exclusive:
    """Until the operation ends, no other operation of this runner holding the same
    ``name`` runs (the runner waits for it within the timeout). Concurrent transactions
    on one user's records then queue in the process instead of conflicting on the server,
    each conflict costing a retry: contention degrades to waiting."""

    name: str


@dataclass(frozen=True, slots=True)
class Commit:
    pass


@dataclass(frozen=True, slots=True)
class Abort:
    pass


class DuplicateKey(BackendError):
    """A write met an existing ``_id`` or unique key (a racing first upsert, or ``add``
    finding a live entry). Thrown into the operation, which decides what it means."""


class Conflict(BackendError):
    """A transaction lost a write conflict (TransientTransactionError): start it over."""
