"""The store classes: every backend's sync and async stores are these, given its ops and runner.

Each method is one line that hands a logic generator to the runner; the checks,
encoding and backend commands live in ``logic`` and the backend's ops, once.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn, Protocol

from authstore import observability
from authstore.adapters.common.logic import CacheLogic, MagicLinkLogic, SessionLogic, TotpLogic
from authstore.adapters.common.ops import (
    AsyncRunner,
    CacheOps,
    HealthOps,
    MagicLinkOps,
    Op,
    Runner,
    SessionOps,
    TotpOps,
)
from authstore.contracts.cache import CACHE_CAPABILITIES
from authstore.contracts.context import AsyncContext, SyncContext
from authstore.contracts.errors import StoreClosedError, UnsupportedOperationError
from authstore.contracts.records import (
    IssuedMagicLink,
    JSONValue,
    MagicLinkRecord,
    NewSession,
    RateLimitAlgorithm,
    RateLimitResult,
    SessionRecord,
    StoreKind,
    TotpState,
    Value,
)
from authstore.limits import LimitsLike

__all__ = [
    "AsyncCache",
    "AsyncMagicLinks",
    "AsyncSessions",
    "AsyncTotp",
    "Cache",
    "MagicLinks",
    "Sessions",
    "Totp",
    "SharedStores",
    "open_store",
]

DEFAULT_NAMESPACE = "authstore"
FIXED = RateLimitAlgorithm.FIXED_WINDOW


class _ClosedOps:
    """The ops of a closed store: every operation raises StoreClosedError when it reaches
    the backend, after the logic's argument checks (bad input stays a ValueError or
    TypeError, as on an open store)."""

    def __init__(self, where: str) -> None:
        self.where = where

    def error(self) -> StoreClosedError:
        return StoreClosedError(f"{self.where}: this store is closed; open a new one")

    def __getattr__(self, name: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Op[Any]:
            raise self.error()
            yield  # pragma: no cover - makes this a generator function

        return refused


class _ClosedRunner:
    """What a closed store runs on: it starts the operation (its checks run, then its
    closed ops raise) and never does I/O; an operation that needed no backend (an empty
    batch) is refused all the same."""

    def __init__(self, ops: _ClosedOps) -> None:
        self.ops = ops

    def _refuse(self, op: Op[Any]) -> NoReturn:
        try:
            next(op)
        except StopIteration:
            pass
        finally:
            op.close()
        raise self.ops.error()

    def run(self, op: Op[Any]) -> Any:
        self._refuse(op)

    def close(self) -> None:
        """Closing twice is allowed."""

    def __repr__(self) -> str:
        return f"<closed {self.ops.where}>"


class _AsyncClosedRunner(_ClosedRunner):
    async def run(self, op: Op[Any]) -> Any:
        self._refuse(op)

    async def close(self) -> None:  # type: ignore[override]
        """Closing twice is allowed."""


class _Retiring:
    """What both store bases do on close: later operations meet closed ops and a closed
    runner, and the error names where the store was (its redacted URL when known)."""

    _checked: _Checked

    def _retire(self, runner: object) -> _ClosedOps:
        """New calls get a logic over closed ops; operations already under way keep the
        logic (and ops) they started with, and finish."""
        display = getattr(getattr(runner, "settings", None), "display", None)
        ops = _ClosedOps(str(display) if display else repr(runner))
        retired = type(self._checked)(ops, self._checked.namespace)
        self._checked = retired
        self.__dict__["_logic"] = retired  # the store classes' name for it
        return ops


class _Checked(Protocol):
    """A store's logic (``CacheLogic``, ...): the checks, over the backend's ``ops``."""

    ops: Any
    namespace: str

    def __init__(self, ops: Any, namespace: str) -> None: ...


class _SyncStore(_Retiring, SyncContext):
    def __init__(self, runner: Runner, namespace: str, checked: _Checked) -> None:
        # observability: the runner itself unless instrumentation is enabled (once per store)
        self._runner = observability.observe(runner, _kind_of(self), asynchronous=False)
        self._checked = checked
        self._owns_runner = True
        """False in a group (``open_stores``): the group closes the shared runner once."""
        self.namespace = namespace

    def ping(self) -> None:
        """One round trip to the backend within the store's timeout; raises
        BackendUnavailableError when it does not answer."""
        ops: HealthOps = self._checked.ops
        return self._runner.run(ops.ping())

    def close(self) -> None:
        """Refuse every later operation; close the connections unless a group shares them."""
        runner = self._runner
        if isinstance(runner, _ClosedRunner):
            return
        self._runner = _ClosedRunner(self._retire(runner))
        if self._owns_runner:
            runner.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} namespace={self.namespace!r} runner={self._runner!r}>"


class _AsyncStore(_Retiring, AsyncContext):
    def __init__(self, runner: AsyncRunner, namespace: str, checked: _Checked) -> None:
        # observability: the runner itself unless instrumentation is enabled (once per store)
        self._runner = observability.observe(runner, _kind_of(self), asynchronous=True)
        self._checked = checked
        self._owns_runner = True
        """False in a group (``open_async_stores``): the group closes the shared runner once."""
        self.connect_on_enter = False
        """``connect=eager``: ``async with`` pings before the block runs."""
        self.namespace = namespace

    async def ping(self) -> None:
        """One round trip to the backend within the store's timeout; raises
        BackendUnavailableError when it does not answer."""
        ops: HealthOps = self._checked.ops
        return await self._runner.run(ops.ping())

    async def aclose(self) -> None:
        """Refuse every later operation; close the connections unless a group shares them."""
        runner = self._runner
        if isinstance(runner, _ClosedRunner):
            return
        self._runner = _AsyncClosedRunner(self._retire(runner))
        if self._owns_runner:
            await runner.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} namespace={self.namespace!r} runner={self._runner!r}>"


class Cache(_SyncStore):
    def __init__(
        self,
        ops: CacheOps,
        runner: Runner,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        capabilities: frozenset[str] = CACHE_CAPABILITIES,
    ) -> None:
        self._logic = CacheLogic(ops, namespace)
        super().__init__(runner, self._logic.namespace, self._logic)
        self.capabilities = capabilities

    def get(self, key: str) -> Value | None:
        return self._runner.run(self._logic.get(key))

    def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        return self._runner.run(self._logic.set(key, value, ttl))

    def add(self, key: str, value: Value, ttl: float | None = None) -> bool:
        return self._runner.run(self._logic.add(key, value, ttl))

    def delete(self, key: str) -> bool:
        return self._runner.run(self._logic.delete(key))

    def exists(self, key: str) -> bool:
        return self._runner.run(self._logic.exists(key))

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        return self._runner.run(self._logic.incr(key, delta, ttl))

    def expire(self, key: str, ttl: float | None) -> bool:
        return self._runner.run(self._logic.expire(key, ttl))

    def ttl(self, key: str) -> float | None:
        return self._runner.run(self._logic.ttl(key))

    def get_many(self, keys: Iterable[str]) -> dict[str, Value]:
        return self._runner.run(self._logic.get_many(keys))

    def set_many(self, mapping: Mapping[str, Value], ttl: float | None = None) -> None:
        return self._runner.run(self._logic.set_many(mapping, ttl))

    def delete_many(self, keys: Iterable[str]) -> int:
        return self._runner.run(self._logic.delete_many(keys))

    def check_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        cost: int = 1,
        algorithm: RateLimitAlgorithm | str = FIXED,
    ) -> RateLimitResult:
        return self._runner.run(self._logic.check_rate_limit(key, limit, window, cost, algorithm))

    def check_rate_limits(self, key: str, limits: LimitsLike, cost: int = 1) -> RateLimitResult:
        return self._runner.run(self._logic.check_rate_limits(key, limits, cost))

    def peek_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        algorithm: RateLimitAlgorithm | str = FIXED,
        cost: int = 1,
    ) -> RateLimitResult:
        return self._runner.run(self._logic.peek_rate_limit(key, limit, window, algorithm, cost))

    def peek_rate_limits(self, key: str, limits: LimitsLike, cost: int = 1) -> RateLimitResult:
        return self._runner.run(self._logic.peek_rate_limits(key, limits, cost))

    def reset_rate_limit(self, key: str) -> None:
        return self._runner.run(self._logic.reset_rate_limit(key))

    def add_to_blacklist(
        self, jti: str, expires_in: float | None = None, *, expires_at: datetime | None = None
    ) -> None:
        return self._runner.run(self._logic.add_to_blacklist(jti, expires_in, expires_at))

    def is_blacklisted(self, jti: str) -> bool:
        return self._runner.run(self._logic.is_blacklisted(jti))

    def remove_from_blacklist(self, jti: str) -> bool:
        return self._runner.run(self._logic.remove_from_blacklist(jti))

    def revoke_user_tokens(
        self, user_id: str, at: datetime | None = None, expires_in: float | None = None
    ) -> datetime:
        return self._runner.run(self._logic.revoke_user_tokens(user_id, at, expires_in))

    def user_tokens_revoked_at(self, user_id: str) -> datetime | None:
        return self._runner.run(self._logic.user_tokens_revoked_at(user_id))

    def purge_expired(self) -> int:
        return self._runner.run(self._logic.purge_expired())


class AsyncCache(_AsyncStore):
    def __init__(
        self,
        ops: CacheOps,
        runner: AsyncRunner,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        capabilities: frozenset[str] = CACHE_CAPABILITIES,
    ) -> None:
        self._logic = CacheLogic(ops, namespace)
        super().__init__(runner, self._logic.namespace, self._logic)
        self.capabilities = capabilities

    async def get(self, key: str) -> Value | None:
        return await self._runner.run(self._logic.get(key))

    async def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        return await self._runner.run(self._logic.set(key, value, ttl))

    async def add(self, key: str, value: Value, ttl: float | None = None) -> bool:
        return await self._runner.run(self._logic.add(key, value, ttl))

    async def delete(self, key: str) -> bool:
        return await self._runner.run(self._logic.delete(key))

    async def exists(self, key: str) -> bool:
        return await self._runner.run(self._logic.exists(key))

    async def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        return await self._runner.run(self._logic.incr(key, delta, ttl))

    async def expire(self, key: str, ttl: float | None) -> bool:
        return await self._runner.run(self._logic.expire(key, ttl))

    async def ttl(self, key: str) -> float | None:
        return await self._runner.run(self._logic.ttl(key))

    async def get_many(self, keys: Iterable[str]) -> dict[str, Value]:
        return await self._runner.run(self._logic.get_many(keys))

    async def set_many(self, mapping: Mapping[str, Value], ttl: float | None = None) -> None:
        return await self._runner.run(self._logic.set_many(mapping, ttl))

    async def delete_many(self, keys: Iterable[str]) -> int:
        return await self._runner.run(self._logic.delete_many(keys))

    async def check_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        cost: int = 1,
        algorithm: RateLimitAlgorithm | str = FIXED,
    ) -> RateLimitResult:
        return await self._runner.run(
            self._logic.check_rate_limit(key, limit, window, cost, algorithm)
        )

    async def check_rate_limits(
        self, key: str, limits: LimitsLike, cost: int = 1
    ) -> RateLimitResult:
        return await self._runner.run(self._logic.check_rate_limits(key, limits, cost))

    async def peek_rate_limit(
        self,
        key: str,
        limit: int,
        window: float,
        algorithm: RateLimitAlgorithm | str = FIXED,
        cost: int = 1,
    ) -> RateLimitResult:
        return await self._runner.run(
            self._logic.peek_rate_limit(key, limit, window, algorithm, cost)
        )

    async def peek_rate_limits(
        self, key: str, limits: LimitsLike, cost: int = 1
    ) -> RateLimitResult:
        return await self._runner.run(self._logic.peek_rate_limits(key, limits, cost))

    async def reset_rate_limit(self, key: str) -> None:
        return await self._runner.run(self._logic.reset_rate_limit(key))

    async def add_to_blacklist(
        self, jti: str, expires_in: float | None = None, *, expires_at: datetime | None = None
    ) -> None:
        return await self._runner.run(self._logic.add_to_blacklist(jti, expires_in, expires_at))

    async def is_blacklisted(self, jti: str) -> bool:
        return await self._runner.run(self._logic.is_blacklisted(jti))

    async def remove_from_blacklist(self, jti: str) -> bool:
        return await self._runner.run(self._logic.remove_from_blacklist(jti))

    async def revoke_user_tokens(
        self, user_id: str, at: datetime | None = None, expires_in: float | None = None
    ) -> datetime:
        return await self._runner.run(self._logic.revoke_user_tokens(user_id, at, expires_in))

    async def user_tokens_revoked_at(self, user_id: str) -> datetime | None:
        return await self._runner.run(self._logic.user_tokens_revoked_at(user_id))

    async def purge_expired(self) -> int:
        return await self._runner.run(self._logic.purge_expired())


class Sessions(_SyncStore):
    def __init__(
        self, ops: SessionOps, runner: Runner, *, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        self._logic = SessionLogic(ops, namespace)
        super().__init__(runner, self._logic.namespace, self._logic)

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
        return self._runner.run(
            self._logic.create(
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
        )

    def get(self, token: str) -> SessionRecord | None:
        return self._runner.run(self._logic.get(token))

    def touch(self, token: str, *, ttl: float | None = None) -> SessionRecord | None:
        return self._runner.run(self._logic.touch(token, ttl))

    def revoke(self, token: str) -> bool:
        return self._runner.run(self._logic.revoke(token))

    def revoke_by_id(self, session_id: str, *, user_id: str | None = None) -> bool:
        return self._runner.run(self._logic.revoke_by_id(session_id, user_id))

    def revoke_all(
        self, user_id: str, *, except_token: str | None = None, except_id: str | None = None
    ) -> int:
        return self._runner.run(self._logic.revoke_all(user_id, except_token, except_id))

    def count(self, user_id: str) -> int:
        return self._runner.run(self._logic.count(user_id))

    def purge_expired(self) -> int:
        return self._runner.run(self._logic.purge_expired())

    def list(self, user_id: str) -> builtins.list[SessionRecord]:
        return self._runner.run(self._logic.list(user_id))


class AsyncSessions(_AsyncStore):
    def __init__(
        self, ops: SessionOps, runner: AsyncRunner, *, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        self._logic = SessionLogic(ops, namespace)
        super().__init__(runner, self._logic.namespace, self._logic)

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
        return await self._runner.run(
            self._logic.create(
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
        )

    async def get(self, token: str) -> SessionRecord | None:
        return await self._runner.run(self._logic.get(token))

    async def touch(self, token: str, *, ttl: float | None = None) -> SessionRecord | None:
        return await self._runner.run(self._logic.touch(token, ttl))

    async def revoke(self, token: str) -> bool:
        return await self._runner.run(self._logic.revoke(token))

    async def revoke_by_id(self, session_id: str, *, user_id: str | None = None) -> bool:
        return await self._runner.run(self._logic.revoke_by_id(session_id, user_id))

    async def revoke_all(
        self, user_id: str, *, except_token: str | None = None, except_id: str | None = None
    ) -> int:
        return await self._runner.run(self._logic.revoke_all(user_id, except_token, except_id))

    async def count(self, user_id: str) -> int:
        return await self._runner.run(self._logic.count(user_id))

    async def purge_expired(self) -> int:
        return await self._runner.run(self._logic.purge_expired())

    async def list(self, user_id: str) -> builtins.list[SessionRecord]:
        return await self._runner.run(self._logic.list(user_id))


class Totp(_SyncStore):
    def __init__(self, ops: TotpOps, runner: Runner, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._logic = TotpLogic(ops, namespace)
        super().__init__(runner, self._logic.namespace, self._logic)

    def save_pending(self, user_id: str, secret: bytes) -> None:
        return self._runner.run(self._logic.save_pending(user_id, secret))

    def enable(self, user_id: str) -> bool:
        return self._runner.run(self._logic.enable(user_id))

    def disable(self, user_id: str) -> bool:
        return self._runner.run(self._logic.disable(user_id))

    def load(self, user_id: str) -> TotpState | None:
        return self._runner.run(self._logic.load(user_id))

    def replace_backup_codes(self, user_id: str, code_hashes: Iterable[str]) -> None:
        return self._runner.run(self._logic.replace_backup_codes(user_id, code_hashes))

    def use_backup_code(self, user_id: str, code_hash: str) -> bool:
        return self._runner.run(self._logic.use_backup_code(user_id, code_hash))

    def claim_step(self, user_id: str, step: int) -> bool:
        return self._runner.run(self._logic.claim_step(user_id, step))


class AsyncTotp(_AsyncStore):
    def __init__(
        self, ops: TotpOps, runner: AsyncRunner, *, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        self._logic = TotpLogic(ops, namespace)
        super().__init__(runner, self._logic.namespace, self._logic)

    async def save_pending(self, user_id: str, secret: bytes) -> None:
        return await self._runner.run(self._logic.save_pending(user_id, secret))

    async def enable(self, user_id: str) -> bool:
        return await self._runner.run(self._logic.enable(user_id))

    async def disable(self, user_id: str) -> bool:
        return await self._runner.run(self._logic.disable(user_id))

    async def load(self, user_id: str) -> TotpState | None:
        return await self._runner.run(self._logic.load(user_id))

    async def replace_backup_codes(self, user_id: str, code_hashes: Iterable[str]) -> None:
        return await self._runner.run(self._logic.replace_backup_codes(user_id, code_hashes))

    async def use_backup_code(self, user_id: str, code_hash: str) -> bool:
        return await self._runner.run(self._logic.use_backup_code(user_id, code_hash))

    async def claim_step(self, user_id: str, step: int) -> bool:
        return await self._runner.run(self._logic.claim_step(user_id, step))


class MagicLinks(_SyncStore):
    def __init__(
        self, ops: MagicLinkOps, runner: Runner, *, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        self._logic = MagicLinkLogic(ops, namespace)
        super().__init__(runner, self._logic.namespace, self._logic)

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
        return self._runner.run(
            self._logic.issue(
                user_id,
                email,
                ttl=ttl,
                application_id=application_id,
                ip_address=ip_address,
                user_agent=user_agent,
                revoke_previous=revoke_previous,
                token=token,
            )
        )

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
        return self._runner.run(
            self._logic.issue_hashed(
                user_id,
                email,
                token_hash,
                ttl=ttl,
                application_id=application_id,
                ip_address=ip_address,
                user_agent=user_agent,
                revoke_previous=revoke_previous,
            )
        )

    def peek(self, token: str) -> MagicLinkRecord | None:
        return self._runner.run(self._logic.peek(token))

    def consume(self, token: str, *, application_id: str | None = None) -> MagicLinkRecord | None:
        return self._runner.run(self._logic.consume(token, application_id))

    def revoke_user(self, user_id: str) -> int:
        return self._runner.run(self._logic.revoke_user(user_id))

    def purge_expired(self) -> int:
        return self._runner.run(self._logic.purge_expired())


class AsyncMagicLinks(_AsyncStore):
    def __init__(
        self, ops: MagicLinkOps, runner: AsyncRunner, *, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        self._logic = MagicLinkLogic(ops, namespace)
        super().__init__(runner, self._logic.namespace, self._logic)

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
        return await self._runner.run(
            self._logic.issue(
                user_id,
                email,
                ttl=ttl,
                application_id=application_id,
                ip_address=ip_address,
                user_agent=user_agent,
                revoke_previous=revoke_previous,
                token=token,
            )
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
        return await self._runner.run(
            self._logic.issue_hashed(
                user_id,
                email,
                token_hash,
                ttl=ttl,
                application_id=application_id,
                ip_address=ip_address,
                user_agent=user_agent,
                revoke_previous=revoke_previous,
            )
        )

    async def peek(self, token: str) -> MagicLinkRecord | None:
        return await self._runner.run(self._logic.peek(token))

    async def consume(
        self, token: str, *, application_id: str | None = None
    ) -> MagicLinkRecord | None:
        return await self._runner.run(self._logic.consume(token, application_id))

    async def revoke_user(self, user_id: str) -> int:
        return await self._runner.run(self._logic.revoke_user(user_id))

    async def purge_expired(self) -> int:
        return await self._runner.run(self._logic.purge_expired())


_CLASSES: dict[StoreKind, tuple[type, type]] = {
    StoreKind.CACHE: (Cache, AsyncCache),
    StoreKind.SESSIONS: (Sessions, AsyncSessions),
    StoreKind.TOTP: (Totp, AsyncTotp),
    StoreKind.MAGIC_LINKS: (MagicLinks, AsyncMagicLinks),
}


def _kind_of(store: object) -> str:
    """The store kind's name (``cache``, ``sessions`` ...) of a store, for observability."""
    for cls in type(store).__mro__:
        for kind, classes in _CLASSES.items():
            if cls in classes:
                return kind.value
    return "store"


