"""The store classes: every backend's sync and async stores are these, given its ops and runner.

Each method is its logic method (``logic``) run by the store's runner, made by
``blocking`` (sync) or ``awaiting`` (async): the checks, encoding and signature live in
``logic``, the backend commands in the backend's ops, once. A block at the end of this
module makes mypy check every class against its contract's protocol.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, NoReturn, ParamSpec, Protocol, TypeVar

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
from authstore.contracts.records import StoreKind

if TYPE_CHECKING:
    from authstore.contracts.cache import AsyncCacheStore, CacheStore
    from authstore.contracts.magic_links import AsyncMagicLinkStore, MagicLinkStore
    from authstore.contracts.sessions import AsyncSessionStore, SessionStore
    from authstore.contracts.totp import AsyncTotpStore, TotpStore
    from authstore.registry import StoreURL

__all__ = [
    "AsyncCache",
    "AsyncMagicLinks",
    "AsyncSessions",
    "AsyncTotp",
    "Cache",
    "GroupingBackend",
    "MagicLinks",
    "Sessions",
    "Totp",
    "SharedStores",
    "awaiting",
    "blocking",
    "open_store",
]

DEFAULT_NAMESPACE = "authstore"
P = ParamSpec("P")
T = TypeVar("T")


class _ClosedOps:
    """The ops of a closed store: every operation raises StoreClosedError when it reaches
    the backend, after the logic's argument checks (bad input stays a ValueError or
    TypeError, as on an open store)."""

    routing = None
    """No placement by user (logic reads ``ops.routing``): a closed store mints nothing."""

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


_MADE = "<store method>"
"""The ``__qualname__`` of a method ``blocking``/``awaiting`` made, until its class names it."""


class _Logic(Protocol):
    """A store's logic (``CacheLogic``, ...): the checks, over the backend's ``ops``."""

    ops: Any
    namespace: str

    def __init__(self, ops: Any, namespace: str) -> None: ...


class _Store:
    """What the sync and async stores share: the logic, and retiring it on close."""

    def __init__(self, logic: _Logic) -> None:
        self._logic = logic
        self._owns_runner = True
        """False in a group (``open_stores``): the group closes the shared runner once."""
        self.namespace = logic.namespace

    def _retire(self, runner: object) -> _ClosedOps:
        """New calls get a logic over closed ops; operations already under way keep the
        logic (and ops) they started with, and finish. The error names where the store
        was (its redacted URL when known)."""
        display = getattr(getattr(runner, "settings", None), "display", None)
        ops = _ClosedOps(str(display) if display else repr(runner))
        self._logic = type(self._logic)(ops, self._logic.namespace)
        return ops

    def __repr__(self) -> str:
        runner = getattr(self, "_runner", None)
        return f"<{type(self).__name__} namespace={self.namespace!r} runner={runner!r}>"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Name the methods ``blocking``/``awaiting`` made after the class they are in."""
        super().__init_subclass__(**kwargs)
        for name, member in vars(cls).items():
            if getattr(member, "__qualname__", None) == _MADE:
                member.__qualname__ = f"{cls.__qualname__}.{name}"


class _SyncStore(_Store, SyncContext):
    def __init__(self, runner: Runner, logic: _Logic) -> None:
        super().__init__(logic)
        # observability: the runner itself unless instrumentation is enabled (once per store)
        self._runner = observability.observe(runner, _kind_of(self), asynchronous=False)

    def ping(self) -> None:
        """One round trip to the backend within the store's timeout; raises
        BackendUnavailableError when it does not answer."""
        ops: HealthOps = self._logic.ops
        return self._runner.run(ops.ping())

    def close(self) -> None:
        """Refuse every later operation; close the connections unless a group shares them."""
        runner = self._runner
        if isinstance(runner, _ClosedRunner):
            return
        self._runner = _ClosedRunner(self._retire(runner))
        if self._owns_runner:
            runner.close()


