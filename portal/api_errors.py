"""Renders every REST API error in the platform's one JSON shape."""
from django.http import Http404, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from gateway.contract.errors import PlatformError, error_body


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(v) for v in detail)
    return str(detail)


def api_exception_handler(exc, context):
    if isinstance(exc, PlatformError):
        return Response(exc.as_dict(), status=exc.status)
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = "invalid_request"
    if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
        code = "unauthenticated"
    elif isinstance(exc, drf_exceptions.PermissionDenied):
        code = "permission_denied"
    elif isinstance(exc, drf_exceptions.NotFound | Http404):
        code = "not_found"
    elif isinstance(exc, drf_exceptions.MethodNotAllowed):
        code = "method_not_allowed"
    elif isinstance(exc, drf_exceptions.Throttled):
        code = "rate_limited"
    response.data = error_body(code, _flatten(response.data.get("detail", response.data)
                                            if isinstance(response.data, dict) else response.data))
    return response


@csrf_exempt  # it changes nothing; a POST with an API key gets the 404, not a CSRF page
def api_not_found(request, path: str):
    """Any other path under /api/v1/ (a typo, or a non-numeric id): the API's JSON 404
    rather than the portal's HTML page, with DEBUG or without."""
    if not request.path_info.endswith("/"):
        # What APPEND_SLASH did before this catch-all matched everything: /api/v1/docs -> /api/v1/docs/.
        try:
            if resolve(f"{request.path_info}/").func is not api_not_found:
                return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
        except Resolver404:
            pass
    return JsonResponse(error_body("not_found", f"No API endpoint at {request.path}; the endpoints are listed at "
                                                "/api/v1/docs/."), status=404)
