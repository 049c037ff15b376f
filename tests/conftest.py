"""Shared test configuration: pytester runs the contract plugin in isolated pytest sessions."""

pytest_plugins = ["pytester"]
