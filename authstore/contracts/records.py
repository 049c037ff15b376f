"""Records returned by the stores: frozen, timezone-aware UTC, string ids."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple, TypeAlias

__all__ = [
    "JSONValue",
    "Value",
    "IssuedMagicLink",
    "MagicLinkRecord",
    "NewSession",
    "RateLimitAlgorithm",
    "RateLimitResult",
    "SessionRecord",
    "StoreKind",
    "TotpState",
    "from_epoch",
]

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"
"""What JSON can carry; floats must be finite."""

Value: TypeAlias = "bool | int | float | str | bytes | list[JSONValue] | dict[str, JSONValue]"
"""What a cache stores: a JSON value (never None at the top level) or bytes. Never pickle."""


class StoreKind(enum.StrEnum):
    """The four contracts; ``Backend.open`` receives one."""

    CACHE = "cache"
    SESSIONS = "sessions"
    TOTP = "totp"
    MAGIC_LINKS = "magic_links"


def from_epoch(seconds: float) -> datetime:
    """Store clocks are epoch seconds (float); records carry aware UTC datetimes."""
    return datetime.fromtimestamp(seconds, UTC)  # positional: a keyword costs a third more


class RateLimitAlgorithm(enum.StrEnum):
    """The limiters of ``check_rate_limit``; its ``algorithm`` also takes their values."""

    FIXED_WINDOW = "fixed_window"
    """At most ``limit`` hits per window starting at the first hit; a 2x burst fits at a boundary."""
    SLIDING_WINDOW = "sliding_window"
    """Weighted two-window counter: smooths the fixed window's boundary burst (approximate)."""
    GCRA = "gcra"
    """GCRA, a token bucket: bursts of ``limit``, then one hit per window/limit."""


@dataclass(frozen=True)
class RateLimitResult:
    """Unpacks as ``allowed, remaining, reset_after``.

    ``reset_after`` is the number of seconds until the limiter is back to a full
    ``limit``; ``retry_after`` is how long to wait before this same hit would pass
    (0 when allowed).
    """

    allowed: bool
    remaining: int
    reset_after: float
    retry_after: float
    limit: int

    def __iter__(self) -> Iterator[bool | int | float]:
        return iter((self.allowed, self.remaining, self.reset_after))

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class SessionRecord:
    id: str
    """Public id: safe to show and to pass to ``revoke_by_id``; never the secret token."""
    user_id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    device_id: str | None = None
    application_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    metadata: dict[str, JSONValue] = field(default_factory=dict)


class NewSession(NamedTuple):
    """The record and the secret token; the token is shown once and only its hash is kept."""

    record: SessionRecord
    token: str


@dataclass(frozen=True)
class TotpState:
    user_id: str
    enabled: bool
    secret: bytes | None
    """The active secret (ciphertext from the core); None until enabled."""
    pending_secret: bytes | None
    """Saved by enrolment, becomes ``secret`` on ``enable``."""
    last_step: int | None
    """The last time step claimed by ``claim_step``; replay protection."""
    backup_codes_left: int
    created_at: datetime
    updated_at: datetime
    enabled_at: datetime | None = None
    backup_code_hashes: tuple[str, ...] = field(default=(), repr=False)
    """The stored, still unused backup-code hashes, in the order given to
    ``replace_backup_codes``; ``backup_codes_left == len(backup_code_hashes)``. A core with
    salted hashes verifies a code against these, then calls ``use_backup_code(user_id,
    matched_hash)``, which succeeds exactly once."""


@dataclass(frozen=True)
class MagicLinkRecord:
    id: str
    user_id: str
    email: str
    created_at: datetime
    expires_at: datetime
    application_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    consumed_at: datetime | None = None


class IssuedMagicLink(NamedTuple):
    """The record and the secret token to mail; only the token's hash is kept."""

    record: MagicLinkRecord
    token: str
