"""The TOTP store: one record per user holding secrets, backup codes and the last step."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from authstore.authoring import (
    MAX_BACKUP_CODES,
    MAX_CODE_HASH_BYTES,
    MAX_ID_BYTES,
    MAX_SECRET_BYTES,
    TotpState,
    check_count,
    check_text,
    from_epoch,
)
from authstore_dbmstore._files import AsyncBase, Db, SyncBase


def _user(user_id: object) -> str:
    return check_text(user_id, "user_id", max_bytes=MAX_ID_BYTES)


def _secret(secret: object) -> str:
    if not isinstance(secret, bytes):
        raise TypeError(f"secret must be bytes, got {type(secret).__name__}")
    if not 1 <= len(secret) <= MAX_SECRET_BYTES:
        raise ValueError(f"secret must be 1 to {MAX_SECRET_BYTES} bytes, got {len(secret)}")
    return base64.b64encode(secret).decode()


def _code(code_hash: object) -> str:
    return check_text(code_hash, "code_hash", max_bytes=MAX_CODE_HASH_BYTES)


def _codes(code_hashes: object) -> list[str]:
    if isinstance(code_hashes, str | bytes) or not isinstance(code_hashes, Iterable):
        raise TypeError("code_hashes must be an iterable of str")
    codes = list(dict.fromkeys(_code(code) for code in code_hashes))
    if len(codes) > MAX_BACKUP_CODES:
        raise ValueError(f"at most {MAX_BACKUP_CODES} backup codes, got {len(codes)}")
    return codes


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def _state(user_id: str, row: dict[str, Any]) -> TotpState:
    return TotpState(
        user_id=user_id,
        enabled=row["enabled"],
        secret=_bytes(row["secret"]),
        pending_secret=_bytes(row["pending"]),
        last_step=row["step"],
        backup_codes_left=len(row["codes"]),
        created_at=from_epoch(row["created"]),
        updated_at=from_epoch(row["updated"]),
        enabled_at=None if row["enabled_at"] is None else from_epoch(row["enabled_at"]),
        backup_code_hashes=tuple(row["codes"]),
    )


class DbmTotp(SyncBase):
    """Sync TOTP store; secrets arrive as ciphertext and are kept as given."""

    def save_pending(self, user_id: str, secret: bytes) -> None:
        user_id, encoded = _user(user_id), _secret(secret)

        def save(db: Db) -> None:
            row = db.record("t:" + user_id) or {
                "enabled": False,
                "secret": None,
                "step": None,
                "codes": [],
                "created": db.now,
                "enabled_at": None,
            }
            row |= {"pending": encoded, "updated": db.now}
            db.put("t:" + user_id, row)

        self._run(save)

    def enable(self, user_id: str) -> bool:
        user_id = _user(user_id)

        def enable(db: Db) -> bool:
            row = db.record("t:" + user_id)
            if row is None or row["pending"] is None:
                return False
            row |= {"secret": row["pending"], "pending": None, "enabled": True}
            row |= {"enabled_at": db.now, "updated": db.now}
            db.put("t:" + user_id, row)
            return True

        return self._run(enable)

    def disable(self, user_id: str) -> bool:
        user_id = _user(user_id)
        return self._run(lambda db: db.delete("t:" + user_id))

    def load(self, user_id: str) -> TotpState | None:
        user_id = _user(user_id)
        row = self._run(lambda db: db.record("t:" + user_id))
        return None if row is None else _state(user_id, row)

    def replace_backup_codes(self, user_id: str, code_hashes: Iterable[str]) -> None:
        user_id, codes = _user(user_id), _codes(code_hashes)

        def replace(db: Db) -> None:
            row = db.record("t:" + user_id)
            if row is not None:  # codes belong to a state: none, nothing stored
                db.put("t:" + user_id, row | {"codes": codes, "updated": db.now})

        self._run(replace)

    def use_backup_code(self, user_id: str, code_hash: str) -> bool:
        user_id, code = _user(user_id), _code(code_hash)

        def use(db: Db) -> bool:
            row = db.record("t:" + user_id)
            if row is None or code not in row["codes"]:
                return False
            row["codes"].remove(code)
            db.put("t:" + user_id, row | {"updated": db.now})
            return True

        return self._run(use)

    def claim_step(self, user_id: str, step: int) -> bool:
        user_id = _user(user_id)
        step = check_count(step, "step", minimum=0, maximum=2**62)

        def claim(db: Db) -> bool:
            row = db.record("t:" + user_id)
            if row is None or (row["step"] is not None and step <= row["step"]):
                return False
            db.put("t:" + user_id, row | {"step": step, "updated": db.now})
            return True

        return self._run(claim)


class AsyncDbmTotp(AsyncBase[DbmTotp]):
    """Async TOTP store: the sync code on a worker thread."""

    async def save_pending(self, user_id: str, secret: bytes) -> None:
        await self._call(self._sync.save_pending, user_id, secret)

    async def enable(self, user_id: str) -> bool:
        return await self._call(self._sync.enable, user_id)

    async def disable(self, user_id: str) -> bool:
        return await self._call(self._sync.disable, user_id)

    async def load(self, user_id: str) -> TotpState | None:
        return await self._call(self._sync.load, user_id)

    async def replace_backup_codes(self, user_id: str, code_hashes: Iterable[str]) -> None:
        await self._call(self._sync.replace_backup_codes, user_id, code_hashes)

    async def use_backup_code(self, user_id: str, code_hash: str) -> bool:
        return await self._call(self._sync.use_backup_code, user_id, code_hash)

    async def claim_step(self, user_id: str, step: int) -> bool:
        return await self._call(self._sync.claim_step, user_id, step)
