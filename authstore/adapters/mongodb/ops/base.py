"""What the four contracts' MongoDB operations share: expressions, commands, retries.

Every single-record operation is one command on one document addressed by its
``_id`` (``findAndModify`` or ``update`` with an aggregation-pipeline update, a guarded
``delete``, or a one-stage ``aggregate`` read), so it is atomic and costs one round
trip. Times come from the server: ``$$NOW`` as milliseconds (``{"$toLong": "$$NOW"}``,
which real MongoDB and the wire-compatible test server both evaluate the same way).
Expiry is kept twice per document: ``x`` (epoch milliseconds, what every read and
write compares with ``$$NOW``, so an expired document is absent at once) and ``e`` (a
BSON date, for the TTL index that reclaims it physically about a minute later).

Rate-limit transitions mirror ``ratelimit.step_*`` expression by expression, on the
same doubles (seconds = milliseconds / 1000), so they compute the same state.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from authstore.adapters.common.ops import Op
from authstore.adapters.mongodb.commands import (
    Abort,
    Command,
    Commit,
    Conflict,
    DuplicateKey,
    Exclusive,
    StartTransaction,
)
from authstore.contracts.errors import BackendError, TokenInUseError

__all__ = ["Collections", "Pause", "create_indexes", "namespace_documents"]

T = TypeVar("T")

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NOW: dict[str, Any] = {"$toLong": "$$NOW"}
"""The server's clock in epoch milliseconds (a long)."""
NOW_S: dict[str, Any] = {"$divide": [NOW, 1000]}
"""The server's clock in epoch seconds, the double ``ratelimit.step_*`` work on."""
UPSERT_ATTEMPTS = 5
"""A first upsert racing another may fail with a duplicate key (MongoDB) or get an empty
reply (the test server); the next attempt finds the document."""
TRANSACTION_ATTEMPTS = 200
"""Conflicting transactions retry with a short random pause; the timeout bounds them too."""
CHUNK = 1000
BATCH = 10_000


class Pause:
    """Ask the runner to wait (between retries of a conflicting transaction)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __repr__(self) -> str:
        return f"Pause({self.seconds:.3f})"


class Collections:
    """Collection names under one prefix (``collection_prefix``, default ``authstore_``)."""

    def __init__(self, prefix: str = "authstore_") -> None:
        if not re.fullmatch(r"[A-Za-z0-9_]{0,40}", prefix):
            raise ValueError("collection_prefix must be at most 40 letters, digits or underscores")
        self.prefix = prefix
        self.cache = f"{prefix}cache"
        self.sessions = f"{prefix}sessions"
        self.totp = f"{prefix}totp"
        self.magic_links = f"{prefix}magic_links"
        self.locks = f"{prefix}locks"

    def __repr__(self) -> str:
        return f"Collections({self.prefix!r})"


# --- expressions and commands --------------------------------------------------------


def _lit(value: object) -> dict[str, object]:
    """A value as itself: strings starting with $ and lists are not expressions."""
    return {"$literal": value}


def _expiry(field: str = "$x") -> dict[str, Any]:
    return {"$ifNull": [field, INT64_MAX]}


LIVE: dict[str, Any] = {"$gt": [_expiry(), NOW]}
"""No expiry, or an expiry after the server's now."""
DEAD: dict[str, Any] = {"$lte": [_expiry(), NOW]}


def _in(ms: float) -> dict[str, Any]:
    """Epoch milliseconds ``ms`` from the server's now, as a long."""
    return {"$toLong": {"$add": [NOW, ms]}}


def _date(ms_expression: object) -> dict[str, Any]:
    return {"$toDate": ms_expression}


def _lets(blocks: Sequence[dict[str, Any]], result: object) -> object:
    """Nested $let: each block's variables can use the earlier blocks' (``$$name``)."""
    for variables in reversed(blocks):
        result = {"$let": {"vars": variables, "in": result}}
    return result


def _find_and_modify(
    collection: str,
    query: dict[str, Any],
    update: Any,
    *,
    upsert: bool = False,
    fields: dict[str, Any] | None = None,
) -> Command:
    document: dict[str, Any] = {
        "findAndModify": collection,
        "query": query,
        "update": update,
        "new": True,
        "upsert": upsert,
    }
    if fields is not None:
        document["fields"] = fields
    return Command(document)


def _update(
    collection: str, statements: Sequence[tuple[dict[str, Any], Any, bool]], *, multi: bool = False
) -> Command:
    return Command(
        {
            "update": collection,
            "updates": [
                {"q": query, "u": update, "upsert": upsert, "multi": multi}
                for query, update, upsert in statements
            ],
            "ordered": True,
        }
    )


def _delete(collection: str, query: dict[str, Any], *, many: bool) -> Command:
    return Command({"delete": collection, "deletes": [{"q": query, "limit": 0 if many else 1}]})


