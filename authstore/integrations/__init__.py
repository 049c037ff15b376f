"""Integrations of authstore with authentication cores (``authstore.integrations.tenxyte``).

Each integration is an optional extra; importing ``authstore`` never imports one.
"""
