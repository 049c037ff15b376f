"""Every public signature agrees wherever it is written.

A contract method's parameters are written in its sync protocol, its async protocol
and its logic method (``adapters.common.logic``, from which the sync and async store
classes are made), then, encoded, in its ops protocol (``adapters.common.ops``) and in
every backend's ops class. mypy checks the classes against the protocols
(``common.stores``, ``adapters.conformance``) but compares neither the names of
positional parameters nor default values; this test compares them all with inspect.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import authstore.adapters
from authstore.adapters.common import ops as common_ops
from authstore.adapters.common import stores
from authstore.contracts.cache import AsyncCacheStore, CacheStore
from authstore.contracts.magic_links import AsyncMagicLinkStore, MagicLinkStore
from authstore.contracts.records import StoreKind
from authstore.contracts.sessions import AsyncSessionStore, SessionStore
from authstore.contracts.totp import AsyncTotpStore, TotpStore

CACHE, SESSIONS, TOTP, LINKS = (
    StoreKind.CACHE,
    StoreKind.SESSIONS,
    StoreKind.TOTP,
    StoreKind.MAGIC_LINKS,
)

PROTOCOLS: dict[StoreKind, tuple[type, type]] = {
    CACHE: (CacheStore, AsyncCacheStore),
    SESSIONS: (SessionStore, AsyncSessionStore),
    TOTP: (TotpStore, AsyncTotpStore),
    LINKS: (MagicLinkStore, AsyncMagicLinkStore),
}
STORES: dict[StoreKind, tuple[type, type]] = {
    CACHE: (stores.Cache, stores.AsyncCache),
    SESSIONS: (stores.Sessions, stores.AsyncSessions),
    TOTP: (stores.Totp, stores.AsyncTotp),
    LINKS: (stores.MagicLinks, stores.AsyncMagicLinks),
}
OPS_PROTOCOLS: dict[StoreKind, type] = {
    CACHE: common_ops.CacheOps,
    SESSIONS: common_ops.SessionOps,
    TOTP: common_ops.TotpOps,
    LINKS: common_ops.MagicLinkOps,
}
LIFECYCLE = {"ping", "close", "aclose"}
"""Methods every store has apart from its contract's operations (the stores' bases)."""


@dataclass(frozen=True)
class Delegation:
    ops: str
    """The ops method(s) the logic method calls, ``|`` between alternatives."""
    parameters: str
    """That op's parameters, in order; for several ops, each one's."""
    why: str = ""
    """Why they are not the contract method's own (empty: they are)."""


SAME = ""