def _aggregate(collection: str, pipeline: list[dict[str, Any]]) -> Op[list[dict[str, Any]]]:
    """All documents of an aggregation: one round trip unless it returns more than BATCH."""
    reply = yield Command(
        {"aggregate": collection, "pipeline": pipeline, "cursor": {"batchSize": BATCH}}
    )
    cursor = reply["cursor"]
    found: list[dict[str, Any]] = list(cursor["firstBatch"])
    while cursor.get("id"):
        reply = yield Command(
            {"getMore": cursor["id"], "collection": collection, "batchSize": BATCH}
        )
        cursor = reply["cursor"]
        found.extend(cursor["nextBatch"])
    return found


def _one(collection: str, key: str, project: dict[str, Any] | None = None) -> Op[Any]:
    """The live document ``key``, or None. The $expr comes in a second $match: the test
    server uses the _id index only for a $match on _id alone (MongoDB merges them)."""
    pipeline: list[dict[str, Any]] = [{"$match": {"_id": key}}, {"$match": {"$expr": LIVE}}]
    if project is not None:
        pipeline.append({"$project": project})
    found = yield from _aggregate(collection, pipeline)
    return found[0] if found else None


def _live(query: dict[str, Any]) -> dict[str, Any]:
    return {**query, "$expr": LIVE}


def _live_matches(query: dict[str, Any]) -> list[dict[str, Any]]:
    """$match stages for the live documents ``query`` selects (see _one)."""
    return [{"$match": query}, {"$match": {"$expr": LIVE}}]


def _count(collection: str, match: dict[str, Any]) -> Op[int]:
    """How many documents of ``collection`` match, in one aggregation."""
    found = yield from _aggregate(collection, [{"$match": match}, {"$count": "n"}])
    return int(found[0]["n"]) if found else 0


def _written(reply: dict[str, Any]) -> int:
    return int(reply.get("n", 0))


def _upsert(command: Command, what: str) -> Op[dict[str, Any]]:
    """An idempotent findAndModify upsert (applying it twice leaves what once does),
    retried when a racing first upsert wins the insert (a duplicate key on MongoDB) or
    when the reply comes back empty (the test server, whose write may have applied)."""
    for _ in range(UPSERT_ATTEMPTS):
        try:
            reply = yield command
        except DuplicateKey:
            continue
        document = reply.get("value")
        if document is not None:
            return dict(document)
    raise BackendError(f"MongoDB: {what} kept losing a race to create its document")


def _placeholder(collection: str, key: str, fields: dict[str, Any]) -> Op[bool]:
    """Create ``key`` with ``fields`` unless it exists; True if this call created it.

    Counters and rate limits are not idempotent, so they never upsert: on the test
    server an upsert racing another may apply and still answer with no document, and
    running it again would count twice. They update an existing document (one round
    trip), and when there is none they create a placeholder (that every read treats
    as absent), then update it.
    """
    try:
        reply = yield _update(collection, [({"_id": key}, {"$setOnInsert": fields}, True)])
    except DuplicateKey:
        return False
    return bool(reply.get("upserted"))


def _modify(
    command: Command, collection: str, key: str, initial: dict[str, Any], what: str
) -> Op[dict[str, Any]]:
    """A findAndModify without upsert on ``key``, creating the document first if needed."""
    for _ in range(UPSERT_ATTEMPTS):
        reply = yield command
        document = reply.get("value")
        if document is not None:
            return dict(document)
        yield from _placeholder(collection, key, initial)
    raise BackendError(f"MongoDB: {what} kept finding its document gone")


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _transaction(steps: Callable[[], Op[T]], lock: str) -> Op[T]:
    """Run ``steps`` in a transaction, again from the start when it loses a conflict.

    Operations naming the same ``lock`` take turns in the process (``Exclusive``), so
    conflicts come only from other processes; those retry after an exponential pause
    with jitter (2 ms doubling up to about 100 ms), which spreads the retries of many
    contenders instead of having them collide again and again."""
    yield Exclusive(lock)
    for attempt in range(TRANSACTION_ATTEMPTS):
        yield StartTransaction()
        try:
            result = yield from steps()
            yield Commit()
            return result
        except (Conflict, DuplicateKey):
            yield Abort()
            jitter = 0.5 + (time.perf_counter_ns() % 1000) / 1000
            yield Pause(0.002 * 2 ** min(attempt, 6) * jitter)
    raise BackendError("MongoDB: a transaction kept conflicting with concurrent writers")


def _lock(collection: str, name: str) -> Command:
    """Writing one small document per user makes concurrent transactions on that user's
    records conflict, so one waits for the other (snapshot isolation alone would let
    two creators each miss the other's insert)."""
    return _update(
        collection,
        [
            (
                {"_id": name},
                [
                    {
                        "$set": {
                            "w": {"$add": [{"$ifNull": ["$w", 0]}, 1]},
                            "e": _date(_in(86_400_000)),
                        }
                    }
                ],
                True,
            )
        ],
    )


