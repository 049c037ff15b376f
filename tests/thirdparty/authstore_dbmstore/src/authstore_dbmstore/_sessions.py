"""The session store: records under their token hash, a public-id index, a per-user index."""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from typing import Any

from authstore.authoring import (
    MAX_ID_BYTES,
    MAX_IP_BYTES,
    MAX_USER_AGENT_BYTES,
    JSONValue,
    NewSession,
    SessionRecord,
    TokenInUseError,
    check_caller_token,
    check_count,
    check_metadata,
    check_optional_text,
    check_text,
    check_ttl,
    from_epoch,
    hash_token,
    new_public_id,
    new_token,
)
from authstore_dbmstore._files import AsyncBase, Db, SyncBase, live

COUNTER = "s#"  # creation order: strictly increasing, never a clock


def _record(row: dict[str, Any]) -> SessionRecord:
    return SessionRecord(
        id=row["id"],
        user_id=row["user"],
        created_at=from_epoch(row["created"]),
        last_seen_at=from_epoch(row["seen"]),
        expires_at=from_epoch(row["exp"]),
        device_id=row["device"],
        application_id=row["app"],
        ip_address=row["ip"],
        user_agent=row["ua"],
        metadata=json.loads(row["meta"]),
    )


def _usable(row: dict[str, Any] | None, now: float) -> bool:
    return live(row, now) and row is not None and not row["revoked"]


