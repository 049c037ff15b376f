"""``python -m benchmarks [--quick|--smoke] [section or URL ...]``: see benchmarks/suite."""

from __future__ import annotations

import sys

from benchmarks.suite.session import main

if __name__ == "__main__":
    sys.exit(main())
