"""The one error hierarchy of authstore.

Driver exceptions never escape unwrapped: adapters re-raise them as one of these,
keeping the original as ``__cause__``. Bad arguments are plain ``ValueError`` /
``TypeError`` raised before any I/O, so they are not part of this hierarchy.
"""

from __future__ import annotations

__all__ = [
    "AuthStoreError",
    "AuthenticationFailedError",
    "BackendConfigurationError",
    "BackendError",
    "BackendUnavailableError",
    "ConfigurationError",
    "MissingDriverError",
    "SchemeConflictError",
    "StoreClosedError",
    "StoreFullError",
    "TLSVerificationError",
    "TokenInUseError",
    "UnknownDatabaseError",
    "UnknownSchemeError",
    "UnsupportedOperationError",
]


class AuthStoreError(Exception):
    """Base of every error authstore raises on purpose."""


class ConfigurationError(AuthStoreError, ValueError):
    """A URL, option or registration is wrong; fixing the configuration fixes it."""


class UnknownSchemeError(ConfigurationError):
    """No backend is registered for a URL scheme."""

    def __init__(self, scheme: str, known: list[str]) -> None:
        self.scheme = scheme
        self.known = sorted(known)
        super().__init__(f"unknown URL scheme {scheme!r}; known schemes: {', '.join(self.known)}")


class MissingDriverError(ConfigurationError, ImportError):
    """A backend is known but its driver is not installed."""

    def __init__(self, backend: str, extra: str, module: str) -> None:
        self.backend = backend
        self.extra = extra
        super().__init__(
            f'the {backend} backend needs the {module!r} module: pip install "authstore[{extra}]"'
        )


class SchemeConflictError(ConfigurationError):
    """Two installed packages claim the same URL scheme."""


class UnsupportedOperationError(AuthStoreError, NotImplementedError):
    """The backend cannot provide this store or operation (e.g. sessions on memcached)."""


class BackendError(AuthStoreError):
    """The backend answered, but with an error authstore did not expect."""


class BackendUnavailableError(BackendError):
    """The backend cannot be reached in time (refused, timed out, pool exhausted, lost).

    Security checks raise this instead of answering: a revoked token is never
    accepted because the server is down.
    """


class BackendConfigurationError(ConfigurationError, BackendError):
    """The backend answered and refused the configuration: credentials, database or TLS.

    Retrying will not help, so this is never a ``BackendUnavailableError``: the CLI exits
    3 and an application should alert rather than answer "try again". Security reads
    raise it too. Every backend raises the same subclass for the same cause, with the
    message ``<backend> at <redacted URL>: <what was refused>`` (no password, no raw
    server reply); the driver's error stays the ``__cause__``.
    """

    reason = "configuration"
    """A stable word for the cause (``authentication``, ``unknown_database``, ``tls``)."""

    def __init__(self, backend: str, where: str, detail: str) -> None:
        self.backend = backend
        self.where = where
        """The redacted URL (or ``scheme:// client=<given>``)."""
        self.detail = detail
        super().__init__(f"{backend} at {where}: {detail}")


class AuthenticationFailedError(BackendConfigurationError):
    """The server refused the credentials: a wrong password, an unknown user, no
    password where one is required, or a user without the rights authstore needs."""

    reason = "authentication"


class UnknownDatabaseError(BackendConfigurationError):
    """The database (or schema) the URL names does not exist on the server."""

    reason = "unknown_database"


class TLSVerificationError(BackendConfigurationError):
    """The TLS handshake failed on verification: an untrusted or wrong CA file, a
    certificate for another host name, an expired certificate, or TLS the server lacks."""

    reason = "tls"


class StoreClosedError(BackendError):
    """An operation on a store (or a group of stores) after ``close()``/``aclose()``.

    A closed store never connects again. It is a BackendError so code that fails
    closed on backend errors (deny the request) does so here too.
    """


class StoreFullError(BackendError):
    """A bounded store cannot take a new entry without dropping security state."""


class TokenInUseError(AuthStoreError, ValueError):
    """A caller-supplied token (or token hash) already belongs to a record that has not expired.

    Raised by ``create``/``issue``/``issue_hashed`` when the token's hash is taken by a
    live, revoked or used record: nothing is changed, so a caller token can never take
    over, overwrite or revive another record. Only an expired record's hash may be reused.
    """
