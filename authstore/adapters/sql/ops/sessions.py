"""The sessions contract in SQL: one row per session, found by its token's hash.

The statements each dialect gets: ``tests/sql/golden/<dialect>/sessions.*.sql``.
"""

# SQL text is assembled from table names (checked by Tables) and fixed fragments;
# every value is a bound parameter.

from __future__ import annotations

from datetime import UTC, datetime

from authstore.adapters.common.ops import Op, SessionDraft
from authstore.adapters.sql.commands import Begin, Query, Row
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.ops.base import SqlOps, claiming_insert
from authstore.adapters.sql.schema import Tables
from authstore.contracts.errors import TokenInUseError
from authstore.contracts.records import SessionRecord
from authstore.contracts.values import decode_json

__all__ = ["SqlSessionOps"]

_SESSION_COLUMNS = (
    "id, user_id, created_at, last_seen_at, expires_at, "
    "device_id, application_id, ip_address, user_agent, metadata"
)


_fromtimestamp = datetime.fromtimestamp
_new_record = object.__new__
_set_attribute = object.__setattr__


def _session(row: Row) -> SessionRecord:
    """The record of a row, as ``SessionRecord(...)`` makes it: each op that reads a
    session builds one, and a frozen dataclass's ``__init__`` (an ``object.__setattr__``
    a field) and ``json.loads`` (three Python calls around its scanner) were most of a
    ``get``'s own work. ``from_epoch``'s conversion, inlined."""
    public_id, user, created, seen, expires, device, application, ip, agent, metadata = row
    record: SessionRecord = _new_record(SessionRecord)
    _set_attribute(
        record,
        "__dict__",
        {
            "id": public_id,
            "user_id": user,
            "created_at": _fromtimestamp(created, UTC),
            "last_seen_at": _fromtimestamp(seen, UTC),
            "expires_at": _fromtimestamp(expires, UTC),
            "device_id": device,
            "application_id": application,
            "ip_address": ip,
            "user_agent": agent,
            # "{}" (no metadata given: the usual case) skips the JSON scanner; a new dict each time
            "metadata": {} if metadata == "{}" else decode_json(metadata),
        },
    )
    return record


