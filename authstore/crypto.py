"""Encryption of TOTP secrets at rest: AES-256-GCM with a key ring (``authstore[crypto]``).

A TOTP store keeps whatever bytes the core gives it; this module makes those bytes a
ciphertext that only the application's keys open, and only for the user it was made for::

    from authstore.crypto import KeyRing, SecretBox

    ring = KeyRing.parse(os.environ["TOTP_KEYS"])   # "2025:<base64>,2026:<base64>", newest last
    box = SecretBox(ring)
    blob = box.encrypt("alice", b"JBSWY3DPEHPK3PXP")  # what totp.save_pending stores
    box.decrypt("alice", blob)                       # b"JBSWY3DPEHPK3PXP"
    box.decrypt("mallory", blob)                     # DecryptionError: bound to its user

- **Key ring.** Keys are 32 random bytes, each under a short public id. The id of the key
  that encrypted a secret travels inside the ciphertext, so ``encrypt`` uses the newest key
  and ``decrypt`` any key still in the ring. To rotate: put a new key last, re-encrypt the
  stored secrets with ``reencrypt`` (``needs_rotation`` tells which), then drop the old key.
- **Bound to its user.** The user id is authenticated associated data: a ciphertext copied
  to another user's row fails to decrypt (``DecryptionError``), as does any changed byte.
- **Sync for CPU, async wrapper for the event loop.** ``SecretBox`` does the work in the
  caller's thread; ``AsyncSecretBox`` has the same methods as coroutines that run it in a
  worker thread (``asyncio.to_thread``), so a burst of encryptions never stalls the loop.
- **No secret in a repr or an error.** Reprs show key ids only; errors name the key id or
  what was wrong with the input, never key material, plaintext or ciphertext.

Layout of a ciphertext: ``0x01`` (format version), one byte ``n``, the key id (``n`` ASCII
bytes), a 12-byte random nonce, the AES-GCM ciphertext and its 16-byte tag. The associated
data is a fixed label, the version, the key id and the user id (UTF-8).

``cryptography`` is imported when the first ``KeyRing`` is made, never by ``import authstore``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from authstore.registry import require_module

__all__ = [
    "MAX_SECRET_BYTES",
    "AsyncSecretBox",
    "DecryptionError",
    "KeyRing",
    "SecretBox",
    "UnknownKeyError",
    "generate_key",
]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
VERSION = 1
MAX_SECRET_BYTES = 1024
"""A TOTP secret is 10 to 64 bytes; anything much larger is a mistake, refused."""
MAX_USER_ID_BYTES = 255
_KEY_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_LABEL = b"authstore.crypto.totp-secret\x00"
_AEAD_MODULE = "cryptography.hazmat.primitives.ciphers.aead"


class DecryptionError(ValueError):
    """A ciphertext does not open: changed, made for another user, or under another key."""


class UnknownKeyError(DecryptionError):
    """A ciphertext names a key id that is not (or no longer) in the ring."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(
            f"the secret was encrypted with key id {key_id!r}, which is not in the key ring "
            "(was it removed before every secret was re-encrypted?)"
        )


def generate_key() -> bytes:
    """32 random bytes for a new key of the ring (store them base64-encoded)."""
    return os.urandom(KEY_BYTES)


def _check_key_id(key_id: object) -> str:
    if not isinstance(key_id, str):
        raise TypeError(f"a key id must be a str, not {type(key_id).__name__}")
    if not _KEY_ID.fullmatch(key_id):
        raise ValueError(
            "a key id must be 1 to 64 characters among letters, digits, '_', '.' and '-'"
        )
    return key_id


def _check_key(key_id: str, key: object) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"key {key_id!r} must be bytes, not {type(key).__name__}")
    raw = bytes(key)
    if len(raw) != KEY_BYTES:
        raise ValueError(
            f"key {key_id!r} must be {KEY_BYTES} bytes (AES-256), not {len(raw)} bytes"
        )
    return raw