class _AsyncStore(_Store, AsyncContext):
    def __init__(self, runner: AsyncRunner, logic: _Logic) -> None:
        super().__init__(logic)
        # observability: the runner itself unless instrumentation is enabled (once per store)
        self._runner = observability.observe(runner, _kind_of(self), asynchronous=True)
        self.connect_on_enter = False
        """``connect=eager``: ``async with`` pings before the block runs."""

    async def ping(self) -> None:
        """One round trip to the backend within the store's timeout; raises
        BackendUnavailableError when it does not answer."""
        ops: HealthOps = self._logic.ops
        return await self._runner.run(ops.ping())

    async def aclose(self) -> None:
        """Refuse every later operation; close the connections unless a group shares them."""
        runner = self._runner
        if isinstance(runner, _ClosedRunner):
            return
        self._runner = _AsyncClosedRunner(self._retire(runner))
        if self._owns_runner:
            await runner.close()


_SYNC = "def {name}({declared}):\n    return self._runner.run(op({passed}))"
_ASYNC = "async def {name}({declared}):\n    return await self._runner.run(op({passed}))"


def _method(op: Callable[..., Any], template: str) -> Any:
    """A store method with the parameters of the logic method ``op`` (names, kinds and
    defaults) that runs ``op`` on the store's logic with the store's runner.

    Written out and compiled, as ``dataclasses`` writes ``__init__``: a ``*args,
    **kwargs`` wrapper would cost each call a quarter of the memory backend's whole
    operation. Only the names of ``op``'s parameters enter the source.
    """
    signature = inspect.signature(op)
    declared, passed = ["self"], ["self._logic"]
    for parameter in list(signature.parameters.values())[1:]:
        keyword = parameter.kind is parameter.KEYWORD_ONLY
        if not (keyword or parameter.kind is parameter.POSITIONAL_OR_KEYWORD):
            raise TypeError(f"{op.__qualname__}: a store method takes no {parameter.kind}")
        if parameter.name in ("self", "op"):
            raise TypeError(f"{op.__qualname__}: {parameter.name!r} names the store or op")
        if keyword and "*" not in declared:
            declared.append("*")
        declared.append(parameter.name)
        passed.append(f"{parameter.name}={parameter.name}" if keyword else parameter.name)
    source = template.format(
        name=op.__name__, declared=", ".join(declared), passed=", ".join(passed)
    )
    namespace: dict[str, Any] = {"op": op}
    exec(compile(source, f"<store method {op.__qualname__}>", "exec"), namespace)  # noqa: S102
    method = namespace[op.__name__]
    method.__defaults__, method.__kwdefaults__ = op.__defaults__, op.__kwdefaults__
    answer = signature.return_annotation
    if not (isinstance(answer, str) and answer.startswith("Op[")):
        raise TypeError(f"{op.__qualname__} must be annotated -> Op[...], not {answer!r}")
    # what help() and inspect.signature show: op's parameters, and the answer of the op
    method.__signature__ = signature.replace(return_annotation=answer[3:-1])
    method.__qualname__, method.__module__, method.__doc__ = _MADE, __name__, op.__doc__
    return method


def blocking(op: Callable[Concatenate[Any, P], Op[T]]) -> Callable[Concatenate[_SyncStore, P], T]:
    """A sync store method: the logic method ``op``, on the store's logic, run by the
    store's runner. It takes ``op``'s parameters (mypy sees them through ``P``)."""
    method: Callable[Concatenate[_SyncStore, P], T] = _method(op, _SYNC)
    return method


def awaiting(
    op: Callable[Concatenate[Any, P], Op[T]],
) -> Callable[Concatenate[_AsyncStore, P], Coroutine[Any, Any, T]]:
    """``blocking`` for an async store: the method awaits the store's async runner."""
    method: Callable[Concatenate[_AsyncStore, P], Coroutine[Any, Any, T]] = _method(op, _ASYNC)
    return method


# The store classes: one line a method, naming the logic method it runs.


