"""The magic-link store: records under their token hash and a per-user index."""

from __future__ import annotations

from typing import Any

from authstore.authoring import (
    MAX_EMAIL_BYTES,
    MAX_ID_BYTES,
    MAX_IP_BYTES,
    MAX_USER_AGENT_BYTES,
    IssuedMagicLink,
    MagicLinkRecord,
    TokenInUseError,
    check_caller_token,
    check_optional_text,
    check_text,
    check_token_hash,
    check_ttl,
    from_epoch,
    hash_token,
    new_public_id,
    new_token,
)
from authstore_dbmstore._files import AsyncBase, Db, SyncBase, live


def _record(row: dict[str, Any]) -> MagicLinkRecord:
    return MagicLinkRecord(
        id=row["id"],
        user_id=row["user"],
        email=row["email"],
        created_at=from_epoch(row["created"]),
        expires_at=from_epoch(row["exp"]),
        application_id=row["app"],
        ip_address=row["ip"],
        user_agent=row["ua"],
        consumed_at=None if row["consumed"] is None else from_epoch(row["consumed"]),
    )


def _usable(row: dict[str, Any] | None, now: float) -> bool:
    return live(row, now) and row is not None and row["consumed"] is None and not row["revoked"]


def _application(application_id: object) -> str | None:
    return check_optional_text(application_id, "application_id", max_bytes=MAX_ID_BYTES)


class DbmMagicLinks(SyncBase):
    """Sync magic-link store; a link is returned by ``consume`` to exactly one caller."""

    def _issue(
        self,
        token_hash: str,
        user_id: object,
        email: object,
        ttl: object,
        application_id: object,
        ip_address: object,
        user_agent: object,
        revoke_previous: object,
    ) -> MagicLinkRecord:
        """Check every argument, then insert the link (revoking the user's others) atomically."""
        user = check_text(user_id, "user_id", max_bytes=MAX_ID_BYTES)
        row: dict[str, Any] = {
            "user": user,
            "email": check_text(email, "email", max_bytes=MAX_EMAIL_BYTES),
            "app": _application(application_id),
            "ip": check_optional_text(ip_address, "ip_address", max_bytes=MAX_IP_BYTES),
            "ua": check_optional_text(user_agent, "user_agent", max_bytes=MAX_USER_AGENT_BYTES),
            "consumed": None,
            "revoked": False,
        }
        seconds = check_ttl(ttl, optional=False)
        assert seconds is not None
        if not isinstance(revoke_previous, bool):
            raise TypeError("revoke_previous must be a bool")

        def issue(db: Db) -> MagicLinkRecord:
            if live(db.record("m:" + token_hash), db.now):
                raise TokenInUseError("this token belongs to a link that has not expired")
            index = db.record("mu:" + user)
            hashes = [h for h in (index["hashes"] if index else []) if h != token_hash]
            kept = []
            for other in hashes:
                old = db.record("m:" + other)
                if old is None or old["user"] != user or not live(old, db.now):
                    continue
                if revoke_previous and _usable(old, db.now):
                    db.put("m:" + other, old | {"revoked": True})
                kept.append(other)
            row.update(id=new_public_id(), created=db.now, exp=db.now + seconds)
            db.put("m:" + token_hash, row)
            db.put("mu:" + user, {"hashes": [*kept, token_hash]})
            return _record(row)

        return self._run(issue)

    def issue(
        self,
        user_id: str,
        email: str,
        *,
        ttl: float,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        revoke_previous: bool = True,
        token: str | None = None,
    ) -> IssuedMagicLink:
        secret, token_hash = new_token() if token is None else check_caller_token(token)
        record = self._issue(
            token_hash, user_id, email, ttl, application_id, ip_address, user_agent, revoke_previous
        )
        return IssuedMagicLink(record, secret)

    def issue_hashed(
        self,
        user_id: str,
        email: str,
        token_hash: str,
        *,
        ttl: float,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        revoke_previous: bool = True,
    ) -> MagicLinkRecord:
        return self._issue(
            check_token_hash(token_hash),
            user_id,
            email,
            ttl,
            application_id,
            ip_address,
            user_agent,
            revoke_previous,
        )

    def peek(self, token: str) -> MagicLinkRecord | None:
        token_hash = hash_token(token)

        def peek(db: Db) -> MagicLinkRecord | None:
            row = db.record("m:" + token_hash)
            return _record(row) if _usable(row, db.now) and row is not None else None

        return self._run(peek)

    def consume(self, token: str, *, application_id: str | None = None) -> MagicLinkRecord | None:
        token_hash, application = hash_token(token), _application(application_id)

        def consume(db: Db) -> MagicLinkRecord | None:
            row = db.record("m:" + token_hash)
            if not _usable(row, db.now) or row is None or row["app"] != application:
                return None
            row["consumed"] = db.now  # kept until it expires, so its hash stays taken
            db.put("m:" + token_hash, row)
            return _record(row)

        return self._run(consume)

    def revoke_user(self, user_id: str) -> int:
        user = check_text(user_id, "user_id", max_bytes=MAX_ID_BYTES)

        def revoke_user(db: Db) -> int:
            index = db.record("mu:" + user)
            revoked = 0
            for token_hash in index["hashes"] if index else []:
                row = db.record("m:" + token_hash)
                if row is not None and row["user"] == user and _usable(row, db.now):
                    db.put("m:" + token_hash, row | {"revoked": True})
                    revoked += 1
            return revoked

        return self._run(revoke_user)

    def purge_expired(self) -> int:
        def purge(db: Db) -> int:
            deleted = 0
            for name in db.names():
                if name.startswith("m:") and not live(db.record(name), db.now):
                    db.delete(name)
                    deleted += 1
            for name in db.names():
                if name.startswith("mu:"):
                    index = db.record(name)
                    kept = [h for h in (index["hashes"] if index else []) if db.raw("m:" + h)]
                    if kept:
                        db.put(name, {"hashes": kept})
                    else:
                        db.delete(name)
            return deleted

        return self._run(purge)


class AsyncDbmMagicLinks(AsyncBase[DbmMagicLinks]):
    """Async magic-link store: the sync code on a worker thread."""

    async def issue(
        self,
        user_id: str,
        email: str,
        *,
        ttl: float,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        revoke_previous: bool = True,
        token: str | None = None,
    ) -> IssuedMagicLink:
        return await self._call(
            self._sync.issue,
            user_id,
            email,
            ttl=ttl,
            application_id=application_id,
            ip_address=ip_address,
            user_agent=user_agent,
            revoke_previous=revoke_previous,
            token=token,
        )

    async def issue_hashed(
        self,
        user_id: str,
        email: str,
        token_hash: str,
        *,
        ttl: float,
        application_id: str | None = None,
        ip_address: str | None = None,
        user_agent: str | None = None,
        revoke_previous: bool = True,
    ) -> MagicLinkRecord:
        return await self._call(
            self._sync.issue_hashed,
            user_id,
            email,
            token_hash,
            ttl=ttl,
            application_id=application_id,
            ip_address=ip_address,
            user_agent=user_agent,
            revoke_previous=revoke_previous,
        )

    async def peek(self, token: str) -> MagicLinkRecord | None:
        return await self._call(self._sync.peek, token)

    async def consume(
        self, token: str, *, application_id: str | None = None
    ) -> MagicLinkRecord | None:
        return await self._call(self._sync.consume, token, application_id=application_id)

    async def revoke_user(self, user_id: str) -> int:
        return await self._call(self._sync.revoke_user, user_id)

    async def purge_expired(self) -> int:
        return await self._call(self._sync.purge_expired)
