"""What memcached operations yield, how full keys become memcached keys, and the
envelope every entry is stored in.

memcached cannot report a key's TTL and rounds expiry to whole seconds on its own
clock, so every entry carries its own expiry (epoch seconds on the client's clock)
in front of its value; reads treat an entry past that instant as missing, and the
exptime memcached gets is only a little later, for its own garbage collection.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import re
from typing import Any, Literal, NamedTuple

from authstore.contracts.errors import BackendError

__all__ = [
    "ABSOLUTE_MARGIN",
    "CHUNK_BYTES",
    "ERROR_LINES",
    "EXPIRY_MARGIN",
    "MAX_KEY_BYTES",
    "REALTIME_MAXDELTA",
    "Command",
    "Delete",
    "Entry",
    "Get",
    "Manifest",
    "Pause",
    "Replies",
    "SetMany",
    "Store",
    "Swap",
    "Touch",
    "Turn",
    "chunk_key",
    "exptime",
    "is_manifest",
    "meta_get_request",
    "meta_replies",
    "memcached_key",
    "pack",
    "swap_reply",
    "swap_request",
    "unpack",
    "swap_answer",
    "value_size",
]

MAX_KEY_BYTES = 250
"""memcached's longest key."""
REALTIME_MAXDELTA = 30 * 24 * 3600
"""memcached reads an exptime above this (30 days) as an absolute Unix time."""
EXPIRY_MARGIN = 2
"""Seconds added to a relative exptime: memcached's clock ticks once a second, so an
exptime of ceil(ttl) could drop an entry up to a second before its expiry. Reads
check the stored expiry, so a later physical expiry is never visible."""
ABSOLUTE_MARGIN = 60
"""Seconds added to an absolute exptime (TTLs over 30 days): it is read on the
server's clock, so the margin absorbs clock skew between client and server."""
CHUNK_BYTES = 1_000_000
"""Values longer than this are split over several items: memcached's default item
size limit (-I) is 1 MiB, key and header included."""

# Printable ASCII without space and '#': what a key kept as it is may hold. Mapped
# keys always hold a '#', so no kept key can ever equal a mapped one.
_KEPT = re.compile(r"[\x21\x22\x24-\x7e]{1,250}")
_CHUNKED = b"\x01"
"""First byte of a chunk manifest: a value body (bytes tag NUL, or JSON text) or an
internal state (decimal text) never starts with it."""
_NO_EXPIRY = b"-"


@functools.lru_cache(maxsize=4096)
def memcached_key(full: str) -> str:
    """The memcached key of a full key ``namespace:kind:key``: itself when memcached can
    take it as it is, else ``namespace:kind:#`` and the SHA-256 of the full key.

    Injective: kept keys contain no '#' and mapped keys do; two mapped keys are equal
    only if their full keys' SHA-256 are (a collision nobody can produce).
    """
    if _KEPT.fullmatch(full):
        return full
    namespace, kind, _ = full.split(":", 2)
    digest = hashlib.sha256(full.encode("utf-8")).digest()
    return f"{namespace}:{kind}:#{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def chunk_key(namespace: str, chunk_id: str, index: int) -> str:
    """A chunk of a large value: ``namespace:~:#id.index``. The '#' keeps it apart from
    kept keys; the '.' from mapped keys (base64url has none)."""
    return f"{namespace}:~:#{chunk_id}.{index}"


def exptime(expires_at: float | None, now: float) -> int:
    """memcached's exptime for an entry that expires at ``expires_at`` (None: never)."""
    if expires_at is None:
        return 0
    seconds = math.ceil(expires_at - now) + EXPIRY_MARGIN
    if seconds <= REALTIME_MAXDELTA:
        return max(seconds, 1)
    return math.ceil(expires_at) + ABSOLUTE_MARGIN


class Manifest(NamedTuple):
    """Where a value split into chunks lives: ``pieces`` items of ``chunk_id``."""

    namespace: str
    chunk_id: str
    pieces: int
    length: int

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(chunk_key(self.namespace, self.chunk_id, i) for i in range(self.pieces))

    def encode(self) -> bytes:
        return _CHUNKED + f"{self.chunk_id} {self.pieces} {self.length}".encode()

    @classmethod
    def decode(cls, namespace: str, body: bytes) -> Manifest:
        chunk_id, pieces, length = body[1:].decode().split()
        return cls(namespace, chunk_id, int(pieces), int(length))


class Entry(NamedTuple):
    """An entry as read: its expiry, its body (a value, a state, or a manifest), and
    its CAS token when read with ``gets``."""

    expires_at: float | None
    body: bytes
    token: object = None

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    @property
    def chunked(self) -> bool:
        return self[1][:1] == _CHUNKED


def is_manifest(body: bytes) -> bool:
    return body[:1] == _CHUNKED


def pack(expires_at: float | None, body: bytes) -> bytes:
    if expires_at is None:
        return _NO_EXPIRY + b"\n" + body
    return b"%r\n%b" % (float(expires_at), body)


def unpack(raw: object, token: object = None) -> Entry:
    if not isinstance(raw, bytes):
        raise BackendError(
            f"memcached returned a {type(raw).__name__}, not bytes: a client given as "
            "client= must keep pymemcache's default serde (bytes in, bytes out)"
        )
    header, newline, body = raw.partition(b"\n")
    try:
        if not newline:
            raise ValueError("no header")
        expires_at = None if header == _NO_EXPIRY else float(header)
    except ValueError:
        raise BackendError("memcached holds an entry authstore did not write") from None
    return _tuple_new(Entry, (expires_at, body, token))


