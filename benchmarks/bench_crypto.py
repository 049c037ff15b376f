"""authstore.crypto: cost per operation, and the event loop's lag under 100 concurrent encryptions.

    python benchmarks/bench_crypto.py

Prints the median time per ``SecretBox.encrypt`` / ``decrypt`` (sync, in the caller's
thread) and per ``AsyncSecretBox`` call (the same work in ``asyncio.to_thread``), then
runs a ticker on the event loop (wakes every millisecond, records how late it woke)
while 100 encryptions run concurrently: through ``AsyncSecretBox``, and, for
comparison, inline on the loop with the sync box. A measurement, not a test.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from authstore.crypto import AsyncSecretBox, KeyRing, SecretBox, generate_key

SECRET = b"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # a 160-bit base32 TOTP secret
CONCURRENT = 100
TICK = 0.001


def per_op(fn: object, count: int = 20000, rounds: int = 7) -> float:
    assert callable(fn)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(count):
            fn()
        times.append((time.perf_counter() - start) / count)
    return statistics.median(times)


async def async_per_op(call: object, count: int = 2000, rounds: int = 5) -> float:
    assert callable(call)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(count):
            await call()
        times.append((time.perf_counter() - start) / count)
    return statistics.median(times)


async def ticker_lag(work: object, repeats: int = 20) -> tuple[float, float]:
    """(max lag, elapsed per batch) of a 1 ms ticker while ``work()`` runs ``repeats`` times."""
    assert callable(work)
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
    start = time.perf_counter()
    for _ in range(repeats):
        await work()
    elapsed = (time.perf_counter() - start) / repeats
    stop.set()
    await task
    return max(lags, default=0.0), elapsed


async def loop_section(box: SecretBox, abox: AsyncSecretBox) -> None:
    async def threaded() -> None:
        await asyncio.gather(*(abox.encrypt(f"user{i}", SECRET) for i in range(CONCURRENT)))

    async def inline() -> None:
        async def one(i: int) -> bytes:
            return box.encrypt(f"user{i}", SECRET)

        await asyncio.gather(*(one(i) for i in range(CONCURRENT)))

    async def idle() -> None:
        await asyncio.sleep(0.005)

    print(f"\nevent loop, a {TICK * 1000:.0f} ms ticker during {CONCURRENT} concurrent encryptions")
    for name, work in (("idle", idle), ("AsyncSecretBox", threaded), ("sync inline", inline)):
        lag, elapsed = await ticker_lag(work)
        print(
            f"  {name:<16} max tick lag {lag * 1000:7.2f} ms   batch of {CONCURRENT}: "
            f"{elapsed * 1000:7.2f} ms"
        )


def main() -> None:
    ring = KeyRing({"old": generate_key(), "new": generate_key()})
    box, abox = SecretBox(ring), AsyncSecretBox(ring)
    blob = box.encrypt("alice", SECRET)
    print(f"authstore.crypto, a {len(SECRET)}-byte secret, AES-256-GCM")
    print(
        f"  SecretBox.encrypt        {per_op(lambda: box.encrypt('alice', SECRET)) * 1e6:8.1f} us"
    )
    print(f"  SecretBox.decrypt        {per_op(lambda: box.decrypt('alice', blob)) * 1e6:8.1f} us")
    print(
        f"  SecretBox.reencrypt      {per_op(lambda: box.reencrypt('alice', blob)) * 1e6:8.1f} us"
    )

    async def async_part() -> None:
        enc = await async_per_op(lambda: abox.encrypt("alice", SECRET))
        dec = await async_per_op(lambda: abox.decrypt("alice", blob))
        print(
            f"  AsyncSecretBox.encrypt   {enc * 1e6:8.1f} us (one at a time, thread hop included)"
        )
        print(f"  AsyncSecretBox.decrypt   {dec * 1e6:8.1f} us")
        await loop_section(box, abox)

    asyncio.run(async_part())


if __name__ == "__main__":
    main()