def create_indexes(collections: Collections, kinds: Iterable[str]) -> Op[list[str]]:
    """Create what the given stores need; createIndexes is idempotent."""
    ttl = {"key": {"e": 1}, "name": "expiry_ttl", "expireAfterSeconds": 0}
    wanted: dict[str, tuple[str, list[dict[str, Any]]]] = {
        "cache": (collections.cache, [ttl]),
        "sessions": (
            collections.sessions,
            [
                ttl,
                {"key": {"ns": 1, "u": 1, "c": -1, "o": -1}, "name": "user_newest"},
                {"key": {"ns": 1, "i": 1}, "name": "public_id", "unique": True},
            ],
        ),
        "magic_links": (
            collections.magic_links,
            [ttl, {"key": {"ns": 1, "u": 1}, "name": "user"}],
        ),
        "locks": (collections.locks, [ttl]),
    }
    done = []
    for kind in kinds:
        if kind not in wanted:
            continue  # TOTP documents are found by _id alone
        collection, indexes = wanted[kind]
        yield Command({"createIndexes": collection, "indexes": indexes})
        done.append(f"{collection} ({', '.join(index['name'] for index in indexes)})")
    return done


class _Health:
    """The ping every Mongo store shares: the ``ping`` command on the store's database."""

    def ping(self) -> Op[None]:
        yield Command({"ping": 1})


def _ms(value: Any) -> float:
    return float(value) / 1000


class _Scoped(_Health):
    """Sessions, TOTP state and magic links: ``_id`` is ``namespace:hash`` or
    ``namespace:user``; ``ns`` and ``u`` serve the per-user queries."""

    def __init__(self, collections: Collections, namespace: str) -> None:
        self.collections = collections
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.collections.prefix!r} namespace={self.namespace!r}>"

    def _id(self, value: str) -> str:
        return f"{self.namespace}:{value}"

    def _creation(
        self,
        collection: str,
        key: str,
        user_id: str,
        public_id: str,
        ttl: float,
        *,
        seen: bool = False,
        clears: tuple[str, ...] = ("r",),
        **fields: object,
    ) -> Command:
        """A new record's upsert, idempotent (a retry after an empty reply keeps its
        creation time and expiry); ``fields`` are stored as given; ``seen`` adds a
        last-seen time ``l``, the creation time.

        It writes only over no document, an expired one (replaced whole: ``clears``
        are its marks, reset to null) or its own earlier attempt (same public id). A
        document that has not expired, live, revoked or used, is left as it was: the
        reply then carries another public id, which ``_claimed`` reports as
        TokenInUseError."""
        fresh = {"$or": [{"$eq": [{"$ifNull": ["$c", None]}, None]}, DEAD]}
        take = {"$or": [fresh, {"$eq": ["$i", _lit(public_id)]}]}

        def taking(field: str, value: object) -> dict[str, Any]:
            return {"$cond": [take, value, f"${field}"]}

        document: dict[str, Any] = {
            "ns": taking("ns", _lit(self.namespace)),
            "u": taking("u", _lit(user_id)),
            "i": taking("i", _lit(public_id)),
            "c": {"$cond": [fresh, NOW, "$c"]},
            "x": {"$cond": [fresh, _in(ttl * 1000), "$x"]},
            **{name: taking(name, _lit(value)) for name, value in fields.items()},
            **{name: {"$cond": [fresh, None, f"${name}"]} for name in clears},
        }
        if seen:
            document["l"] = {"$cond": [fresh, NOW, "$l"]}
        return _find_and_modify(
            collection,
            {"_id": key},
            [{"$set": document}, {"$set": {"e": _date("$x")}}],
            upsert=True,
        )


def _created(command: Command, what: str) -> Op[dict[str, Any]]:
    """The new record, inside a transaction: an empty reply starts it over."""
    reply = yield command
    created = reply.get("value")
    if created is None:
        raise Conflict(f"MongoDB returned no document for the new {what}")
    return dict(created)


def _claimed(document: dict[str, Any], public_id: str, what: str) -> dict[str, Any]:
    """The document a ``_creation`` left, if it is the new record (see there)."""
    if document.get("i") != public_id:
        raise TokenInUseError(f"a {what} that has not expired holds this token")
    return document


def namespace_documents(collections: Collections, namespace: str, *, delete: bool) -> Op[int]:
    """How many documents ``namespace`` holds in the five collections, deleting them when
    ``delete``. Every ``_id`` starts with ``NS:`` (locks: ``s:NS:`` or ``m:NS:``): a range
    on ``_id`` selects the namespace (``;`` follows ``:``), no regex, the index serves it."""
    prefixes: dict[str, tuple[str, ...]] = {
        collections.cache: (namespace,),
        collections.sessions: (namespace,),
        collections.totp: (namespace,),
        collections.magic_links: (namespace,),
        collections.locks: (f"s:{namespace}", f"m:{namespace}"),
    }
    found = 0
    for name, starts in prefixes.items():
        for start in starts:
            where = {"_id": {"$gte": f"{start}:", "$lt": f"{start};"}}
            if delete:
                found += _written((yield _delete(name, where, many=True)))
            else:
                found += yield from _count(name, where)
    return found