_tuple_new = tuple.__new__
"""Makes a NamedTuple without the Python frame of its generated ``__new__``."""


class Get(NamedTuple):
    """Read keys (``gets`` with CAS tokens when ``cas``); the runner answers
    ``{key: (raw value, token or None)}`` for the keys found."""

    keys: tuple[str, ...]
    cas: bool = False


class Store(NamedTuple):
    """``set``, ``add`` or ``cas`` (with ``token``); the runner answers True when stored."""

    verb: Literal["set", "add", "cas"]
    key: str
    value: bytes
    exptime: int
    token: object = None


class Swap(NamedTuple):
    """Replace the entry whose CAS token is ``token`` (None: store only where there is
    no item at all), and read the key back, in one round trip: a meta set (``ms`` with
    ``C<token>``, or ``ME``, the add mode) and a meta get (``mg``) in one write (see
    ``swap_request``). The runner answers ``(the new CAS token, or None when not stored;
    the (raw value, token) the key holds after it, or None)``: when not stored, what the
    key holds instead, so the next attempt needs no read of its own."""

    key: str
    value: bytes
    exptime: int
    token: object = None


def swap_request(swap: Swap) -> bytes:
    """The bytes a ``Swap`` sends, CRLFs included: what both runners write, in one write."""
    key = swap.key.encode()
    token = swap.token
    if token is None:
        mode = b"ME"  # the add mode
    elif type(token) is bytes:  # from a meta reply, or pymemcache's gets
        mode = b"C" + token
    else:  # an int, from aiomcache's gets
        mode = b"C" + str(token).encode()
    return b"ms %b %d T%d %b c\r\n%b\r\nmg %b v c\r\n" % (
        key,
        len(swap.value),
        swap.exptime,
        mode,
        swap.value,
        key,
    )


def meta_get_request(key: str) -> bytes:
    """A one-key read with its CAS token (``Get`` with ``cas``): a meta get, whose reply
    both runners parse as a ``Swap``'s read-back (see ``value_size``), lighter than the
    drivers' general ``gets``."""
    return b"mg %b v c\r\n" % key.encode()


ERROR_LINES = (b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")
"""How memcached's error replies start: nothing more follows them."""

Replies = list[tuple[bytes, "bytes | None"]]


def meta_replies(buf: bytes, count: int) -> Replies | int:
    """The first ``count`` meta replies at the start of ``buf`` (what both runners read
    for a ``Swap`` or a meta get), each its line (CRLF stripped) and its value block
    (``VA``; None for any other line), up to and including an error line (which ends
    the reply: memcached sends nothing more for it); or, while ``buf`` holds less, how
    many more bytes it needs at least (1 for a line not ended yet)."""
    replies: Replies = []
    start = 0
    for _ in range(count):
        end = buf.find(b"\r\n", start)
        if end < 0:
            return 1
        line = buf[start:end]
        start = end + 2
        if line[:3] == b"VA ":
            end = start + int(line.split(b" ", 2)[1])
            if end + 2 > len(buf):
                return end + 2 - len(buf)
            replies.append((line, buf[start:end]))
            start = end + 2
        else:
            replies.append((line, None))
            if line.startswith(ERROR_LINES):
                break
    return replies


def swap_reply(status: bytes) -> bytes | None:
    """The new CAS token from the ``ms`` status line of a ``Swap`` (CRLF stripped), or
    None when memcached did not store: ``NS`` (add: an item exists), ``EX`` (another
    CAS token) or ``NF`` (no item to compare with)."""
    code, _, flags = status.partition(b" ")
    if code == b"HD" and flags[:1] == b"c":
        return flags[1:]
    if code in (b"NS", b"EX", b"NF"):
        return None
    raise BackendError(f"memcached answered a meta set with {status[:80]!r}")


def value_size(header: bytes) -> int | None:
    """The size of the value block after an ``mg ... v c`` header line (CRLF stripped):
    None for a miss (``EN``)."""
    if header == b"EN":
        return None
    if header[:3] == b"VA ":
        return int(header.split(b" ", 2)[1])
    raise BackendError(f"memcached answered a meta get with {header[:80]!r}")


def swap_answer(
    status: bytes, header: bytes, value: bytes | None
) -> tuple[bytes | None, tuple[bytes, bytes] | None]:
    """What a ``Swap`` answers, from its two reply lines (CRLF stripped) and the value
    block read after the second (None for a miss; see ``value_size``)."""
    token = swap_reply(status)
    if value is None:
        return token, None
    return token, (value, header.rpartition(b" c")[2])


class SetMany(NamedTuple):
    """``set`` every item, one round trip per server; the runner answers None."""

    items: tuple[tuple[str, bytes], ...]
    exptime: int


class Delete(NamedTuple):
    """The runner answers how many of ``keys`` memcached deleted."""

    keys: tuple[str, ...]


class Touch(NamedTuple):
    """Give ``keys`` a new exptime; the runner answers how many exist."""

    keys: tuple[str, ...]
    exptime: int


class Version(NamedTuple):
    """Ask every server its version (a ping); the runner answers None."""


class Turn(NamedTuple):
    """Wait for ``lock`` (a ``Turns`` lock of the runner's kind: a threading.Lock for the
    sync runner, an asyncio.Lock for the async one), no longer than ``seconds`` (the sync
    runner; the async one's deadline bounds the whole operation). The runner answers
    whether it got it; the operation releases it."""

    lock: Any
    seconds: float


class Pause(NamedTuple):
    """Wait ``seconds`` (between retries under contention); the runner answers None."""

    seconds: float


Command = Get | Store | Swap | SetMany | Delete | Touch | Version | Turn | Pause
