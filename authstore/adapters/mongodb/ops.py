"""The four contracts' operations over MongoDB, written once as generators of commands.

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

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from authstore.adapters.common.ops import FixedWindowState, GcraState, Op, SlidingWindowState
from authstore.adapters.common.ratelimit import EPSILON, limiter_state
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
from authstore.contracts.records import (
    MagicLinkRecord,
    RateLimitAlgorithm,
    SessionRecord,
    TotpState,
    from_epoch,
)

__all__ = [
    "Collections",
    "MongoCacheOps",
    "MongoMagicLinkOps",
    "MongoSessionOps",
    "MongoTotpOps",
    "Pause",
    "create_indexes",
]

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
_LIMITER_FIELDS: dict[RateLimitAlgorithm, tuple[str, ...]] = {
    RateLimitAlgorithm.FIXED_WINDOW: ("c", "end"),
    RateLimitAlgorithm.SLIDING_WINDOW: ("p", "c", "s"),
    RateLimitAlgorithm.GCRA: ("a", "u"),
}
"""Each limiter document's state fields in the order ``ratelimit.step_*`` takes them."""

_CANONICAL_INTEGER = re.compile(rb"-?(0|[1-9][0-9]{0,18})")


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


# --- cache ---------------------------------------------------------------------------


def _as_integer(raw: bytes) -> int | None:
    """A value that is canonical signed 64-bit decimal text is stored as a number, so
    ``incr`` can add to it on the server; it reads back as the same bytes."""
    if len(raw) > 20 or not _CANONICAL_INTEGER.fullmatch(raw) or raw == b"-0":
        return None
    number = int(raw)
    return number if INT64_MIN <= number <= INT64_MAX else None


def _value_of(document: dict[str, Any]) -> bytes:
    if "n" in document:
        return str(int(document["n"])).encode("ascii")
    return bytes(document["v"])


class _Health:
    """The ping every Mongo store shares: the ``ping`` command on the store's database."""

    def ping(self) -> Op[None]:
        yield Command({"ping": 1})


