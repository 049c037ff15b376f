"""``authstore.crypto``: what sealing a TOTP secret costs, and what it does to the event loop.

Rows (section ``crypto``): ``SecretBox`` encrypt/decrypt/reencrypt against the
``cryptography`` AES-GCM call doing the same work (a random nonce, the same associated
data) in one thread; ``AsyncSecretBox`` (a worker thread per call) against the sync box
called inline on the loop, one caller and 100 concurrent callers. Probes: how late a
1 ms ticker on the loop wakes while batches of 100 encryptions run either way.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from benchmarks.suite import measure
from benchmarks.suite.measure import Budget, Contender

if TYPE_CHECKING:
    from benchmarks.suite.session import Results

__all__ = ["measure_crypto"]

SECRET = b"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
"""A 160-bit base32 TOTP secret, as stored."""
BACKEND = "crypto"
CALLERS = 100
TICK = 0.001


def _raw_aesgcm(key: bytes) -> dict[str, Callable[[int], Any]]:
    """The bare ``cryptography`` calls a hand-written sealer would make."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    cipher = AESGCM(key)
    aad = b"authstore-bench\x01\x03new\x00alice"  # associated data of the same shape
    sealed = (nonce := os.urandom(12)) + cipher.encrypt(nonce, SECRET, aad)

    def encrypt(i: int) -> bytes:
        nonce = os.urandom(12)
        return nonce + cipher.encrypt(nonce, SECRET, aad)

    def decrypt(i: int) -> bytes:
        return cipher.decrypt(sealed[:12], sealed[12:], aad)

    def reencrypt(i: int) -> bytes:
        nonce = os.urandom(12)
        return nonce + cipher.encrypt(nonce, decrypt(i), aad)

    return {"encrypt": encrypt, "decrypt": decrypt, "reencrypt": reencrypt}


async def _ticker_lag(work: Callable[[], Awaitable[Any]], repeats: int) -> tuple[float, float]:
    """(max lag, seconds per batch) of a ``TICK`` ticker while ``work()`` runs ``repeats`` times."""
    lags: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            lags.append(time.perf_counter() - before - TICK)

    task = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    lags.clear()
    started = time.perf_counter()
    for _ in range(repeats):
        await work()
    elapsed = (time.perf_counter() - started) / repeats
    stop.set()
    await task
    return max(lags, default=0.0), elapsed


def measure_crypto(budget: Budget, results: Results) -> None:
    from authstore.crypto import AsyncSecretBox, KeyRing, SecretBox, generate_key
    from benchmarks.suite.session import record_row

    key = generate_key()
    ring = KeyRing({"old": generate_key(), "new": key})
    box, abox = SecretBox(ring), AsyncSecretBox(ring)
    blob = box.encrypt("alice", SECRET)
    ours: dict[str, Callable[[int], Any]] = {
        "encrypt": lambda i: box.encrypt("alice", SECRET),
        "decrypt": lambda i: box.decrypt("alice", blob),
        "reencrypt": lambda i: box.reencrypt("alice", blob),
    }
    raw = _raw_aesgcm(key)
    for name, call in ours.items():
        group = [
            Contender("authstore", "authstore", call),
            Contender("cryptography AESGCM, same work", "raw", raw[name]),
        ]
        record_row(results, BACKEND, "sync", name, measure.measure_sync(group, budget))

    def awaitable(call: Callable[[int], Any]) -> Callable[[int], Awaitable[Any]]:
        async def inline(i: int) -> Any:
            return call(i)

        return inline

    threaded: dict[str, Callable[[int], Awaitable[Any]]] = {
        "encrypt": lambda i: abox.encrypt("alice", SECRET),
        "decrypt": lambda i: abox.decrypt("alice", blob),
    }

    def groups() -> list[tuple[str, list[Contender]]]:
        return [
            (
                name,
                [
                    Contender("authstore", "authstore", call, note="AsyncSecretBox"),
                    Contender("SecretBox inline on the loop", "variant", awaitable(ours[name])),
                ],
            )
            for name, call in threaded.items()
        ]

    async def asynchronous() -> None:
        for name, group in groups():
            found = await measure.measure_async(group, budget)
            record_row(results, BACKEND, "async", name, found)
        for name, group in groups():
            found = await measure.measure_concurrent(group, budget, CALLERS)
            record_row(results, BACKEND, f"async{CALLERS}", name, found)
        await _loop_lag(box, abox, budget, results)

    asyncio.run(asynchronous())
    results.notes.append(
        f"crypto: a {len(SECRET)}-byte secret, AES-256-GCM; the raw side is cryptography's "
        "AESGCM with a random nonce and associated data of the same shape, no key ring or format"
    )


async def _loop_lag(box: Any, abox: Any, budget: Budget, results: Results) -> None:
    async def threaded() -> None:
        await asyncio.gather(*(abox.encrypt(f"user{i}", SECRET) for i in range(CALLERS)))

    async def inline() -> None:
        async def one(i: int) -> bytes:
            result: bytes = box.encrypt(f"user{i}", SECRET)
            return result

        await asyncio.gather(*(one(i) for i in range(CALLERS)))

    async def idle() -> None:
        await asyncio.sleep(0.005)

    repeats = 2 if budget.max_calls <= 1 else 20
    for label, work in (
        ("idle loop", idle),
        ("AsyncSecretBox", threaded),
        ("SecretBox inline", inline),
    ):
        lag, batch = await _ticker_lag(work, repeats)
        results.probes.append(
            {
                "probe": f"crypto: {TICK * 1e3:g} ms ticker during {CALLERS} concurrent encryptions, {label}",
                "value": lag * 1e3,
                "unit": "ms max tick lag",
                "detail": f"a batch of {CALLERS} took {batch * 1e3:.2f} ms",
            }
        )
