"""Backends, one folder each with the same inner shape.

``common/`` holds what every backend shares: argument checking and encoding
(``logic``), the sync and async store classes that execute operations
(``stores``), and the interface a backend implements (``ops``).
"""
