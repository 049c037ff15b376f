"""Many users' transactions at once on MariaDB: none may fail on another user's locks.

REPEATABLE READ's gap locks on the user index made two users' link issues (and capped
session creates) deadlock on the gap between them: with 100 concurrent issues for 100
users about 100 of them failed with error 1213. Each operation's own transaction runs at
READ COMMITTED, its writers serialized by the user's lock row.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import authstore


def test_a_hundred_users_issue_links_at_once(mysql_url: str) -> None:
    async def scenario() -> list[BaseException]:
        namespace = f"manyusers-{uuid.uuid4().hex[:8]}"
        async with authstore.open_async_magic_links(mysql_url, namespace=namespace) as links:
            failures: list[BaseException] = []
            for _ in range(3):
                results = await asyncio.gather(
                    *(links.issue(f"u{user}", "u@example.com", ttl=60) for user in range(100)),
                    return_exceptions=True,
                )
                failures += [r for r in results if isinstance(r, BaseException)]
            return failures

    failures = asyncio.run(scenario())
    assert failures == [], f"{len(failures)} of 300 failed: {failures[:1]}"


def test_capped_session_creates_of_many_users_at_once(mysql_url: str) -> None:
    failures: list[BaseException] = []
    with authstore.open_sessions(mysql_url, namespace="manyusers", pool_size=30) as sessions:

        def one(user: int) -> None:
            try:
                sessions.create(f"u{user}", ttl=60, max_sessions=1)
            except BaseException as error:
                failures.append(error)

        threads = [threading.Thread(target=one, args=(user,)) for user in range(30) for _ in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == [], f"{len(failures)} of 60 failed: {failures[:1]}"
        assert [sessions.count(f"u{user}") for user in range(30)] == [1] * 30