# How each contract method reaches its backend, and why its op's parameters differ from
# its own. Two differences hold for every row and are not repeated: the op receives
# arguments checked and encoded (full keys, bytes, seconds as floats, epoch times,
# token hashes), and the logic calls ops positionally, so an op's parameter kinds are
# its own; the kinds are compared between the ops protocol and every backend's class
# instead.
DELEGATIONS: dict[tuple[StoreKind, str], Delegation] = {
    (CACHE, "get"): Delegation("get", "key"),
    (CACHE, "set"): Delegation("set", "key value ttl"),
    (CACHE, "add"): Delegation("add", "key value ttl"),
    (CACHE, "delete"): Delegation("delete", "key"),
    (CACHE, "exists"): Delegation("exists", "key"),
    (CACHE, "incr"): Delegation("incr", "key delta ttl"),
    (CACHE, "expire"): Delegation("expire", "key ttl"),
    (CACHE, "ttl"): Delegation("ttl", "key"),
    (CACHE, "get_many"): Delegation("get_many", "keys"),
    (CACHE, "set_many"): Delegation(
        "set_many", "items ttl", "the entries arrive as full keys to encoded bytes"
    ),
    (CACHE, "delete_many"): Delegation("delete_many", "keys"),
    (CACHE, "check_rate_limit"): Delegation(
        "fixed_window|sliding_window|gcra",
        "key limit window cost",
        "the logic picks the algorithm's op, so no op takes the algorithm",
    ),
    (CACHE, "check_rate_limits"): Delegation(
        "read_record|replace_record",
        "key writing|key token body ttl",
        "a group is a compare-and-set the logic runs over one record: read, decide, replace",
    ),
    (CACHE, "peek_rate_limit"): Delegation(
        "read_limiter",
        "key algorithm",
        "the op reads the limiter's state; the logic decides with limit, window and cost",
    ),
    (CACHE, "peek_rate_limits"): Delegation(
        "read_record", "key writing", "the group's record, read without writing"
    ),
    (CACHE, "reset_rate_limit"): Delegation(
        "delete_many", "keys", "every algorithm's limiter key of ``key``, deleted at once"
    ),
    (CACHE, "add_to_blacklist"): Delegation(
        "raise_to",
        "key at ttl",
        "the entry only grows (an epoch raised, never lowered); expires_in/expires_at "
        "become one ttl in the logic",
    ),
    (CACHE, "is_blacklisted"): Delegation("exists", "key", "the jti becomes a blacklist key"),
    (CACHE, "remove_from_blacklist"): Delegation(
        "delete", "key", "the jti becomes a blacklist key"
    ),
    (CACHE, "revoke_user_tokens"): Delegation(
        "raise_to", "key at ttl", "the user's revocation instant only moves forward"
    ),
    (CACHE, "user_tokens_revoked_at"): Delegation(
        "read_epoch", "key", "the user's revocation key, read as an epoch"
    ),
    (CACHE, "purge_expired"): Delegation("purge_expired", SAME),
    (SESSIONS, "create"): Delegation(
        "create",
        "draft max_sessions",
        "the logic hashes the token (or makes one), draws the public session_id and "
        "passes the checked fields as one SessionDraft",
    ),
    (SESSIONS, "get"): Delegation("get", "token_hash", "only the token's hash is stored"),
    (SESSIONS, "touch"): Delegation("touch", "token_hash ttl", "only the token's hash is stored"),
    (SESSIONS, "revoke"): Delegation("revoke", "token_hash", "only the token's hash is stored"),
    (SESSIONS, "revoke_by_id"): Delegation("revoke_by_id", "session_id user_id"),
    (SESSIONS, "revoke_all"): Delegation(
        "revoke_all", "user_id except_hash except_id", "only the token's hash is stored"
    ),
    (SESSIONS, "count"): Delegation("count", "user_id"),
    (SESSIONS, "purge_expired"): Delegation("purge_expired", SAME),
    (SESSIONS, "list"): Delegation("list", "user_id"),
    (TOTP, "save_pending"): Delegation("save_pending", "user_id secret"),
    (TOTP, "enable"): Delegation("enable", "user_id"),
    (TOTP, "disable"): Delegation("disable", "user_id"),
    (TOTP, "load"): Delegation("load", "user_id"),
    (TOTP, "replace_backup_codes"): Delegation("replace_backup_codes", "user_id code_hashes"),
    (TOTP, "use_backup_code"): Delegation("use_backup_code", "user_id code_hash"),
    (TOTP, "claim_step"): Delegation("claim_step", "user_id step"),
    (LINKS, "issue"): Delegation(
        "issue",
        "draft revoke_previous",
        "the logic hashes the token (or makes one), draws the public link_id and passes "
        "the checked fields as one LinkDraft",
    ),
    (LINKS, "issue_hashed"): Delegation(
        "issue",
        "draft revoke_previous",
        "the caller's hash is checked and passed on; one op issues both ways",
    ),
    (LINKS, "peek"): Delegation("peek", "token_hash", "only the token's hash is stored"),
    (LINKS, "consume"): Delegation(
        "consume", "token_hash application_id", "only the token's hash is stored"
    ),
    (LINKS, "revoke_user"): Delegation("revoke_user", "user_id"),
    (LINKS, "purge_expired"): Delegation("purge_expired", SAME),
}


def _public(cls: type) -> set[str]:
    return {
        name
        for name in dir(cls)
        if not name.startswith("_") and callable(getattr(cls, name)) and name != "capabilities"
    }


def _contract_methods(kind: StoreKind) -> list[str]:
    sync_protocol, _ = PROTOCOLS[kind]
    return sorted(_public(sync_protocol) - LIFECYCLE)


def _parameters(function: Any) -> list[tuple[str, Any, Any, Any]]:
    """(name, kind, default, annotation) of each parameter but ``self``."""
    parameters = list(inspect.signature(function).parameters.values())[1:]
    return [(p.name, p.kind, p.default, p.annotation) for p in parameters]


def _names(function: Any) -> str:
    return " ".join(name for name, *_ in _parameters(function))


def _shape(function: Any) -> list[tuple[str, Any, bool]]:
    """What a caller of an op relies on: names, kinds and which ones may be left out."""
    return [
        (name, kind, default is not inspect.Parameter.empty)
        for name, kind, default, _ in _parameters(function)
    ]


@pytest.mark.parametrize("kind", list(StoreKind))
def test_protocols_and_store_classes_have_the_same_methods(kind: StoreKind) -> None:
    _, async_protocol = PROTOCOLS[kind]
    sync_store, async_store = STORES[kind]
    expected = set(_contract_methods(kind))
    assert _public(async_protocol) - LIFECYCLE == expected
    assert _public(sync_store) - LIFECYCLE == expected
    assert _public(async_store) - LIFECYCLE == expected
    assert {k[1] for k in DELEGATIONS if k[0] is kind} == expected


CONTRACT_METHODS = [(kind, name) for kind in StoreKind for name in _contract_methods(kind)]


