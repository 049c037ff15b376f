"""The TOTP contract over MongoDB: one document per user."""

from __future__ import annotations

from typing import Any

from authstore.adapters.common.ops import Op, security_write
from authstore.adapters.mongodb.commands import (
    Command,
    DuplicateKey,
)
from authstore.adapters.mongodb.ops.base import (
    NOW,
    UPSERT_ATTEMPTS,
    Collections,
    _delete,
    _lit,
    _ms,
    _Scoped,
    _update,
    _written,
)
from authstore.contracts.errors import BackendError
from authstore.contracts.records import (
    TotpState,
    from_epoch,
)

__all__ = ["MongoTotpOps"]


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

    @security_write
    def enable(self, user_id: str) -> Op[bool]:
        query = {"_id": self._id(user_id), "p": {"$type": "binData"}}
        update = [{"$set": {"s": "$p", "en": True, "ea": NOW, "up": NOW}}, {"$unset": ["p"]}]
        reply = yield _update(self.name, [(query, update, False)])
        return _written(reply) == 1

    @security_write
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

    @security_write
    def replace_backup_codes(self, user_id: str, code_hashes: list[str]) -> Op[None]:
        # Codes belong to a TOTP state: no upsert, so a user without one gets none.
        update = [{"$set": {"b": _lit(code_hashes), "up": NOW}}]
        yield _update(self.name, [({"_id": self._id(user_id)}, update, False)])

    @security_write
    def use_backup_code(self, user_id: str, code_hash: str) -> Op[bool]:
        # One $pull guarded by the code's presence: only one caller can remove it.
        query = {"_id": self._id(user_id), "b": code_hash}
        reply = yield _update(self.name, [(query, {"$pull": {"b": code_hash}}, False)])
        return int(reply.get("nModified", 0)) == 1

    @security_write
    def claim_step(self, user_id: str, step: int) -> Op[bool]:
        query = {"_id": self._id(user_id), "$or": [{"ls": None}, {"ls": {"$lt": step}}]}
        update = [{"$set": {"ls": _lit(step), "up": NOW}}]
        reply = yield _update(self.name, [(query, update, False)])
        return _written(reply) == 1
