"""The cache contract over MongoDB: one document per key, values as bytes or as
64-bit integers (so ``incr`` adds on the server), rate limits as single-document
pipeline updates."""

from __future__ import annotations

import re
from typing import Any

from authstore.adapters.common.ops import (
    FixedWindowState,
    GcraState,
    Op,
    SlidingWindowState,
    security_write,
)
from authstore.adapters.common.ratelimit import EPSILON, limiter_state
from authstore.adapters.mongodb.commands import (
    Command,
    DuplicateKey,
)
from authstore.adapters.mongodb.ops.base import (
    DEAD,
    INT64_MAX,
    INT64_MIN,
    LIVE,
    NOW,
    NOW_S,
    UPSERT_ATTEMPTS,
    Collections,
    _aggregate,
    _chunks,
    _date,
    _delete,
    _find_and_modify,
    _Health,
    _in,
    _lets,
    _lit,
    _live,
    _live_matches,
    _modify,
    _one,
    _placeholder,
    _update,
    _upsert,
    _written,
)
from authstore.contracts.errors import BackendError
from authstore.contracts.records import (
    RateLimitAlgorithm,
)

_LIMITER_FIELDS: dict[RateLimitAlgorithm, tuple[str, ...]] = {
    RateLimitAlgorithm.FIXED_WINDOW: ("c", "end"),
    RateLimitAlgorithm.SLIDING_WINDOW: ("p", "c", "s"),
    RateLimitAlgorithm.GCRA: ("a", "u"),
}
"""Each limiter document's state fields in the order ``ratelimit.step_*`` takes them."""

_CANONICAL_INTEGER = re.compile(rb"-?(0|[1-9][0-9]{0,18})")

__all__ = ["MongoCacheOps"]


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

    @security_write
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