@pytest.mark.parametrize(("kind", "name"), CONTRACT_METHODS, ids=lambda x: getattr(x, "value", x))
def test_a_contract_method_has_one_signature_in_both_modes(kind: StoreKind, name: str) -> None:
    """Same parameters (names, kinds, defaults, annotations) and the same answer in the
    sync protocol, the async protocol, the sync store and the async store; the async
    ones are coroutine functions (their answer is awaited), the sync ones are not."""
    sync_protocol, async_protocol = PROTOCOLS[kind]
    sync_store, async_store = STORES[kind]
    places = {
        "sync protocol": getattr(sync_protocol, name),
        "async protocol": getattr(async_protocol, name),
        "sync store": getattr(sync_store, name),
        "async store": getattr(async_store, name),
    }
    reference = places["sync protocol"]
    for where, function in places.items():
        assert _parameters(function) == _parameters(reference), f"{where}.{name}"
        answer = inspect.signature(function).return_annotation
        assert answer == inspect.signature(reference).return_annotation, f"{where}.{name}"
        assert inspect.iscoroutinefunction(function) == where.startswith("async"), where


@pytest.mark.parametrize(("kind", "name"), CONTRACT_METHODS, ids=lambda x: getattr(x, "value", x))
def test_a_contract_method_reaches_its_op_as_the_table_says(kind: StoreKind, name: str) -> None:
    delegation = DELEGATIONS[kind, name]
    sync_protocol, _ = PROTOCOLS[kind]
    protocol = OPS_PROTOCOLS[kind]
    ops, parameters = delegation.ops.split("|"), delegation.parameters.split("|")
    if len(parameters) == 1:
        parameters *= len(ops)
    for op, expected in zip(ops, parameters, strict=True):
        assert _names(getattr(protocol, op)) == expected, f"{protocol.__name__}.{op}"
    same = ops == [name] and parameters[0] == _names(getattr(sync_protocol, name))
    assert same == (not delegation.why), (
        f"{kind.value}.{name}: give the reason its op differs, or none when it does not"
    )


@pytest.mark.parametrize("kind", list(StoreKind))
def test_every_op_serves_a_contract_method(kind: StoreKind) -> None:
    """An op no contract method reaches is dead, or its row in the table is missing."""
    protocol = OPS_PROTOCOLS[kind]
    reached = {op for (k, _), row in DELEGATIONS.items() if k is kind for op in row.ops.split("|")}
    assert _public(protocol) - {"ping"} == reached


def _backend_ops_classes() -> list[tuple[type, type]]:
    """(ops class, its protocol) for every ops class the built-in backends define in an
    ``ops`` module or package (``...Ops`` classes, named after their protocol)."""
    found: dict[str, tuple[type, type]] = {}
    suffixes = {protocol.__name__: protocol for protocol in OPS_PROTOCOLS.values()}
    for module_info in pkgutil.walk_packages(authstore.adapters.__path__, "authstore.adapters."):
        parts = module_info.name.split(".")
        if "ops" not in parts[3:] or parts[2] == "common":
            continue
        module = importlib.import_module(module_info.name)
        for cls in vars(module).values():
            if not isinstance(cls, type) or cls.__module__ != module.__name__:
                continue
            for suffix, protocol in suffixes.items():
                if cls.__name__.endswith(suffix) and not cls.__name__.startswith("_"):
                    found[f"{cls.__module__}.{cls.__qualname__}"] = (cls, protocol)
    return [found[name] for name in sorted(found)]


BACKEND_OPS = _backend_ops_classes()


def test_every_backend_has_ops_classes() -> None:
    backends = {cls.__module__.split(".")[2] for cls, _ in BACKEND_OPS}
    assert backends == {"memory", "sql", "redis", "mongodb", "memcached"}


@pytest.mark.parametrize(("cls", "protocol"), BACKEND_OPS, ids=lambda x: x.__name__)
def test_a_backend_ops_class_has_its_protocols_parameters(cls: type, protocol: type) -> None:
    """Names, kinds and optional parameters as in the ops protocol (the types are mypy's,
    through ``adapters.conformance``)."""
    for name in sorted(_public(protocol)):
        assert _shape(getattr(cls, name)) == _shape(getattr(protocol, name)), (
            f"{cls.__name__}.{name}"
        )


def test_mypy_checks_every_backend_ops_class() -> None:
    """``adapters.conformance`` assigns each ops class to its protocol's type: a class
    left out there would be checked by nobody."""
    source = Path(inspect.getfile(importlib.import_module("authstore.adapters"))).parent
    tree = ast.parse((source / "conformance.py").read_text())
    checked = {
        (node.value.id, ast.unparse(node.annotation))
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Name)
    }
    expected = {(cls.__name__, f"type[{protocol.__name__}]") for cls, protocol in BACKEND_OPS}
    assert checked == expected


def test_mypy_checks_every_store_class() -> None:
    tree = ast.parse(Path(inspect.getfile(stores)).read_text())
    checked = {
        (node.value.id, ast.unparse(node.annotation))
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Name)
    }
    expected = {
        (store.__name__, f"type[{protocol.__name__}]")
        for kind in StoreKind
        for store, protocol in zip(STORES[kind], PROTOCOLS[kind], strict=True)
    }
    assert expected <= checked
