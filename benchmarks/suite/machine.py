"""Facts about the machine, the interpreter, the libraries and the servers of a run."""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import os
import platform
import sqlite3
from typing import Any

from benchmarks.suite.targets import Target, mongo_database, mysql_arguments

__all__ = ["facts"]

PACKAGES = (
    "authstore",
    "psycopg",
    "psycopg-pool",
    "asyncpg",
    "PyMySQL",
    "aiomysql",
    "aiosqlite",
    "redis",
    "pymemcache",
    "aiomcache",
    "pymongo",
    "limits",
    "pyrate-limiter",
    "cachelib",
    "aiocache",
    "Django",
    "memcachio",
)


def _cpu() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _server(target: Target) -> str:
    try:
        if target.name == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        if target.name == "postgresql":
            import psycopg

            with psycopg.connect(target.server, connect_timeout=3) as connection:
                row = connection.execute("SHOW server_version").fetchone()
                return f"PostgreSQL {row[0] if row else '?'}"
        if target.name == "mariadb":
            import pymysql

            connection = pymysql.connect(**mysql_arguments(target.server), connect_timeout=3)
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT VERSION()")
                    row = cursor.fetchone()
                    return f"MariaDB/MySQL {row[0] if row else '?'}"
            finally:
                connection.close()
        if target.name == "redis":
            import redis

            client = redis.Redis.from_url(target.server, socket_timeout=3)
            try:
                return f"Redis {client.info('server')['redis_version']}"
            finally:
                client.close()
        if target.name == "memcached":
            from pymemcache.client.base import Client

            memcached = Client(target.address, connect_timeout=3, timeout=3)
            try:
                return f"memcached {memcached.version().decode()}"
            finally:
                memcached.close()
        if target.name == "mongodb":
            import pymongo

            address, _ = mongo_database(target.server)
            mongo: Any = pymongo.MongoClient(address, serverSelectionTimeoutMS=3000)
            try:
                info = mongo.admin.command("buildInfo")
                if "secantusVersion" in info:  # the test servers' Python stand-in
                    return (
                        f"secantusdb {info['secantusVersion']} (a MongoDB stand-in written "
                        f"in Python, wire protocol of MongoDB {info.get('version', '?')}): "
                        "its numbers say nothing about a real MongoDB"
                    )
                return f"MongoDB wire protocol, server {info.get('version', '?')}"
            finally:
                mongo.close()
    except Exception as error:
        return f"{target.name}: version unknown ({type(error).__name__})"
    return "in-process"


def facts(targets: list[Target]) -> dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "load": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "servers": {t.name: _server(t) for t in targets},
        "packages": versions,
    }
