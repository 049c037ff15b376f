"""The TOTP contract in SQL: one state row per user, its backup codes in another table.

The statements each dialect gets: ``tests/sql/golden/<dialect>/totp.*.sql``.
"""

# SQL text is assembled from table names (checked by Tables) and fixed fragments;
# every value is a bound parameter.

from __future__ import annotations

from typing import Any

from authstore.adapters.common.ops import Op
from authstore.adapters.sql.commands import Begin, Query, Row
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.ops.base import CHUNK, SqlOps
from authstore.adapters.sql.schema import Tables
from authstore.contracts.records import TotpState, from_epoch

__all__ = ["SqlTotpOps"]


def _blob(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


class SqlTotpOps(SqlOps):
    def __init__(self, dialect: Dialect, tables: Tables, namespace: str) -> None:
        super().__init__(dialect, tables)
        self.namespace = namespace
        d, t, codes, now = dialect, tables.totp, tables.backup_codes, dialect.now
        user = "namespace = :namespace AND user_id = :user_id"
        self._save_pending = d.upsert(
            t,
            ["namespace", "user_id", "pending_secret", "enabled", "created_at", "updated_at"],
            [[":namespace", ":user_id", ":secret", "FALSE", now, now]],
            ["namespace", "user_id"],
            {
                "pending_secret": d.excluded("pending_secret"),
                "updated_at": d.excluded("updated_at"),
            },
        )
        # Every SET reads the old row, and the pending secret is copied before it is cleared
        # (the order MySQL's left-to-right SET needs too).
        self._enable = (
            f"UPDATE {t} SET secret = pending_secret, pending_secret = NULL, enabled = TRUE, "
            f"enabled_at = {now}, updated_at = {now} "
            f"WHERE {user} AND pending_secret IS NOT NULL"
        )
        self._delete_codes = f"DELETE FROM {codes} WHERE {user}"
        self._delete_state = f"DELETE FROM {t} WHERE {user}"
        self._has_state = f"SELECT 1 FROM {t} WHERE {user}"
        # One statement, so the state and its codes are one snapshot: a row per unused
        # code (one row with a NULL code when there is none), in the order given.
        self._load = (
            f"SELECT enabled, secret, pending_secret, last_step, created_at, updated_at, "
            f"enabled_at, {codes}.code_hash FROM {t} LEFT JOIN {codes} "
            f"ON {codes}.namespace = {t}.namespace AND {codes}.user_id = {t}.user_id "
            f"WHERE {t}.namespace = :namespace AND {t}.user_id = :user_id "
            f"ORDER BY {codes}.code_order, {codes}.code_hash"
        )
        self._codes = codes
        self._use_code = f"DELETE FROM {codes} WHERE {user} AND code_hash = :code_hash"
        self._claim_step = (
            f"UPDATE {t} SET last_step = :step, updated_at = {now} "
            f"WHERE {user} AND (last_step IS NULL OR last_step < :step)"
        )

    def _params(self, user_id: str, **more: object) -> dict[str, object]:
        return {"namespace": self.namespace, "user_id": user_id, **more}

    def save_pending(self, user_id: str, secret: bytes) -> Op[None]:
        yield Query(self._save_pending, self._params(user_id, secret=secret))

    def enable(self, user_id: str) -> Op[bool]:
        changed = yield Query(self._enable, self._params(user_id), "rowcount")
        return bool(changed)

    def disable(self, user_id: str) -> Op[bool]:
        yield Begin()
        yield from self._lock(f"authstore:totp:{self.namespace}:{user_id}")
        yield Query(self._delete_codes, self._params(user_id))
        deleted = yield Query(self._delete_state, self._params(user_id), "rowcount")
        return bool(deleted)

    def load(self, user_id: str) -> Op[TotpState | None]:
        rows: list[Row] = yield Query(self._load, self._params(user_id), "all")
        if not rows:
            return None
        enabled, secret, pending, last_step, created, updated, enabled_at, _ = rows[0]
        hashes = tuple(str(row[7]) for row in rows if row[7] is not None)
        return TotpState(
            user_id=user_id,
            enabled=bool(enabled),
            secret=_blob(secret),
            pending_secret=_blob(pending),
            last_step=None if last_step is None else int(last_step),
            backup_codes_left=len(hashes),
            created_at=from_epoch(created),
            updated_at=from_epoch(updated),
            enabled_at=None if enabled_at is None else from_epoch(enabled_at),
            backup_code_hashes=hashes,
        )

    def replace_backup_codes(self, user_id: str, code_hashes: list[str]) -> Op[None]:
        yield Begin()
        # Under READ COMMITTED two replacements would each delete only the rows they saw
        # and insert their own set beside the other's (or collide on the key).
        yield from self._lock(f"authstore:totp:{self.namespace}:{user_id}")
        yield Query(self._delete_codes, self._params(user_id))
        # Codes belong to a TOTP state: a user without one (never enrolled, or disabled)
        # gets none, so no code can be used, or show up at a later enrolment.
        if not code_hashes or (yield Query(self._has_state, self._params(user_id), "one")) is None:
            return
        for start in range(0, len(code_hashes), CHUNK):
            chunk = code_hashes[start : start + CHUNK]
            values = ", ".join(f"(:namespace, :user_id, :c{i}, :o{i})" for i in range(len(chunk)))
            codes: dict[str, object] = {f"c{i}": code for i, code in enumerate(chunk)}
            codes.update({f"o{i}": start + i for i in range(len(chunk))})
            sql = (
                f"INSERT INTO {self._codes} (namespace, user_id, code_hash, code_order) "
                f"VALUES {values}"
            )
            yield Query(sql, self._params(user_id, **codes))

    def use_backup_code(self, user_id: str, code_hash: str) -> Op[bool]:
        # One DELETE: among concurrent callers only one can remove the row.
        params = self._params(user_id, code_hash=code_hash)
        deleted: int = yield Query(self._use_code, params, "rowcount")
        return deleted == 1

    def claim_step(self, user_id: str, step: int) -> Op[bool]:
        changed: int = yield Query(self._claim_step, self._params(user_id, step=step), "rowcount")
        return changed == 1