class MongoCacheOps(_Health):
    """One collection: ``_id`` is the full key (namespace and kind included)."""

    def __init__(self, collections: Collections) -> None:
        self.collections = collections
        self.name = collections.cache

    def __repr__(self) -> str:
        return f"<MongoCacheOps {self.name}>"

    def _entry(self, value: bytes, ttl: float | None) -> dict[str, Any]:
        """The whole new document, as a $replaceWith expression."""
        number = _as_integer(value)
        document: dict[str, Any] = {"_id": "$_id"}
        if number is None:
            document["v"] = _lit(value)
        else:
            document["n"] = _lit(number)
        if ttl is not None:
            document["x"] = _in(ttl * 1000)
            document["e"] = _date(_in(ttl * 1000))
        return document

    def get(self, key: str) -> Op[bytes | None]:
        found = yield from _one(self.name, key, {"v": 1, "n": 1})
        return None if found is None else _value_of(found)

    def get_many(self, keys: list[str]) -> Op[dict[str, bytes]]:
        result: dict[str, bytes] = {}
        for chunk in _chunks(keys):
            found = yield from _aggregate(
                self.name,
                [*_live_matches({"_id": {"$in": list(chunk)}}), {"$project": {"v": 1, "n": 1}}],
            )
            result.update((document["_id"], _value_of(document)) for document in found)
        return result

    def _set(self, items: dict[str, bytes], ttl: float | None) -> Command:
        return _update(
            self.name,
            [
                ({"_id": key}, [{"$replaceWith": self._entry(value, ttl)}], True)
                for key, value in items.items()
            ],
        )

    def set(self, key: str, value: bytes, ttl: float | None) -> Op[None]:
        yield from self.set_many({key: value}, ttl)

    def set_many(self, items: dict[str, bytes], ttl: float | None) -> Op[None]:
        keys = list(items)
        for chunk in _chunks(keys):
            for _ in range(UPSERT_ATTEMPTS):
                try:
                    yield self._set({key: items[key] for key in chunk}, ttl)
                    break
                except DuplicateKey:
                    continue  # a racing first write: the next attempt overwrites it
            else:
                raise BackendError("MongoDB: set kept losing a race to create its document")

    def add(self, key: str, value: bytes, ttl: float | None) -> Op[bool]:
        # Matches only an expired entry; a live one makes the upsert's insert collide.
        command = _update(
            self.name,
            [({"_id": key, "$expr": DEAD}, [{"$replaceWith": self._entry(value, ttl)}], True)],
        )
        try:
            reply = yield command
        except DuplicateKey:
            return False
        return _written(reply) == 1

    def delete(self, key: str) -> Op[bool]:
        reply = yield _delete(self.name, _live({"_id": key}), many=False)
        return _written(reply) == 1

    def delete_many(self, keys: list[str]) -> Op[int]:
        total = 0
        for chunk in _chunks(keys):
            reply = yield _delete(self.name, _live({"_id": {"$in": list(chunk)}}), many=True)
            total += _written(reply)
        return total

    def exists(self, key: str) -> Op[bool]:
        found = yield from _one(self.name, key, {"_id": 1})
        return found is not None

    def incr(self, key: str, delta: int, ttl: float | None) -> Op[int]:
        # A live number that can take delta, or an expired entry (restarted), matches;
        # a live non-number does not: refused, unchanged.
        lowest, highest = INT64_MIN - min(delta, 0), INT64_MAX - max(delta, 0)
        takes = {"$and": [{"$isNumber": "$n"}, {"$gte": ["$n", lowest]}, {"$lte": ["$n", highest]}]}
        fresh = {"$or": [DEAD, {"$not": [{"$isNumber": "$n"}]}]}
        restarted: dict[str, Any] = {"_id": "$_id", "n": _lit(delta)}
        if ttl is not None:
            restarted["x"] = _in(ttl * 1000)
            restarted["e"] = _date(_in(ttl * 1000))
        added = {"$mergeObjects": ["$$ROOT", {"n": {"$add": ["$n", delta]}}]}
        command = _find_and_modify(
            self.name,
            {"_id": key, "$expr": {"$or": [DEAD, takes]}},
            [{"$replaceWith": {"$cond": [fresh, restarted, added]}}],
            fields={"n": 1},
        )
        existed = False
        for _ in range(UPSERT_ATTEMPTS):
            reply = yield command
            document = reply.get("value")
            if document is not None:
                return int(document["n"])
            if existed:
                # it exists and still does not match: a live value that is not a number,
                # or one that adding delta would take out of 64 bits (left unchanged)
                raise ValueError(
                    "the cached value is not an integer, or adding delta leaves 64 bits"
                )
            existed = not (yield from _placeholder(self.name, key, {"x": 0}))
        raise BackendError("MongoDB: incr kept finding its document gone")

    def expire(self, key: str, ttl: float | None) -> Op[bool]:
        if ttl is None:
            update: list[dict[str, Any]] = [{"$unset": ["x", "e"]}]
        else:
            update = [{"$set": {"x": _in(ttl * 1000), "e": _date(_in(ttl * 1000))}}]
        reply = yield _update(self.name, [(_live({"_id": key}), update, False)])
        return _written(reply) == 1

    def ttl(self, key: str) -> Op[float | None]:
        found = yield from _one(self.name, key, {"left": {"$subtract": ["$x", NOW]}})
        if found is None:
            return None
        left = found.get("left")
        return float("inf") if left is None else max(0.0, left / 1000)

    def raise_to(self, key: str, at: float | None, ttl: float | None) -> Op[float]:
        # The instant only moves forward; the entry lives as long as the longest expiry
        # asked for (none: forever), so a later, shorter call never ends a revocation.
        instant: object = NOW_S if at is None else float(at)
        was_live = {"$and": [{"$isNumber": "$t"}, LIVE]}
        document: dict[str, Any] = {
            "_id": "$_id",
            "t": {"$cond": ["$$live", {"$max": ["$t", instant]}, instant]},
        }
        if ttl is not None:
            later = {"$max": ["$x", _in(ttl * 1000)]}
            kept = {"$cond": [{"$isNumber": "$x"}, later, "$$REMOVE"]}
            document["x"] = {"$cond": ["$$live", kept, _in(ttl * 1000)]}
        update = [
            {"$replaceWith": {"$let": {"vars": {"live": was_live}, "in": document}}},
            {"$set": {"e": {"$cond": [{"$isNumber": "$x"}, _date("$x"), "$$REMOVE"]}}},
        ]
        command = _find_and_modify(self.name, {"_id": key}, update, upsert=True, fields={"t": 1})
        stored = yield from _upsert(command, "a revocation")
        return float(stored["t"])

    def read_epoch(self, key: str) -> Op[float | None]:
        found = yield from _one(self.name, key, {"t": 1})
        return None if found is None or found.get("t") is None else float(found["t"])

    # -- rate limits: ratelimit.step_* as one expression ---------------------------------
    #
    # One $replaceWith of nested $let blocks, each naming what the next needs: the test
    # server evaluates every expression node at a cost, so there are as few as the
    # arithmetic allows. ``now`` is the hit's clock: the server's now in seconds, never
    # earlier than the document's last hit ``k`` (a command that waited behind another
    # may carry an older $$NOW, and a sliding window must not step back a window). A
    # new limiter starts from a placeholder whose state step_* reads exactly as "no
    # state" (a window that ended at the epoch, a bucket anchored there). ``ok`` is this
    # hit's decision; ``e`` a date past which the state no longer matters (the TTL
    # index reclaims it then; step_* would compute the same from no state).

    def _limiter(
        self,
        key: str,
        steps: list[Any],
        state: dict[str, Any],
        horizon: float,
        initial: dict[str, float],
    ) -> Op[dict[str, Any]]:
        """``horizon``: seconds after now past which the state surely no longer matters."""
        clock = {"now": {"$max": ["$k", NOW_S]}}
        # a second of slack covers how far the clamped ``now`` may run ahead of $$NOW
        expiry = {"$add": ["$$NOW", 1000 * horizon + 1000]}
        document = {"_id": "$_id", **state, "k": "$$now", "ok": "$$ok", "e": expiry}
        update = [{"$replaceWith": _lets([clock, *steps], document)}]
        projection = dict.fromkeys(state, 1) | {"ok": 1, "k": 1}
        command = _find_and_modify(self.name, {"_id": key}, update, fields=projection)
        return (yield from _modify(command, self.name, key, initial, "a rate limit"))

    def fixed_window(self, key: str, limit: int, window: float, cost: int) -> Op[FixedWindowState]:
        # count + cost <= limit, on integers: count <= limit - cost (a fresh window
        # starts at 0, and cost <= limit always)
        room = limit - cost
        steps = [
            {"reset": {"$lte": ["$end", "$$now"]}},
            {
                "count": {"$cond": ["$$reset", 0, "$c"]},
                "end": {"$cond": ["$$reset", {"$add": ["$$now", window]}, "$end"]},
                "ok": {"$or": ["$$reset", {"$lte": ["$c", room]}]},
            },
        ]
        state = {"c": {"$cond": ["$$ok", {"$add": ["$$count", cost]}, "$$count"]}, "end": "$$end"}
        doc = yield from self._limiter(key, steps, state, window, {"c": 0, "end": 0.0})
        return bool(doc["ok"]), int(doc["c"]), float(doc["end"]), float(doc["k"])

    def sliding_window(
        self, key: str, limit: int, window: float, cost: int
    ) -> Op[SlidingWindowState]:
        # starts are a whole window apart: half a window tells them apart despite an ulp
        half = window / 2
        elapsed = {"$divide": [{"$subtract": ["$$now", "$$start"]}, window]}
        estimate = {
            "$add": [
                {
                    "$add": [
                        {"$multiply": ["$$previous", {"$subtract": [1.0, elapsed]}]},
                        "$$current",
                    ]
                },
                cost,
            ]
        }
        steps = [
            {"start": {"$multiply": [{"$floor": {"$divide": ["$$now", window]}}, window]}},
            {
                "same": {"$lt": [{"$abs": {"$subtract": ["$s", "$$start"]}}, half]},
                "follows": {
                    "$lt": [
                        {"$abs": {"$subtract": ["$s", {"$subtract": ["$$start", window]}]}},
                        half,
                    ]
                },
            },
            {
                "previous": {"$cond": ["$$same", "$p", {"$cond": ["$$follows", "$c", 0]}]},
                "current": {"$cond": ["$$same", "$c", 0]},
            },
            {"ok": {"$lte": [estimate, limit * (1 + EPSILON)]}},
        ]
        state = {
            "p": "$$previous",
            "c": {"$cond": ["$$ok", {"$add": ["$$current", cost]}, "$$current"]},
            "s": "$$start",
        }
        doc = yield from self._limiter(key, steps, state, 2 * window, {"p": 0, "c": 0, "s": 0.0})
        return bool(doc["ok"]), int(doc["p"]), int(doc["c"]), float(doc["s"]), float(doc["k"])

    def gcra(self, key: str, limit: int, window: float, cost: int) -> Op[GcraState]:
        def backlog(anchor: object, units: object) -> dict[str, Any]:
            spent = {"$divide": [{"$multiply": [units, window]}, limit]}
            return {"$subtract": [spent, {"$subtract": ["$$now", anchor]}]}

        steps = [
            {"behind": backlog("$a", "$u")},
            # caught up: restart from now; a lowered limit or window: one window behind
            {"idle": {"$lte": ["$$behind", 0]}, "lowered": {"$gt": ["$$behind", window]}},
            {
                "anchor": {"$cond": [{"$or": ["$$idle", "$$lowered"]}, "$$now", "$a"]},
                "units": {"$cond": ["$$idle", 0, {"$cond": ["$$lowered", limit, "$u"]}]},
            },
            {
                "ok": {
                    "$lte": [
                        backlog("$$anchor", {"$add": ["$$units", cost]}),
                        window * (1 + EPSILON),
                    ]
                }
            },
        ]
        state = {
            "a": "$$anchor",
            "u": {"$cond": ["$$ok", {"$add": ["$$units", cost]}, "$$units"]},
        }
        # the bucket is full again a window after now at the latest
        doc = yield from self._limiter(key, steps, state, window, {"a": 0.0, "u": 0})
        return bool(doc["ok"]), float(doc["a"]), int(doc["u"]), float(doc["k"])

    def read_limiter(
        self, key: str, algorithm: RateLimitAlgorithm
    ) -> Op[tuple[tuple[Any, ...] | None, float]]:
        """A one-stage aggregate: the state and the clock the limiter would use (never
        before the last hit ``k``). A placeholder reads as the state step_* starts from."""
        fields = _LIMITER_FIELDS[algorithm]
        project = dict.fromkeys(fields, 1) | {"now": {"$max": ["$k", NOW_S]}}
        found = yield from _one(self.name, key, project)
        if found is None or any(found.get(field) is None for field in fields):
            return None, 0.0  # no state: what a hit would see does not depend on the clock
        state = limiter_state(algorithm, [found[field] for field in fields])
        return state, float(found["now"])

    def read_record(self, key: str, writing: bool = True) -> Op[tuple[bytes | None, object, float]]:
        """The document as it is, live or not, with the server's clock; the token is its
        body and expiry, what ``replace_record`` compares. Before a write, a missing
        document is created as an expired placeholder, so the read returns the clock
        (an aggregate over no document returns nothing); a peek creates nothing."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"_id": key}},
            {"$project": {"v": 1, "x": 1, "now": NOW}},
        ]
        for _ in range(UPSERT_ATTEMPTS):
            found = yield from _aggregate(self.name, pipeline)
            if found:
                document = found[0]
                now, expiry, body = document["now"], document.get("x"), document.get("v")
                live = body is not None and (expiry is None or expiry > now)
                return (
                    (bytes(body) if body is not None and live else None),
                    (body, expiry),
                    now / 1000,
                )
            if not writing:
                return None, None, 0.0
            yield from _placeholder(self.name, key, {"x": 0})
        raise BackendError("MongoDB: a rate-limit group kept finding its document gone")

    def replace_record(self, key: str, token: object, body: bytes, ttl: float) -> Op[bool]:
        assert isinstance(token, tuple)
        old_body, old_expiry = token
        query: dict[str, Any] = {"_id": key, "x": old_expiry}
        query["v"] = {"$exists": False} if old_body is None else old_body
        reply = yield _update(
            self.name, [(query, [{"$replaceWith": self._entry(body, ttl)}], False)]
        )
        return _written(reply) == 1

    def purge_expired(self) -> Op[int]:
        reply = yield _delete(self.name, {"$expr": DEAD}, many=True)
        return _written(reply)


# --- sessions ------------------------------------------------------------------------


def _ms(value: Any) -> float:
    return float(value) / 1000


def _session(document: dict[str, Any]) -> SessionRecord:
    metadata = json.loads(document["m"])
    return SessionRecord(
        id=document["i"],
        user_id=document["u"],
        created_at=from_epoch(_ms(document["c"])),
        last_seen_at=from_epoch(_ms(document["l"])),
        expires_at=from_epoch(_ms(document["x"])),
        device_id=document.get("d"),
        application_id=document.get("a"),
        ip_address=document.get("ip"),
        user_agent=document.get("ua"),
        metadata=metadata if isinstance(metadata, dict) else {},
    )


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


class MongoSessionOps(_Scoped):
    def __init__(self, collections: Collections, namespace: str) -> None:
        super().__init__(collections, namespace)
        self.name = collections.sessions

    """A revoked session keeps its document (``r``, the revocation time) until it expires,
    so its token hash stays taken; every read skips it."""

    def _user(self, user_id: str) -> dict[str, Any]:
        return _live({"ns": self.namespace, "u": user_id, "r": None})

    def _user_matches(self, user_id: str) -> list[dict[str, Any]]:
        return _live_matches({"ns": self.namespace, "u": user_id, "r": None})

    def _revoke_where(self, query: dict[str, Any], *, many: bool) -> Op[int]:
        update = [{"$set": {"r": NOW}}]
        reply = yield _update(self.name, [(_live({**query, "r": None}), update, False)], multi=many)
        return _written(reply)

    def create(
        self,
        *,
        token_hash: str,
        session_id: str,
        user_id: str,
        device_id: str | None,
        application_id: str | None,
        ip_address: str | None,
        user_agent: str | None,
        metadata: str,
        ttl: float,
        max_sessions: int | None,
    ) -> Op[SessionRecord]:
        key = self._id(token_hash)
        command = self._creation(
            self.name,
            key,
            user_id,
            session_id,
            ttl,
            seen=True,
            o=time.time_ns(),
            d=device_id,
            a=application_id,
            ip=ip_address,
            ua=user_agent,
            m=metadata,
        )
        if max_sessions is None:
            created = yield from _upsert(command, "a session")
            return _session(_claimed(created, session_id, "session"))
        cap = max_sessions

        def capped() -> Op[SessionRecord]:
            # Keep the new session and the newest cap - 1 live others; drop the rest of
            # the user's sessions (expired ones too). The new one is left out by its
            # _id, not its time, so a clock stepping back cannot evict it.
            yield _lock(self.collections.locks, f"s:{self.namespace}:{user_id}")
            created = _claimed((yield from _created(command, "session")), session_id, "session")
            others = yield from _aggregate(
                self.name,
                [
                    {
                        "$match": {
                            "ns": self.namespace,
                            "u": user_id,
                            "_id": {"$ne": key},
                            "r": None,
                        }
                    },
                    {"$sort": {"c": -1, "o": -1}},
                    {"$project": {"live": LIVE}},
                ],
            )
            kept, doomed = 0, []
            for other in others:
                if other["live"] and kept < cap - 1:
                    kept += 1
                else:
                    doomed.append(other["_id"])
            if doomed:
                # revoked, not deleted: their token hashes stay taken until they expire
                yield _update(
                    self.name,
                    [({"_id": {"$in": doomed}}, [{"$set": {"r": NOW}}], False)],
                    multi=True,
                )
            return _session(created)

        return (yield from _transaction(capped, f"s:{self.namespace}:{user_id}"))

    def get(self, token_hash: str) -> Op[SessionRecord | None]:
        found = yield from _one(self.name, self._id(token_hash))
        return None if found is None or found.get("r") is not None else _session(found)

    def touch(self, token_hash: str, ttl: float | None) -> Op[SessionRecord | None]:
        changes: dict[str, Any] = {"l": NOW}
        if ttl is not None:
            changes["x"] = _in(ttl * 1000)
            changes["e"] = _date(_in(ttl * 1000))
        reply = yield _find_and_modify(
            self.name, _live({"_id": self._id(token_hash), "r": None}), [{"$set": changes}]
        )
        document = reply.get("value")
        return None if document is None else _session(document)

    def revoke(self, token_hash: str) -> Op[bool]:
        revoked = yield from self._revoke_where({"_id": self._id(token_hash)}, many=False)
        return revoked == 1

    def revoke_by_id(self, session_id: str, user_id: str | None) -> Op[bool]:
        query: dict[str, Any] = {"ns": self.namespace, "i": session_id}
        if user_id is not None:
            query["u"] = user_id
        revoked = yield from self._revoke_where(query, many=False)
        return revoked == 1

    def revoke_all(self, user_id: str, except_hash: str | None, except_id: str | None) -> Op[int]:
        query: dict[str, Any] = {"ns": self.namespace, "u": user_id}
        if except_hash is not None:
            query["_id"] = {"$ne": self._id(except_hash)}
        if except_id is not None:
            query["i"] = {"$ne": except_id}
        return (yield from self._revoke_where(query, many=True))

    def list(self, user_id: str) -> Op[list[SessionRecord]]:
        found = yield from _aggregate(
            self.name, [*self._user_matches(user_id), {"$sort": {"c": -1, "o": -1}}]
        )
        return [_session(document) for document in found]

    def count(self, user_id: str) -> Op[int]:
        found = yield from _aggregate(self.name, [{"$match": self._user(user_id)}, {"$count": "n"}])
        return int(found[0]["n"]) if found else 0

    def purge_expired(self) -> Op[int]:
        reply = yield _delete(self.name, {"ns": self.namespace, "$expr": DEAD}, many=True)
        return _written(reply)


# --- TOTP ----------------------------------------------------------------------------


def _blob(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


class MongoTotpOps(_Scoped):
    """One document per user: secrets, replay step and backup-code hashes together, so
    every operation is one atomic single-document command."""

    def __init__(self, collections: Collections, namespace: str) -> None:
        super().__init__(collections, namespace)
        self.name = collections.totp

    def _upsert_fields(self, user_id: str, fields: dict[str, Any]) -> Command:
        created = {
            "ns": _lit(self.namespace),
            "u": _lit(user_id),
            "c": {"$ifNull": ["$c", NOW]},
            "en": {"$ifNull": ["$en", False]},
            "b": {"$ifNull": ["$b", _lit([])]},
        }
        return _update(
            self.name,
            [({"_id": self._id(user_id)}, [{"$set": {**created, **fields, "up": NOW}}], True)],
        )

    def _write(self, command: Command) -> Op[int]:
        for _ in range(UPSERT_ATTEMPTS):
            try:
                reply = yield command
            except DuplicateKey:
                continue
            return _written(reply)
        raise BackendError("MongoDB: a TOTP write kept losing a race to create its document")

    def save_pending(self, user_id: str, secret: bytes) -> Op[None]:
        yield from self._write(self._upsert_fields(user_id, {"p": _lit(secret)}))

    def enable(self, user_id: str) -> Op[bool]:
        query = {"_id": self._id(user_id), "p": {"$type": "binData"}}
        update = [{"$set": {"s": "$p", "en": True, "ea": NOW, "up": NOW}}, {"$unset": ["p"]}]
        reply = yield _update(self.name, [(query, update, False)])
        return _written(reply) == 1

    def disable(self, user_id: str) -> Op[bool]:
        reply = yield _delete(self.name, {"_id": self._id(user_id)}, many=False)
        return _written(reply) == 1

    def load(self, user_id: str) -> Op[TotpState | None]:
        reply = yield Command(
            {
                "find": self.name,
                "filter": {"_id": self._id(user_id)},
                "limit": 1,
                "singleBatch": True,
            }
        )
        batch = reply["cursor"]["firstBatch"]
        if not batch:
            return None
        document = batch[0]
        return TotpState(
            user_id=user_id,
            enabled=bool(document.get("en")),
            secret=_blob(document.get("s")),
            pending_secret=_blob(document.get("p")),
            last_step=None if document.get("ls") is None else int(document["ls"]),
            backup_codes_left=len(document.get("b") or ()),
            backup_code_hashes=tuple(document.get("b") or ()),
            created_at=from_epoch(_ms(document["c"])),
            updated_at=from_epoch(_ms(document["up"])),
            enabled_at=None if document.get("ea") is None else from_epoch(_ms(document["ea"])),
        )

    def replace_backup_codes(self, user_id: str, code_hashes: list[str]) -> Op[None]:
        # Codes belong to a TOTP state: no upsert, so a user without one gets none.
        update = [{"$set": {"b": _lit(code_hashes), "up": NOW}}]
        yield _update(self.name, [({"_id": self._id(user_id)}, update, False)])

    def use_backup_code(self, user_id: str, code_hash: str) -> Op[bool]:
        # One $pull guarded by the code's presence: only one caller can remove it.
        query = {"_id": self._id(user_id), "b": code_hash}
        reply = yield _update(self.name, [(query, {"$pull": {"b": code_hash}}, False)])
        return int(reply.get("nModified", 0)) == 1

    def claim_step(self, user_id: str, step: int) -> Op[bool]:
        query = {"_id": self._id(user_id), "$or": [{"ls": None}, {"ls": {"$lt": step}}]}
        update = [{"$set": {"ls": _lit(step), "up": NOW}}]
        reply = yield _update(self.name, [(query, update, False)])
        return _written(reply) == 1


# --- magic links ---------------------------------------------------------------------


def _link(document: dict[str, Any]) -> MagicLinkRecord:
    consumed = document.get("cu")
    return MagicLinkRecord(
        id=document["i"],
        user_id=document["u"],
        email=document["em"],
        created_at=from_epoch(_ms(document["c"])),
        expires_at=from_epoch(_ms(document["x"])),
        application_id=document.get("a"),
        ip_address=document.get("ip"),
        user_agent=document.get("ua"),
        consumed_at=None if consumed is None else from_epoch(_ms(consumed)),
    )


class MongoMagicLinkOps(_Scoped):
    """A revoked (``r``) or consumed (``cu``) link keeps its document until it expires,
    so its token hash stays taken; purge_expired removes expired documents."""

    def __init__(self, collections: Collections, namespace: str) -> None:
        super().__init__(collections, namespace)
        self.name = collections.magic_links

    def issue(
        self,
        *,
        token_hash: str,
        link_id: str,
        user_id: str,
        email: str,
        ttl: float,
        application_id: str | None,
        ip_address: str | None,
        user_agent: str | None,
        revoke_previous: bool,
    ) -> Op[MagicLinkRecord]:
        key = self._id(token_hash)
        command = self._creation(
            self.name,
            key,
            user_id,
            link_id,
            ttl,
            clears=("r", "cu"),
            em=email,
            a=application_id,
            ip=ip_address,
            ua=user_agent,
        )
        if not revoke_previous:
            created = yield from _upsert(command, "a magic link")
            return _link(_claimed(created, link_id, "magic link"))

        def replacing() -> Op[MagicLinkRecord]:
            yield _lock(self.collections.locks, f"m:{self.namespace}:{user_id}")
            yield from self._revoke({"ns": self.namespace, "u": user_id, "_id": {"$ne": key}})
            created = yield from _created(command, "magic link")
            # a taken hash raises here; the transaction's end undoes the revocations
            return _link(_claimed(created, link_id, "magic link"))

        return (yield from _transaction(replacing, f"m:{self.namespace}:{user_id}"))

    def _revoke(self, query: dict[str, Any]) -> Op[int]:
        usable = _live({**query, "cu": None, "r": None})
        reply = yield _update(self.name, [(usable, [{"$set": {"r": NOW}}], False)], multi=True)
        return _written(reply)

    def peek(self, token_hash: str) -> Op[MagicLinkRecord | None]:
        found = yield from _one(self.name, self._id(token_hash))
        if found is None or found.get("cu") is not None or found.get("r") is not None:
            return None
        return _link(found)

    def consume(self, token_hash: str, application_id: str | None) -> Op[MagicLinkRecord | None]:
        # One guarded findAndModify: among concurrent consumers only one finds it unused.
        query = _live({"_id": self._id(token_hash), "cu": None, "r": None, "a": application_id})
        reply = yield _find_and_modify(self.name, query, [{"$set": {"cu": NOW}}])
        document = reply.get("value")
        return None if document is None else _link(document)

    def revoke_user(self, user_id: str) -> Op[int]:
        return (yield from self._revoke({"ns": self.namespace, "u": user_id}))

    def purge_expired(self) -> Op[int]:
        query = {"ns": self.namespace, "$expr": DEAD}
        reply = yield _delete(self.name, query, many=True)
        return _written(reply)
