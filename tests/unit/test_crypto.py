"""authstore.crypto: AES-256-GCM TOTP secrets with a key ring, bound to their user."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import threading

import pytest

from authstore.crypto import (
    AsyncSecretBox,
    DecryptionError,
    KeyRing,
    SecretBox,
    UnknownKeyError,
    generate_key,
)

SECRET = b"JBSWY3DPEHPK3PXP"
K1 = bytes(range(32))
K2 = bytes(range(100, 132))


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(KeyRing({"k1": K1}))


def test_round_trip_and_fresh_nonce(box: SecretBox) -> None:
    one, two = box.encrypt("alice", SECRET), box.encrypt("alice", SECRET)
    assert one != two  # a new nonce each time
    assert SECRET not in one
    assert box.decrypt("alice", one) == box.decrypt("alice", two) == SECRET
    assert box.key_id(one) == "k1"


def test_a_secret_copied_to_another_user_does_not_decrypt(box: SecretBox) -> None:
    blob = box.encrypt("alice", SECRET)
    with pytest.raises(DecryptionError, match="another user") as caught:
        box.decrypt("mallory", blob)
    assert not isinstance(caught.value, UnknownKeyError)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("where", range(0, 60, 7))
def test_any_changed_byte_is_refused(box: SecretBox, where: int) -> None:
    blob = bytearray(box.encrypt("alice", SECRET))
    where %= len(blob)
    blob[where] ^= 0x01
    with pytest.raises(DecryptionError):
        box.decrypt("alice", bytes(blob))


def test_truncated_and_foreign_blobs_are_refused(box: SecretBox) -> None:
    blob = box.encrypt("alice", SECRET)
    for bad in (b"", b"\x01", blob[:20], b"\x02" + blob[1:], SECRET):
        with pytest.raises(DecryptionError):
            box.decrypt("alice", bad)


def test_unknown_key_id_is_named(box: SecretBox) -> None:
    other = SecretBox(KeyRing({"retired": K2}))
    with pytest.raises(UnknownKeyError, match="'retired'") as caught:
        box.decrypt("alice", other.encrypt("alice", SECRET))
    assert caught.value.key_id == "retired"


def test_same_key_id_other_key_material_fails() -> None:
    sealed = SecretBox(KeyRing({"k": K1})).encrypt("alice", SECRET)
    with pytest.raises(DecryptionError):
        SecretBox(KeyRing({"k": K2})).decrypt("alice", sealed)


def test_rotation_encrypt_newest_decrypt_any_reencrypt() -> None:
    old = SecretBox(KeyRing({"2025": K1}))
    stored = old.encrypt("alice", SECRET)
    both = SecretBox(KeyRing({"2025": K1, "2026": K2}))
    assert both.ring.current == "2026" and both.ring.key_ids == ("2025", "2026")
    assert both.decrypt("alice", stored) == SECRET  # the old key still opens it
    assert both.needs_rotation(stored)
    rotated = both.reencrypt("alice", stored)
    assert both.key_id(rotated) == "2026" and not both.needs_rotation(rotated)
    assert both.encrypt("bob", SECRET)[2:6] == b"2026"
    new_only = SecretBox(KeyRing([("2026", K2)]))  # the old key is dropped
    assert new_only.decrypt("alice", rotated) == SECRET
    with pytest.raises(UnknownKeyError):
        new_only.decrypt("alice", stored)
    with pytest.raises(DecryptionError):  # rotation keeps the user binding
        both.reencrypt("bob", stored)


def test_parse_from_text() -> None:
    text = f" a:{base64.b64encode(K1).decode()} , b:{base64.b64encode(K2).decode()} "
    ring = KeyRing.parse(text)
    assert ring.key_ids == ("a", "b") and ring.current == "b"
    with pytest.raises(ValueError, match="not 'id:base64key'"):
        KeyRing.parse("justtext")
    with pytest.raises(ValueError, match="'a' is not valid base64"):
        KeyRing.parse("a:!!!")
    with pytest.raises(ValueError, match="32 bytes"):
        KeyRing.parse(f"a:{base64.b64encode(b'short').decode()}")


@pytest.mark.parametrize(
    ("keys", "error", "message"),
    [
        ({}, ValueError, "at least one key"),
        ({"k": b"x" * 16}, ValueError, "32 bytes"),
        ({"k": "x" * 32}, TypeError, "must be bytes"),
        ({"": K1}, ValueError, "key id"),
        ({"k 1": K1}, ValueError, "key id"),
        ({"é": K1}, ValueError, "key id"),
        ({"k" * 65: K1}, ValueError, "key id"),
        ({1: K1}, TypeError, "key id must be a str"),
        ([("a", K1), ("a", K2)], ValueError, "twice"),
        ([("a", K1, "x")], TypeError, "pair"),
        ("a:b", TypeError, "KeyRing.parse"),
    ],
)
def test_bad_keys(keys: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as caught:
        KeyRing(keys)  # type: ignore[arg-type]
    assert "xxxx" not in str(caught.value)


def test_bad_input(box: SecretBox) -> None:
    blob = box.encrypt("alice", SECRET)
    with pytest.raises(TypeError, match="secret must be bytes"):
        box.encrypt("alice", "JBSWY3DPEHPK3PXP")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not be empty"):
        box.encrypt("alice", b"")
    with pytest.raises(ValueError, match="longer than"):
        box.encrypt("alice", b"x" * 1025)
    with pytest.raises(TypeError, match="user_id must be a str"):
        box.encrypt(7, SECRET)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user_id must not be empty"):
        box.decrypt("", blob)
    with pytest.raises(ValueError, match="surrogate"):
        box.encrypt("\ud800", SECRET)
    with pytest.raises(ValueError, match="longer than"):
        box.encrypt("u" * 256, SECRET)
    with pytest.raises(TypeError, match="ciphertext must be bytes"):
        box.decrypt("alice", blob.hex())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="KeyRing"):
        SecretBox(K1)  # type: ignore[arg-type]


def test_no_secret_in_reprs_or_errors(box: SecretBox) -> None:
    ring = KeyRing({"k1": K1, "k2": K2})
    texts = [repr(ring), repr(SecretBox(ring)), repr(AsyncSecretBox(ring))]
    blob = box.encrypt("alice", SECRET)
    for call in (lambda: box.decrypt("bob", blob), lambda: box.decrypt("alice", blob[:-1])):
        with pytest.raises(DecryptionError) as caught:
            call()
        texts.append(str(caught.value))
        texts.append(repr(caught.value))
    assert "k1" in texts[0] and "k2" in texts[0]
    forbidden = [K1, K2, SECRET, blob]
    for text in texts:
        for secret in forbidden:
            for form in (repr(secret), secret.hex(), base64.b64encode(secret).decode()):
                assert form not in text, text


def test_generate_key() -> None:
    one, two = generate_key(), generate_key()
    assert len(one) == 32 and one != two
    assert SecretBox(KeyRing({"new": one})).decrypt(
        "u", SecretBox(KeyRing({"new": one})).encrypt("u", SECRET)
    )


def test_async_box_runs_the_work_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing({"k1": K1, "k2": K2})
    abox = AsyncSecretBox(ring)
    threads: list[int] = []
    real = SecretBox.encrypt

    def spy(self: SecretBox, user_id: str, secret: bytes) -> bytes:
        threads.append(threading.get_ident())
        return real(self, user_id, secret)

    monkeypatch.setattr(SecretBox, "encrypt", spy)

    async def main() -> None:
        loop_thread = threading.get_ident()
        blobs = await asyncio.gather(*(abox.encrypt(f"u{i}", SECRET) for i in range(20)))
        assert [await abox.decrypt(f"u{i}", b) for i, b in enumerate(blobs)] == [SECRET] * 20
        assert loop_thread not in threads and len(threads) == 20
        with pytest.raises(DecryptionError):
            await abox.decrypt("u1", blobs[0])
        with pytest.raises(TypeError):  # checked before a thread is taken
            await abox.encrypt("u", "text")  # type: ignore[arg-type]
        rotated = await abox.reencrypt("u0", blobs[0])
        assert abox.key_id(rotated) == "k2" and not abox.needs_rotation(rotated)
        assert abox.sync.decrypt("u0", rotated) == SECRET and abox.ring is ring

    asyncio.run(main())


def test_importing_authstore_imports_no_cryptography() -> None:
    code = (
        "import sys, authstore, authstore.crypto; "
        "assert 'cryptography' not in sys.modules, 'cryptography imported'; "
        "authstore.crypto.KeyRing({'k': bytes(32)}); "
        "assert 'cryptography' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
