"""The sessions contract over MongoDB: one document per session, per-user limits
enforced in a transaction that takes the user's turn."""

from __future__ import annotations

import json
import time
from typing import Any

from authstore.adapters.common.ops import Op, SessionDraft, security_write
from authstore.adapters.mongodb.ops.base import (
    DEAD,
    LIVE,
    NOW,
    Collections,
    _aggregate,
    _claimed,
    _count,
    _created,
    _date,
    _delete,
    _find_and_modify,
    _in,
    _live,
    _live_matches,
    _lock,
    _ms,
    _one,
    _Scoped,
    _transaction,
    _update,
    _upsert,
    _written,
)
from authstore.contracts.records import (
    SessionRecord,
    from_epoch,
)

__all__ = ["MongoSessionOps"]


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

    @security_write
    def create(self, draft: SessionDraft, max_sessions: int | None) -> Op[SessionRecord]:
        key, user_id, session_id = self._id(draft.token_hash), draft.user_id, draft.session_id
        command = self._creation(
            self.name,
            key,
            user_id,
            session_id,
            draft.ttl,
            seen=True,
            o=time.time_ns(),
            d=draft.device_id,
            a=draft.application_id,
            ip=draft.ip_address,
            ua=draft.user_agent,
            m=draft.metadata,
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

    @security_write
    def revoke(self, token_hash: str) -> Op[bool]:
        revoked = yield from self._revoke_where({"_id": self._id(token_hash)}, many=False)
        return revoked == 1

    @security_write
    def revoke_by_id(self, session_id: str, user_id: str | None) -> Op[bool]:
        query: dict[str, Any] = {"ns": self.namespace, "i": session_id}
        if user_id is not None:
            query["u"] = user_id
        revoked = yield from self._revoke_where(query, many=False)
        return revoked == 1

    @security_write
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
        return (yield from _count(self.name, self._user(user_id)))

    def purge_expired(self) -> Op[int]:
        reply = yield _delete(self.name, {"ns": self.namespace, "$expr": DEAD}, many=True)
        return _written(reply)