class Cache(_SyncStore):
    def __init__(
        self,
        ops: CacheOps,
        runner: Runner,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        capabilities: frozenset[str] = CACHE_CAPABILITIES,
    ) -> None:
        super().__init__(runner, CacheLogic(ops, namespace))
        self.capabilities = capabilities

    get = blocking(CacheLogic.get)
    set = blocking(CacheLogic.set)
    add = blocking(CacheLogic.add)
    delete = blocking(CacheLogic.delete)
    exists = blocking(CacheLogic.exists)
    incr = blocking(CacheLogic.incr)
    expire = blocking(CacheLogic.expire)
    ttl = blocking(CacheLogic.ttl)
    get_many = blocking(CacheLogic.get_many)
    set_many = blocking(CacheLogic.set_many)
    delete_many = blocking(CacheLogic.delete_many)
    check_rate_limit = blocking(CacheLogic.check_rate_limit)
    check_rate_limits = blocking(CacheLogic.check_rate_limits)
    peek_rate_limit = blocking(CacheLogic.peek_rate_limit)
    peek_rate_limits = blocking(CacheLogic.peek_rate_limits)
    reset_rate_limit = blocking(CacheLogic.reset_rate_limit)
    add_to_blacklist = blocking(CacheLogic.add_to_blacklist)
    is_blacklisted = blocking(CacheLogic.is_blacklisted)
    remove_from_blacklist = blocking(CacheLogic.remove_from_blacklist)
    revoke_user_tokens = blocking(CacheLogic.revoke_user_tokens)
    user_tokens_revoked_at = blocking(CacheLogic.user_tokens_revoked_at)
    purge_expired = blocking(CacheLogic.purge_expired)


class AsyncCache(_AsyncStore):
    def __init__(
        self,
        ops: CacheOps,
        runner: AsyncRunner,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        capabilities: frozenset[str] = CACHE_CAPABILITIES,
    ) -> None:
        super().__init__(runner, CacheLogic(ops, namespace))
        self.capabilities = capabilities

    get = awaiting(CacheLogic.get)
    set = awaiting(CacheLogic.set)
    add = awaiting(CacheLogic.add)
    delete = awaiting(CacheLogic.delete)
    exists = awaiting(CacheLogic.exists)
    incr = awaiting(CacheLogic.incr)
    expire = awaiting(CacheLogic.expire)
    ttl = awaiting(CacheLogic.ttl)
    get_many = awaiting(CacheLogic.get_many)
    set_many = awaiting(CacheLogic.set_many)
    delete_many = awaiting(CacheLogic.delete_many)
    check_rate_limit = awaiting(CacheLogic.check_rate_limit)
    check_rate_limits = awaiting(CacheLogic.check_rate_limits)
    peek_rate_limit = awaiting(CacheLogic.peek_rate_limit)
    peek_rate_limits = awaiting(CacheLogic.peek_rate_limits)
    reset_rate_limit = awaiting(CacheLogic.reset_rate_limit)
    add_to_blacklist = awaiting(CacheLogic.add_to_blacklist)
    is_blacklisted = awaiting(CacheLogic.is_blacklisted)
    remove_from_blacklist = awaiting(CacheLogic.remove_from_blacklist)
    revoke_user_tokens = awaiting(CacheLogic.revoke_user_tokens)
    user_tokens_revoked_at = awaiting(CacheLogic.user_tokens_revoked_at)
    purge_expired = awaiting(CacheLogic.purge_expired)


