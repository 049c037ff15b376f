"""The benchmark command (``python -m benchmarks``): every backend, every mode, the raw
drivers and the peers in one run, round trips counted on the wire, a latency proxy for
the 1 ms comparison; the sections without a backend (crypto, observability, the FastAPI
example) and the memory store's bound; a markdown report with charts in
``benchmarks/results/`` (``results/scratch/`` for --quick and --smoke)."""