class SqlSessionOps(SqlOps):
    """A revoked session keeps its row (``revoked_at``) until it expires: its token hash
    stays taken. Reads see only live, unrevoked rows."""

    def __init__(self, dialect: Dialect, tables: Tables, namespace: str) -> None:
        super().__init__(dialect, tables)
        self.namespace = namespace
        t, now = tables.sessions, dialect.now
        self._live = f"{t}.expires_at > {now} AND {t}.revoked_at IS NULL"
        self._user = f"namespace = :namespace AND user_id = :user_id AND {self._live}"
        by_hash = "namespace = :namespace AND token_hash = :token_hash"
        self._by_hash = f"{by_hash} AND {self._live}"

        insert = claiming_insert(
            dialect,
            t,
            {
                "id": ":session_id",
                "user_id": ":user_id",
                "device_id": ":device_id",
                "application_id": ":application_id",
                "ip_address": ":ip_address",
                "user_agent": ":user_agent",
                "metadata": ":metadata",
                "created_at": now,
                "last_seen_at": now,
                "revoked_at": "NULL",
                "expires_at": f"{now} + :ttl",
            },
        )
        self._create = self._returning(
            insert, _SESSION_COLUMNS, t, by_hash, applied="{changed} > 0"
        )
        # Keep the new session and the newest max_sessions - 1 others; revoke the rest of
        # the user's live sessions. The new one is left out by its hash, not by its time,
        # so a clock stepping back cannot evict it.
        self._evict = (
            f"UPDATE {t} SET revoked_at = {now} "
            f"WHERE namespace = :namespace AND user_id = :user_id AND seq IN ("
            + dialect.target_rows(
                f"SELECT seq FROM {t} WHERE {self._user} AND token_hash <> :token_hash "
                f"ORDER BY created_at DESC, seq DESC {dialect.skip(':keep_others')}"
            )
            + ")"
        )
        self._get = f"SELECT {_SESSION_COLUMNS} FROM {t} WHERE {self._by_hash}"
        touch = (
            f"UPDATE {t} SET last_seen_at = {now}, expires_at = coalesce({now} + :ttl, expires_at) "
            f"WHERE {self._by_hash}"
        )
        self._touch = self._returning(
            touch, _SESSION_COLUMNS, t, by_hash, applied=f"{{changed}} > 0 OR {self._live}"
        )
        self._revoke = f"UPDATE {t} SET revoked_at = {now} WHERE {self._by_hash}"
        self._list = (
            f"SELECT {_SESSION_COLUMNS} FROM {t} WHERE {self._user} "
            f"ORDER BY created_at DESC, seq DESC"
        )
        self._count = f"SELECT COUNT(*) FROM {t} WHERE {self._user}"

    def create(self, draft: SessionDraft, max_sessions: int | None) -> Op[SessionRecord]:
        keep_others = None if max_sessions is None else max_sessions - 1
        params = {"namespace": self.namespace, **draft._asdict(), "keep_others": keep_others}
        capped = max_sessions is not None
        if capped:
            yield Begin()
            yield from self._lock(f"authstore:sessions:{self.namespace}:{draft.user_id}")
        row = yield from self._run_returning(self._create, params, in_transaction=capped)
        if row is None:
            raise TokenInUseError("a session that has not expired holds this token")
        if capped:
            yield Query(self._evict, params, "rowcount")
        return _session(row)

    def get(self, token_hash: str) -> Op[SessionRecord | None]:
        params = {"namespace": self.namespace, "token_hash": token_hash}
        row = yield Query(self._get, params, "one")
        return None if row is None else _session(row)

    def touch(self, token_hash: str, ttl: float | None) -> Op[SessionRecord | None]:
        params = {"namespace": self.namespace, "token_hash": token_hash, "ttl": ttl}
        if self.dialect.returning:  # _run_returning's one statement, without its generator
            row = yield Query(self._touch.single, params, "one")
        else:
            row = yield from self._run_returning(self._touch, params)
        return None if row is None else _session(row)

    def revoke(self, token_hash: str) -> Op[bool]:
        params = {"namespace": self.namespace, "token_hash": token_hash}
        deleted = yield Query(self._revoke, params, "rowcount")
        return bool(deleted)

    def revoke_by_id(self, session_id: str, user_id: str | None) -> Op[bool]:
        t = self.tables.sessions
        sql = (
            f"UPDATE {t} SET revoked_at = {self.dialect.now} "
            f"WHERE namespace = :namespace AND id = :session_id AND {self._live}"
        )
        if user_id is not None:
            sql += " AND user_id = :user_id"
        params = {"namespace": self.namespace, "session_id": session_id, "user_id": user_id}
        deleted = yield Query(sql, params, "rowcount")
        return bool(deleted)

    def revoke_all(self, user_id: str, except_hash: str | None, except_id: str | None) -> Op[int]:
        sql = (
            f"UPDATE {self.tables.sessions} SET revoked_at = {self.dialect.now} WHERE {self._user}"
        )
        if except_hash is not None:
            sql += " AND token_hash <> :except_hash"
        if except_id is not None:
            sql += " AND id <> :except_id"
        params = {
            "namespace": self.namespace,
            "user_id": user_id,
            "except_hash": except_hash,
            "except_id": except_id,
        }
        deleted: int = yield Query(sql, params, "rowcount")
        return deleted

    def list(self, user_id: str) -> Op[list[SessionRecord]]:
        rows: list[Row] = yield Query(
            self._list, {"namespace": self.namespace, "user_id": user_id}, "all"
        )
        return [_session(row) for row in rows]

    def count(self, user_id: str) -> Op[int]:
        row = yield Query(self._count, {"namespace": self.namespace, "user_id": user_id}, "one")
        return int(row[0])

    def purge_expired(self) -> Op[int]:
        t = self.tables.sessions
        return (yield from self._purge(t, "seq", f"expires_at <= {self.dialect.now}"))
