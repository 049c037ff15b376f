"""``authstore.integrations.django.middleware.BackendUnavailableMiddleware``: a view that
raised ``BackendUnavailableError`` answers 503 with ``Retry-After`` (settings:
``AUTHSTORE_RETRY_AFTER``, default 5 seconds) instead of Django's 500; the body says no
more than that, the error (its URL redacted) goes to the log. It fails closed all the
same: the view did not run to the end."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

from authstore.contracts.errors import BackendUnavailableError

__all__ = ["BackendUnavailableMiddleware"]

log = logging.getLogger("authstore.integrations.django")


class BackendUnavailableMiddleware(MiddlewareMixin):
    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, BackendUnavailableError):
            return None
        log.warning("authstore backend unavailable: %s", exception)
        retry_after = getattr(settings, "AUTHSTORE_RETRY_AFTER", 5)
        response = JsonResponse({"detail": "service temporarily unavailable"}, status=503)
        response["Retry-After"] = str(retry_after)
        return response
