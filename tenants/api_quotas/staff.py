"""The staff-only admin API: who may call it, and the error responses it documents."""
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions
from rest_framework.views import APIView

from portal.api_base import ErrorSerializer, with_errors


class IsPlatformStaff(permissions.BasePermission):
    """A signed-in staff user. Tenants' users and API keys never qualify."""

    message = "Only platform staff may use the admin API."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


def staff_errors(ok: dict, *statuses: int) -> dict:
    responses = with_errors(ok, *statuses)
    responses[403] = OpenApiResponse(ErrorSerializer, description="The caller is not platform staff")
    return responses


class StaffAPIView(APIView):
    permission_classes = [IsPlatformStaff]