def open_store(
    kind: StoreKind, ops: object, runner: object, *, asynchronous: bool, namespace: str
) -> Any:
    """The store of ``kind`` in the mode asked, over a backend's ops and runner."""
    sync_store, async_store = _CLASSES[StoreKind(kind)]
    return (async_store if asynchronous else sync_store)(ops, runner, namespace=namespace)


@dataclass
class SharedStores:
    """Stores of several kinds over one runner (one client or pool), as a backend's
    ``open_group`` returns them: the stores do not close the runner, its owner does
    (``authstore.open_stores``'s group, or the one store ``sole()`` hands it to)."""

    stores: dict[StoreKind, Any]
    runner: Any
    refused: dict[StoreKind, UnsupportedOperationError] = field(default_factory=dict)
    """Kinds asked for that the backend does not hold, with the error it gives for them."""

    @classmethod
    def over(
        cls,
        runner: object,
        ops: Mapping[StoreKind, object],
        *,
        asynchronous: bool,
        namespace: str,
    ) -> SharedStores:
        """One store per entry of ``ops`` (kind -> that kind's ops), all over ``runner``."""
        stores = {
            kind: open_store(kind, kind_ops, runner, asynchronous=asynchronous, namespace=namespace)
            for kind, kind_ops in ops.items()
        }
        for store in stores.values():
            store._owns_runner = False
        return cls(stores, runner)

    def sole(self, kind: StoreKind) -> Any:
        """The store of ``kind`` when it was the only one asked for: it owns the runner."""
        if kind in self.refused:
            raise self.refused[kind]
        store = self.stores[kind]
        store._owns_runner = True
        return store
