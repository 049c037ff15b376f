"""A backend refusing the configuration, said once for every backend.

Each backend family decides in its own error translation *whether* a driver error is
a refused configuration (credentials, database, TLS); this module builds the error so
that every backend says it the same way: one class per cause, the message
``<backend> at <redacted URL>: <one line>`` with every secret scrubbed and no raw
server reply, and one log line on the ``authstore.<backend>`` logger.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable

from authstore.contracts.errors import (
    AuthenticationFailedError,
    BackendConfigurationError,
    TLSVerificationError,
    UnknownDatabaseError,
)

__all__ = ["AUTHENTICATION", "TLS", "UNKNOWN_DATABASE", "one_line", "refused", "tls_failure"]

AUTHENTICATION: type[BackendConfigurationError] = AuthenticationFailedError
UNKNOWN_DATABASE: type[BackendConfigurationError] = UnknownDatabaseError
TLS: type[BackendConfigurationError] = TLSVerificationError

_SUMMARY = {
    AuthenticationFailedError: "access denied",
    UnknownDatabaseError: "unknown database",
    TLSVerificationError: "TLS verification failed",
}
_PACKAGES = {"postgresql": "postgres"}
"""Loggers are named after the adapter package (``authstore.postgres``), as the
``authstore.backend`` attribute of the instrumentation is."""
_TLS_WORDS = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "WRONG_VERSION_NUMBER")


def one_line(text: str, secrets: Iterable[str | None] = ()) -> str:
    """The first line of a driver's text, at most 200 characters, secrets as ``***``.

    A driver may append the server's whole reply after the first line or a comma
    (pymongo's ``full error: {...}``): only what a person reads is kept."""
    line = (text.strip().splitlines() or [""])[0]
    line = line.split(", full error:", 1)[0].strip()
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***")
    return line[:200]


def refused(
    kind: type[BackendConfigurationError],
    backend: str,
    where: str,
    driver_text: str,
    secrets: Iterable[str | None] = (),
) -> BackendConfigurationError:
    """The error for a refused configuration, logged once (WARNING, no secret)."""
    detail = one_line(driver_text, secrets)
    summary = _SUMMARY.get(kind, "configuration refused")
    error = kind(backend, where, f"{summary} ({detail})" if detail else summary)
    logging.getLogger(f"authstore.{_PACKAGES.get(backend, backend)}").warning("%s", error)
    return error


def tls_failure(error: BaseException) -> bool:
    """Whether a connection failed on TLS verification (the ssl module's error anywhere
    in the chain, or a driver that kept only its text)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        if any(word in str(current) for word in _TLS_WORDS):
            return True
        current = current.__cause__ or current.__context__
    return False
