"""System checks (``manage.py check``): the ``AUTHSTORE`` setting is right, the drivers
its URLs need are installed (errors), and each store answers a cheap read within
``AUTHSTORE["CHECK_TIMEOUT"]`` seconds (a warning when it does not: a server that is
down while you run ``manage.py`` is not a mistake in the code)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from authstore.contracts.errors import (
    AuthStoreError,
    BackendUnavailableError,
    ConfigurationError,
    MissingDriverError,
)
from authstore.contracts.records import StoreKind
from authstore.integrations._stores import StoreSpec, open_one, probe, run_sync
from authstore.integrations.django.config import SETTING, check_timeout, store_specs
from authstore.registry import StoreURL

__all__ = ["check_backends", "check_settings"]

HINT = f"See the settings reference in docs/django.md; {SETTING} is read by authstore."


@checks.register("authstore")
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[Any]:
    """The setting's shape, its URLs and schemes, the drivers they need."""
    try:
        specs = store_specs()
        check_timeout()
    except (ImproperlyConfigured, ConfigurationError) as error:
        return [checks.Error(str(error), hint=HINT, obj=SETTING, id="authstore.E001")]
    found: list[Any] = []
    for kind, spec in specs.items():
        try:
            open_one(kind, spec, asynchronous=False).close()
        except MissingDriverError as error:
            found.append(checks.Error(f"{kind.value}: {error}", obj=SETTING, id="authstore.E002"))
        except ConfigurationError as error:
            found.append(checks.Error(f"{kind.value}: {error}", obj=SETTING, id="authstore.E003"))
    return found


@checks.register("authstore")
def check_backends(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[Any]:
    """Each store answers a cheap read in time; a warning when it does not."""
    try:
        specs, timeout = store_specs(), check_timeout()
    except (ImproperlyConfigured, ConfigurationError):
        return []  # check_settings reports it
    found: list[Any] = []
    for kind, spec in specs.items():
        try:
            _probe(kind, spec, timeout)
        except ConfigurationError:
            continue  # check_settings reports it
        except BackendUnavailableError as error:
            found.append(_warning(f"{kind.value}: backend unavailable: {error}", UNREACHABLE))
        except AuthStoreError as error:
            found.append(_warning(f"{kind.value}: {type(error).__name__}: {error}", FAILING))
    return found


UNREACHABLE = ("authstore.W001", "Start the server, or check the URL's host and port.")
FAILING = ("authstore.W002", "Run manage.py authstore_migrate if the schema is missing.")


def _warning(message: str, what: tuple[str, str]) -> Any:
    return checks.Warning(message, hint=what[1], obj=SETTING, id=what[0])


def _probe(kind: StoreKind, spec: StoreSpec, timeout: float) -> None:
    """Open the store with short timeouts (unless the settings give some; a backend that
    takes no timeout option is opened as configured), read, close."""
    given = dict(spec.options) | dict(StoreURL.parse(spec.url).options)
    short = {name: timeout for name in ("timeout", "connect_timeout") if name not in given}
    hurried = StoreSpec(spec.url, tuple(sorted({**dict(spec.options), **short}.items())))
    try:
        store = open_one(kind, hurried, asynchronous=False)
    except ConfigurationError:
        store = open_one(kind, spec, asynchronous=False)
    try:
        run_sync(probe(kind), store)
    finally:
        store.close()
