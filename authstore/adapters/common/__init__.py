"""The machinery every backend shares; see ``ops`` for what a backend implements."""