def _check_user_id(user_id: object) -> bytes:
    if not isinstance(user_id, str):
        raise TypeError(f"user_id must be a str, not {type(user_id).__name__}")
    if not user_id:
        raise ValueError("user_id must not be empty")
    try:
        encoded = user_id.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("user_id is not valid Unicode (lone surrogate)") from None
    if len(encoded) > MAX_USER_ID_BYTES:
        raise ValueError(f"user_id is longer than {MAX_USER_ID_BYTES} bytes in UTF-8")
    return encoded


def _check_bytes(name: str, value: object) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")
    return bytes(value)


def _associated_data(key_id: bytes, user_id: bytes) -> bytes:
    return b"".join((_LABEL, bytes((VERSION, len(key_id))), key_id, b"\x00", user_id))


class KeyRing:
    """Named AES-256 keys, oldest first; the last one encrypts, every one decrypts.

    ``KeyRing({"2025": key_2025, "2026": key_2026})`` (insertion order is age), or
    ``KeyRing.parse("2025:<base64>,2026:<base64>")`` for a setting or an environment
    variable. The repr shows the key ids, never the keys.
    """

    __slots__ = ("_ciphers", "_current", "_invalid_tag")

    def __init__(self, keys: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> None:
        if isinstance(keys, (str, bytes)):
            raise TypeError("KeyRing takes a mapping of key id to key; use KeyRing.parse for text")
        pairs = list(keys.items()) if isinstance(keys, Mapping) else list(keys)
        if not pairs:
            raise ValueError("a key ring needs at least one key")
        aead = require_module(_AEAD_MODULE, "authstore.crypto", "crypto")
        ciphers: dict[str, Any] = {}
        for pair in pairs:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise TypeError("a key ring entry must be a (key id, key) pair")
            key_id = _check_key_id(pair[0])
            if key_id in ciphers:
                raise ValueError(f"key id {key_id!r} appears twice in the key ring")
            ciphers[key_id] = aead.AESGCM(_check_key(key_id, pair[1]))
        self._ciphers = ciphers
        self._current = pairs[-1][0]
        exceptions = require_module("cryptography.exceptions", "authstore.crypto", "crypto")
        self._invalid_tag: type[Exception] = exceptions.InvalidTag

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """``"id:base64key,id:base64key"``, oldest first (whitespace around items ignored)."""
        if not isinstance(text, str):
            raise TypeError(f"KeyRing.parse takes a str, not {type(text).__name__}")
        pairs: list[tuple[str, bytes]] = []
        for number, item in enumerate(text.split(","), 1):
            item = item.strip()
            key_id, colon, encoded = item.partition(":")
            if not colon:
                raise ValueError(f"key ring item {number} is not 'id:base64key'")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"key {key_id.strip()!r} is not valid base64") from None
            pairs.append((key_id.strip(), key))
        return cls(pairs)

    @property
    def current(self) -> str:
        """The id of the newest key, the one ``encrypt`` uses."""
        return self._current

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._ciphers

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={list(self._ciphers)!r}, current={self._current!r})"

    def _cipher(self, key_id: str) -> Any:
        try:
            return self._ciphers[key_id]
        except KeyError:
            raise UnknownKeyError(key_id) from None