class Sessions(_SyncStore):
    def __init__(
        self, ops: SessionOps, runner: Runner, *, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        super().__init__(runner, SessionLogic(ops, namespace))

    create = blocking(SessionLogic.create)
    get = blocking(SessionLogic.get)
    touch = blocking(SessionLogic.touch)
    revoke = blocking(SessionLogic.revoke)
    revoke_by_id = blocking(SessionLogic.revoke_by_id)
    revoke_all = blocking(SessionLogic.revoke_all)
    count = blocking(SessionLogic.count)
    purge_expired = blocking(SessionLogic.purge_expired)
    list = blocking(SessionLogic.list)


class AsyncSessions(_AsyncStore):
    def __init__(
        self, ops: SessionOps, runner: AsyncRunner, *, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        super().__init__(runner, SessionLogic(ops, namespace))

    create = awaiting(SessionLogic.create)
    get = awaiting(SessionLogic.get)
    touch = awaiting(SessionLogic.touch)
    revoke = awaiting(SessionLogic.revoke)
    revoke_by_id = awaiting(SessionLogic.revoke_by_id)
    revoke_all = awaiting(SessionLogic.revoke_all)
    count = awaiting(SessionLogic.count)
    purge_expired = awaiting(SessionLogic.purge_expired)
    list = awaiting(SessionLogic.list)


class Totp(_SyncStore):
    def __init__(self, ops: TotpOps, runner: Runner, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        super().__init__(runner, TotpLogic(ops, namespace))

    save_pending = blocking(TotpLogic.save_pending)
    enable = blocking(TotpLogic.enable)
    disable = blocking(TotpLogic.disable)
    load = blocking(TotpLogic.load)
    replace_backup_codes = blocking(TotpLogic.replace_backup_codes)
    use_backup_code = blocking(TotpLogic.use_backup_code)
    claim_step = blocking(TotpLogic.claim_step)


class AsyncTotp(_AsyncStore):
    def __init__(
        self, ops: TotpOps, runner: AsyncRunner, *, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        super().__init__(runner, TotpLogic(ops, namespace))

    save_pending = awaiting(TotpLogic.save_pending)
    enable = awaiting(TotpLogic.enable)
    disable = awaiting(TotpLogic.disable)
    load = awaiting(TotpLogic.load)
    replace_backup_codes = awaiting(TotpLogic.replace_backup_codes)
    use_backup_code = awaiting(TotpLogic.use_backup_code)
    claim_step = awaiting(TotpLogic.claim_step)


class MagicLinks(_SyncStore):
    def __init__(
        self, ops: MagicLinkOps, runner: Runner, *, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        super().__init__(runner, MagicLinkLogic(ops, namespace))

    issue = blocking(MagicLinkLogic.issue)
    issue_hashed = blocking(MagicLinkLogic.issue_hashed)
    peek = blocking(MagicLinkLogic.peek)
    consume = blocking(MagicLinkLogic.consume)
    revoke_user = blocking(MagicLinkLogic.revoke_user)
    purge_expired = blocking(MagicLinkLogic.purge_expired)


class AsyncMagicLinks(_AsyncStore):
    def __init__(
        self, ops: MagicLinkOps, runner: AsyncRunner, *, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        super().__init__(runner, MagicLinkLogic(ops, namespace))

    issue = awaiting(MagicLinkLogic.issue)
    issue_hashed = awaiting(MagicLinkLogic.issue_hashed)
    peek = awaiting(MagicLinkLogic.peek)
    consume = awaiting(MagicLinkLogic.consume)
    revoke_user = awaiting(MagicLinkLogic.revoke_user)
    purge_expired = awaiting(MagicLinkLogic.purge_expired)


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


class GroupingBackend:
    """A backend whose stores open in groups over one runner (one client or pool):
    opening one store is opening the group of that one kind, which hands it the runner."""

    def open_group(
        self, url: StoreURL, kinds: tuple[StoreKind, ...], *, asynchronous: bool
    ) -> SharedStores:
        raise NotImplementedError

    def open(self, url: StoreURL, kind: StoreKind, *, asynchronous: bool) -> Any:
        kind = StoreKind(kind)
        return self.open_group(url, (kind,), asynchronous=asynchronous).sole(kind)


if TYPE_CHECKING:
    # mypy checks each store class against its contract's protocol here: the names of
    # keyword-only parameters, every parameter's kind, type and presence of a default,
    # and the answer. (It does not compare the names of positional parameters, nor
    # default values: tests/unit/test_signature_parity.py does.)
    _cache: type[CacheStore] = Cache
    _async_cache: type[AsyncCacheStore] = AsyncCache
    _sessions: type[SessionStore] = Sessions
    _async_sessions: type[AsyncSessionStore] = AsyncSessions
    _totp: type[TotpStore] = Totp
    _async_totp: type[AsyncTotpStore] = AsyncTotp
    _magic_links: type[MagicLinkStore] = MagicLinks
    _async_magic_links: type[AsyncMagicLinkStore] = AsyncMagicLinks