def _user_sessions(db: Db, user_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The user's live sessions as (hash, row), newest first; prunes the index."""
    index = db.record("su:" + user_id)
    hashes: list[str] = index["hashes"] if index is not None else []
    kept, usable = [], []
    for token_hash in hashes:
        row = db.record("s:" + token_hash)
        if row is None or row["user"] != user_id or not live(row, db.now):
            continue
        kept.append(token_hash)
        if not row["revoked"]:
            usable.append((token_hash, row))
    if kept != hashes:
        _save_index(db, user_id, kept)
    usable.sort(key=lambda item: item[1]["seq"], reverse=True)
    return usable


def _save_index(db: Db, user_id: str, hashes: builtins.list[str]) -> None:
    if hashes:
        db.put("su:" + user_id, {"hashes": hashes})
    else:
        db.delete("su:" + user_id)


def _revoke(db: Db, token_hash: str, row: dict[str, Any]) -> None:
    row["revoked"] = True  # kept until it expires, so its hash stays taken
    db.put("s:" + token_hash, row)


class DbmSessions(SyncBase):
    """Sync session store; only SHA-256 hashes of tokens are stored."""

    def create(
        self,
        user_id: str,
        *,
        ttl: float,
        device_id: str | None = None,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        metadata: Mapping[str, JSONValue] | None = None,
        max_sessions: int | None = None,
        token: str | None = None,
    ) -> NewSession:
        user_id = check_text(user_id, "user_id", max_bytes=MAX_ID_BYTES)
        seconds = check_ttl(ttl, optional=False)
        assert seconds is not None
        fields = {
            "device": check_optional_text(device_id, "device_id", max_bytes=MAX_ID_BYTES),
            "app": check_optional_text(application_id, "application_id", max_bytes=MAX_ID_BYTES),
            "ip": check_optional_text(ip_address, "ip_address", max_bytes=MAX_IP_BYTES),
            "ua": check_optional_text(user_agent, "user_agent", max_bytes=MAX_USER_AGENT_BYTES),
            "meta": check_metadata(metadata),
        }
        cap = None if max_sessions is None else check_count(max_sessions, "max_sessions")
        secret, token_hash = new_token() if token is None else check_caller_token(token)

        def create(db: Db) -> SessionRecord:
            old = db.record("s:" + token_hash)
            if live(old, db.now):
                raise TokenInUseError("this token belongs to a session that has not expired")
            if old is not None:
                db.delete("si:" + old["id"])  # nothing of an expired record shows through
            counter = db.record(COUNTER)
            seq = (counter["n"] if counter is not None else 0) + 1
            db.put(COUNTER, {"n": seq})
            others = _user_sessions(db, user_id)
            if cap is not None:
                for other_hash, row in others[cap - 1 :]:
                    _revoke(db, other_hash, row)
            row = {"id": new_public_id(), "user": user_id, "created": db.now, "seen": db.now}
            row |= {"exp": db.now + seconds, "revoked": False, "seq": seq, **fields}
            db.put("s:" + token_hash, row)
            db.put("si:" + row["id"], {"hash": token_hash})
            index = db.record("su:" + user_id)
            hashes = [h for h in (index["hashes"] if index else []) if h != token_hash]
            _save_index(db, user_id, [*hashes, token_hash])
            return _record(row)

        return NewSession(self._run(create), secret)

    def get(self, token: str) -> SessionRecord | None:
        token_hash = hash_token(token)

        def get(db: Db) -> SessionRecord | None:
            row = db.record("s:" + token_hash)
            return _record(row) if _usable(row, db.now) and row is not None else None

        return self._run(get)

    def touch(self, token: str, *, ttl: float | None = None) -> SessionRecord | None:
        token_hash, seconds = hash_token(token), check_ttl(ttl)

        def touch(db: Db) -> SessionRecord | None:
            row = db.record("s:" + token_hash)
            if not _usable(row, db.now) or row is None:
                return None  # never resurrects
            row["seen"] = max(row["seen"], db.now)
            if seconds is not None:
                row["exp"] = db.now + seconds
            db.put("s:" + token_hash, row)
            return _record(row)

        return self._run(touch)

    def revoke(self, token: str) -> bool:
        token_hash = hash_token(token)

        def revoke(db: Db) -> bool:
            row = db.record("s:" + token_hash)
            if not _usable(row, db.now) or row is None:
                return False
            _revoke(db, token_hash, row)
            return True

        return self._run(revoke)

    def revoke_by_id(self, session_id: str, *, user_id: str | None = None) -> bool:
        session_id = check_text(session_id, "session_id", max_bytes=MAX_ID_BYTES)
        owner = check_optional_text(user_id, "user_id", max_bytes=MAX_ID_BYTES)

        def revoke(db: Db) -> bool:
            pointer = db.record("si:" + session_id)
            if pointer is None:
                return False
            row = db.record("s:" + pointer["hash"])
            if row is None or row["id"] != session_id or not _usable(row, db.now):
                return False
            if owner is not None and row["user"] != owner:
                return False
            _revoke(db, pointer["hash"], row)
            return True

        return self._run(revoke)

    def revoke_all(
        self, user_id: str, *, except_token: str | None = None, except_id: str | None = None
    ) -> int:
        user_id = check_text(user_id, "user_id", max_bytes=MAX_ID_BYTES)
        spared_hash = None if except_token is None else hash_token(except_token)
        spared_id = check_optional_text(except_id, "except_id", max_bytes=MAX_ID_BYTES)

        def revoke_all(db: Db) -> int:
            revoked = 0
            for token_hash, row in _user_sessions(db, user_id):
                if token_hash != spared_hash and row["id"] != spared_id:
                    _revoke(db, token_hash, row)
                    revoked += 1
            return revoked

        return self._run(revoke_all)

    def count(self, user_id: str) -> int:
        user_id = check_text(user_id, "user_id", max_bytes=MAX_ID_BYTES)
        return self._run(lambda db: len(_user_sessions(db, user_id)))

    def list(self, user_id: str) -> builtins.list[SessionRecord]:
        user_id = check_text(user_id, "user_id", max_bytes=MAX_ID_BYTES)
        return self._run(lambda db: [_record(row) for _, row in _user_sessions(db, user_id)])

    def purge_expired(self) -> int:
        def purge(db: Db) -> int:
            deleted = 0
            for name in db.names():
                if name.startswith("s:"):
                    row = db.record(name)
                    if row is not None and not live(row, db.now):
                        db.delete(name)
                        db.delete("si:" + row["id"])
                        deleted += 1
                elif name.startswith("su:"):
                    _user_sessions(db, name[3:])  # prunes the index
            return deleted

        return self._run(purge)


class AsyncDbmSessions(AsyncBase[DbmSessions]):
    """Async session store: the sync code on a worker thread."""

    async def create(
        self,
        user_id: str,
        *,
        ttl: float,
        device_id: str | None = None,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        metadata: Mapping[str, JSONValue] | None = None,
        max_sessions: int | None = None,
        token: str | None = None,
    ) -> NewSession:
        return await self._call(
            self._sync.create,
            user_id,
            ttl=ttl,
            device_id=device_id,
            application_id=application_id,
            ip_address=ip_address,
            user_agent=user_agent,
            metadata=metadata,
            max_sessions=max_sessions,
            token=token,
        )

    async def get(self, token: str) -> SessionRecord | None:
        return await self._call(self._sync.get, token)

    async def touch(self, token: str, *, ttl: float | None = None) -> SessionRecord | None:
        return await self._call(self._sync.touch, token, ttl=ttl)

    async def revoke(self, token: str) -> bool:
        return await self._call(self._sync.revoke, token)

    async def revoke_by_id(self, session_id: str, *, user_id: str | None = None) -> bool:
        return await self._call(self._sync.revoke_by_id, session_id, user_id=user_id)

    async def revoke_all(
        self, user_id: str, *, except_token: str | None = None, except_id: str | None = None
    ) -> int:
        return await self._call(
            self._sync.revoke_all, user_id, except_token=except_token, except_id=except_id
        )

    async def count(self, user_id: str) -> int:
        return await self._call(self._sync.count, user_id)

    async def list(self, user_id: str) -> builtins.list[SessionRecord]:
        return await self._call(self._sync.list, user_id)

    async def purge_expired(self) -> int:
        return await self._call(self._sync.purge_expired)
