"""What every tenant-scoped REST view shares: the tenant the request acts for, who the
audit log records as acting, the documented error responses, and query strings read
strictly (a value that is not what the schema says is a 400, never silently the default)."""
import re
from contextlib import ExitStack

from drf_spectacular.utils import OpenApiResponse
from rest_framework import pagination, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.views import APIView

from tenants.audit import audit_acting
from tenants.models import ApiKey, Surface
from tenants.permissions import request_tenant


# A view acting for one tenant. Changes it makes are recorded as made through the API by the
# caller DRF authenticated: the signed-in user, or the API key. (A comment, not a docstring:
# drf-spectacular would print a docstring as the description of every view without its own.)
class TenantAPIView(APIView):

    def dispatch(self, request, *args, **kwargs):
        with ExitStack() as self._audit_scope:
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # Authenticated (and allowed) by now; the key is known only from here on.
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        self._audit_scope.enter_context(audit_acting(surface=Surface.API, user=request.user, api_key=api_key))

    @property
    def tenant(self):
        return request_tenant(self.request)

    @property
    def actor(self):
        user = self.request.user
        return user if user.is_authenticated else None


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. not_found, invalid_model")
    message = serializers.CharField(help_text="What went wrong and what to do about it")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    400: "The request is invalid; the message says which field and why",
    401: "No credentials, or an invalid or revoked API key",
    403: "The key lacks the 'manage' scope, or the signed-in role is read-only",
    404: "No such object in this tenant",
    409: "The request conflicts with the current state",
    413: "The uploaded file is larger than the upload limit",
    415: "The body's Content-Type (or its absence) is not one this endpoint reads",
}


def with_errors(ok: dict, *statuses: int) -> dict:
    """`ok` responses plus the error responses every endpoint can give (401, 403) and `statuses`."""
    errors = {status: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status])
              for status in (401, 403, *statuses)}
    return {**ok, **errors}


def document_unsupported_media_type(result, generator, request, public):
    """drf-spectacular postprocessing hook: an operation that reads a request body answers
    415 to a body in a Content-Type it does not parse (DRF's UnsupportedMediaType), so each
    one documents it, with the error body."""
    error = {"description": ERROR_DESCRIPTIONS[415],
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for operations in result["paths"].values():
        for operation in operations.values():
            if "requestBody" in operation:
                operation["responses"].setdefault("415", error)
    return result


def query_data(request) -> dict:
    """The query string for a query serializer, as a plain dict: DRF reads an empty value in
    form data (`?history=`) as "not given" and uses the default; here it is refused like any
    other value that is not what the schema says."""
    return request.query_params.dict()


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """DRF's limit and offset, except that a value that is not a whole number in range is a
    400 (DRF ignores it and uses the default, or passes a huge one on to the database)."""

    max_limit = 1000
    max_offset = 2**31 - 1
    _WHOLE = re.compile(r"[0-9]{1,12}")

    def get_limit(self, request):
        return self._whole(request, self.limit_query_param, 1, self.max_limit, self.default_limit)

    def get_offset(self, request):
        return self._whole(request, self.offset_query_param, 0, self.max_offset, 0)

    def _whole(self, request, name: str, low: int, high: int, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not self._WHOLE.fullmatch(raw) or not low <= int(raw) <= high:
            raise ValidationError({name: f"Must be a whole number from {low} to {high}."})
        return int(raw)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: (1, self.max_limit), self.offset_query_param: (0, self.max_offset)}
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"].update(minimum=low, maximum=high)
        return parameters


class StrictCharField(serializers.CharField):
    """A string, as the schema says: DRF's CharField would take 0 or true and store "0" or
    "True"; this one refuses them with a 400."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise ValidationError("Not a valid string.")
        return super().to_internal_value(data)