def _split(ciphertext: bytes) -> tuple[str, bytes, bytes, bytes]:
    """(key id, its bytes, nonce, sealed) of a ciphertext, or DecryptionError."""
    if len(ciphertext) < 2 or ciphertext[0] != VERSION:
        raise DecryptionError("not a ciphertext made by authstore.crypto (unknown format)")
    end = 2 + ciphertext[1]
    raw_id = ciphertext[2:end]
    if len(ciphertext) < end + NONCE_BYTES + TAG_BYTES or not raw_id:
        raise DecryptionError("the ciphertext is truncated")
    try:
        key_id = _check_key_id(raw_id.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise DecryptionError("the ciphertext has a malformed key id") from None
    return key_id, raw_id, ciphertext[end : end + NONCE_BYTES], ciphertext[end + NONCE_BYTES :]


class SecretBox:
    """Encrypts and decrypts TOTP secrets for one key ring, in the caller's thread."""

    __slots__ = ("ring",)

    def __init__(self, ring: KeyRing) -> None:
        if not isinstance(ring, KeyRing):
            raise TypeError(f"SecretBox takes a KeyRing, not {type(ring).__name__}")
        self.ring = ring

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.ring!r})"

    def encrypt(self, user_id: str, secret: bytes) -> bytes:
        """The secret sealed with the newest key and bound to ``user_id``."""
        user = _check_user_id(user_id)
        plain = _check_bytes("secret", secret)
        if not plain:
            raise ValueError("secret must not be empty")
        if len(plain) > MAX_SECRET_BYTES:
            raise ValueError(f"secret is longer than {MAX_SECRET_BYTES} bytes")
        key_id = self.ring.current
        raw_id = key_id.encode("ascii")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self.ring._cipher(key_id).encrypt(nonce, plain, _associated_data(raw_id, user))
        return b"".join((bytes((VERSION, len(raw_id))), raw_id, nonce, sealed))

    def decrypt(self, user_id: str, ciphertext: bytes) -> bytes:
        """The secret, if ``ciphertext`` is unchanged, made for ``user_id`` and its key is here.

        Raises ``UnknownKeyError`` when its key left the ring, ``DecryptionError`` otherwise.
        """
        user = _check_user_id(user_id)
        key_id, raw_id, nonce, sealed = _split(_check_bytes("ciphertext", ciphertext))
        cipher = self.ring._cipher(key_id)
        try:
            plain: bytes = cipher.decrypt(nonce, sealed, _associated_data(raw_id, user))
        except self.ring._invalid_tag:
            raise DecryptionError(
                f"the secret does not decrypt with key {key_id!r} for this user: it was "
                "changed, or it was encrypted for another user"
            ) from None
        return plain

    def key_id(self, ciphertext: bytes) -> str:
        """The id of the key that sealed ``ciphertext`` (no decryption)."""
        return _split(_check_bytes("ciphertext", ciphertext))[0]

    def needs_rotation(self, ciphertext: bytes) -> bool:
        """True when ``ciphertext`` was not sealed with the newest key."""
        return self.key_id(ciphertext) != self.ring.current

    def reencrypt(self, user_id: str, ciphertext: bytes) -> bytes:
        """Open with whichever key sealed it, seal again with the newest (a fresh nonce)."""
        return self.encrypt(user_id, self.decrypt(user_id, ciphertext))


class AsyncSecretBox:
    """``SecretBox``'s methods as coroutines; the CPU work runs in a worker thread.

    Argument checks run before the thread is started, so bad input fails at once.
    ``key_id`` and ``needs_rotation`` only parse a header and stay synchronous.
    """

    __slots__ = ("_box",)

    def __init__(self, ring: KeyRing) -> None:
        self._box = SecretBox(ring)

    @property
    def ring(self) -> KeyRing:
        return self._box.ring

    @property
    def sync(self) -> SecretBox:
        """The synchronous box (for code already running in a worker thread)."""
        return self._box

    def __repr__(self) -> str:
        return f"AsyncSecretBox({self._box.ring!r})"

    async def encrypt(self, user_id: str, secret: bytes) -> bytes:
        _check_user_id(user_id)
        _check_bytes("secret", secret)
        return await asyncio.to_thread(self._box.encrypt, user_id, secret)

    async def decrypt(self, user_id: str, ciphertext: bytes) -> bytes:
        _check_user_id(user_id)
        _check_bytes("ciphertext", ciphertext)
        return await asyncio.to_thread(self._box.decrypt, user_id, ciphertext)

    async def reencrypt(self, user_id: str, ciphertext: bytes) -> bytes:
        _check_user_id(user_id)
        _check_bytes("ciphertext", ciphertext)
        return await asyncio.to_thread(self._box.reencrypt, user_id, ciphertext)

    def key_id(self, ciphertext: bytes) -> str:
        return self._box.key_id(ciphertext)

    def needs_rotation(self, ciphertext: bytes) -> bool:
        return self._box.needs_rotation(ciphertext)
