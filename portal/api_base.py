"""What every tenant-scoped REST view shares: the tenant the request acts for, and the
documented error responses."""
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.views import APIView

from tenants.permissions import request_tenant


class TenantAPIView(APIView):
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
}


def with_errors(ok: dict, *statuses: int) -> dict:
    """`ok` responses plus the error responses every endpoint can give (401, 403) and `statuses`."""
    errors = {status: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status])
              for status in (401, 403, *statuses)}
    return {**ok, **errors}
