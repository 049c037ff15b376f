"""The magic links contract in SQL: one row per link, found by its token's hash.

The statements each dialect gets: ``tests/sql/golden/<dialect>/links.*.sql``.
"""

# SQL text is assembled from table names (checked by Tables) and fixed fragments;
# every value is a bound parameter.

from __future__ import annotations

from authstore.adapters.common.ops import LinkDraft, Op
from authstore.adapters.sql.commands import Begin, Query, Row
from authstore.adapters.sql.dialect import Dialect
from authstore.adapters.sql.ops.base import SqlOps, claiming_insert
from authstore.adapters.sql.schema import Tables
from authstore.contracts.errors import TokenInUseError
from authstore.contracts.records import MagicLinkRecord, from_epoch

__all__ = ["SqlMagicLinkOps"]

_LINK_COLUMNS = "id, user_id, email, created_at, expires_at, application_id, ip_address, user_agent, consumed_at"


def _link(row: Row) -> MagicLinkRecord:
    public_id, user, email, created, expires, application, ip, agent, consumed = row
    return MagicLinkRecord(
        id=public_id,
        user_id=user,
        email=email,
        created_at=from_epoch(created),
        expires_at=from_epoch(expires),
        application_id=application,
        ip_address=ip,
        user_agent=agent,
        consumed_at=None if consumed is None else from_epoch(consumed),
    )


class SqlMagicLinkOps(SqlOps):
    """A revoked or consumed link keeps its row (marked) until it expires, so its token
    hash stays taken; purge_expired removes expired rows."""

    def __init__(self, dialect: Dialect, tables: Tables, namespace: str) -> None:
        super().__init__(dialect, tables)
        self.namespace = namespace
        d, t, now = dialect, tables.magic_links, dialect.now
        by_hash = "namespace = :namespace AND token_hash = :token_hash"
        usable = f"consumed_at IS NULL AND revoked_at IS NULL AND expires_at > {now}"
        insert = claiming_insert(
            d,
            t,
            {
                "id": ":link_id",
                "user_id": ":user_id",
                "email": ":email",
                "application_id": ":application_id",
                "ip_address": ":ip_address",
                "user_agent": ":user_agent",
                "created_at": now,
                "consumed_at": "NULL",
                "revoked_at": "NULL",
                "expires_at": f"{now} + :ttl",
            },
        )
        self._issue = self._returning(insert, _LINK_COLUMNS, t, by_hash, applied="{changed} > 0")
        user = f"namespace = :namespace AND user_id = :user_id AND {usable}"
        self._revoke_user = f"UPDATE {t} SET revoked_at = {now} WHERE {user}"
        self._peek = f"SELECT {_LINK_COLUMNS} FROM {t} WHERE {by_hash} AND {usable}"
        # One guarded UPDATE: among concurrent consumers only one finds the link unconsumed.
        consume = (
            f"UPDATE {t} SET consumed_at = {now} WHERE {by_hash} AND {usable} "
            f"AND {d.same('application_id', ':application_id')}"
        )
        self._consume = self._returning(consume, _LINK_COLUMNS, t, by_hash, applied="{changed} > 0")

    def issue(self, draft: LinkDraft, revoke_previous: bool) -> Op[MagicLinkRecord]:
        params = {"namespace": self.namespace, **draft._asdict()}
        if revoke_previous:
            yield Begin()
            yield from self._lock(f"authstore:magic_links:{self.namespace}:{draft.user_id}")
            yield Query(self._revoke_user, params)
        row = yield from self._run_returning(self._issue, params, in_transaction=revoke_previous)
        if row is None:
            # In a transaction this rolls back the revocation of the previous links too.
            raise TokenInUseError("a magic link that has not expired holds this token")
        return _link(row)

    def peek(self, token_hash: str) -> Op[MagicLinkRecord | None]:
        row = yield Query(
            self._peek, {"namespace": self.namespace, "token_hash": token_hash}, "one"
        )
        return None if row is None else _link(row)

    def consume(self, token_hash: str, application_id: str | None) -> Op[MagicLinkRecord | None]:
        params = {
            "namespace": self.namespace,
            "token_hash": token_hash,
            "application_id": application_id,
        }
        row = yield from self._run_returning(self._consume, params)
        return None if row is None else _link(row)

    def revoke_user(self, user_id: str) -> Op[int]:
        params = {"namespace": self.namespace, "user_id": user_id}
        deleted: int = yield Query(self._revoke_user, params, "rowcount")
        return deleted

    def purge_expired(self) -> Op[int]:
        now, t = self.dialect.now, self.tables.magic_links
        return (yield from self._purge(t, "seq", f"expires_at <= {now}"))
