"""jsonfile is atomic across processes (its fcntl lock), not only across threads:
processes hitting one rate limit in one file let exactly ``limit`` hits through."""

import subprocess
import sys
import time
from pathlib import Path

LIMIT = 300
HITS = """
import os
import sys
import time
from authstore import open_cache

url, hits, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open_cache(url, namespace="procs") as cache:
    open(f"{go}.ready.{os.getpid()}", "w").close()
    while not os.path.exists(go):  # start together
        time.sleep(0.001)
    allowed = sum(
        cache.check_rate_limit("login", limit=LIMIT, window=3600).allowed for _ in range(hits)
    )
print(allowed)
""".replace("LIMIT", str(LIMIT))


def test_processes_share_one_rate_limit_exactly(tmp_path: Path) -> None:
    url, go = f"jsonfile://{tmp_path / 'store.json'}", tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", HITS, url, "200", str(go)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("go.ready.*"))) < len(workers):  # all imported and open
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.01)
    go.touch()
    allowed = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        allowed.append(int(out))
    assert sum(allowed) == LIMIT, allowed
