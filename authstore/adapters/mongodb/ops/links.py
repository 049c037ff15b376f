"""The magic-link contract over MongoDB: one document per link."""

from __future__ import annotations

from typing import Any

from authstore.adapters.common.ops import LinkDraft, Op, security_write
from authstore.adapters.mongodb.ops.base import (
    DEAD,
    NOW,
    Collections,
    _claimed,
    _created,
    _delete,
    _find_and_modify,
    _live,
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
    MagicLinkRecord,
    from_epoch,
)

__all__ = ["MongoMagicLinkOps"]


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

    @security_write
    def issue(self, draft: LinkDraft, revoke_previous: bool) -> Op[MagicLinkRecord]:
        key, user_id, link_id = self._id(draft.token_hash), draft.user_id, draft.link_id
        command = self._creation(
            self.name,
            key,
            user_id,
            link_id,
            draft.ttl,
            clears=("r", "cu"),
            em=draft.email,
            a=draft.application_id,
            ip=draft.ip_address,
            ua=draft.user_agent,
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

    @security_write
    def consume(self, token_hash: str, application_id: str | None) -> Op[MagicLinkRecord | None]:
        # One guarded findAndModify: among concurrent consumers only one finds it unused.
        query = _live({"_id": self._id(token_hash), "cu": None, "r": None, "a": application_id})
        reply = yield _find_and_modify(self.name, query, [{"$set": {"cu": NOW}}])
        document = reply.get("value")
        return None if document is None else _link(document)

    @security_write
    def revoke_user(self, user_id: str) -> Op[int]:
        return (yield from self._revoke({"ns": self.namespace, "u": user_id}))

    def purge_expired(self) -> Op[int]:
        query = {"ns": self.namespace, "$expr": DEAD}
        reply = yield _delete(self.name, query, many=True)
        return _written(reply)
