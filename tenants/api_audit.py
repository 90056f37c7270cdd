"""A tenant's own audit log over the REST API: every change to its quotas, API keys,
deployment settings, plan and billing (spend limit, credit notes, re-rated invoices), who
made it and through which surface. Platform-wide changes (a plan's own limits and prices)
belong to no tenant and are in the admin only.

The log says who did what in the tenant, so it is read as keys are managed: by owners and
admins, or with a `manage` key; members get 403."""
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers

from portal.api_base import (
    ErrorSerializer,
    LimitOffsetPagination,
    TenantAPIView,
    query_data,
    with_errors,
)
from tenants.audit import audit_log_list
from tenants.models import ApiKey, AuditLog
from tenants.permissions import IsTenantMember

OBJECT_TYPES = ("api_key", "billing_account", "credit_note", "deployment", "graph", "graph_version", "invoice", "plan",
                "quota", "tenant")


class CanReadAuditLog(IsTenantMember):
    """A `manage`-scoped key, or a signed-in owner or admin, even for reads."""

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        if isinstance(request.auth, ApiKey) or request._request.membership.can_manage:
            return True
        self.message = "Only owners and admins may read the audit log."
        return False


class AuditLogEntrySerializer(serializers.ModelSerializer):
    acting_user = serializers.CharField(source="acting_user.username", default=None, allow_null=True,
                                        help_text="Username of who made the change; null for an API key or the "
                                                  "system")
    acting_key_prefix = serializers.CharField(source="acting_api_key.prefix", default=None, allow_null=True,
                                              help_text="Visible part of the API key that made the change")
    old_value = serializers.JSONField(allow_null=True,
                                      help_text="The changed fields and their values before; null when the change "
                                                "created the object")
    new_value = serializers.JSONField(allow_null=True,
                                      help_text="The changed fields and their values after; null when the change "
                                                "removed the object")

    class Meta:
        model = AuditLog
        fields = ("id", "occurred_at", "surface", "acting_user", "acting_api_key", "acting_key_prefix", "event_type",
                  "object_type", "object_id", "object_repr", "old_value", "new_value")
        read_only_fields = fields
        extra_kwargs = {
            "surface": {"help_text": "Where the change was made: admin (platform staff), api, page (the portal) or "
                                     "system (the platform itself)"},
            "acting_api_key": {"help_text": "Id of the API key that made the change"},
            "object_id": {"help_text": "Id of the changed plan, quota, API key, deployment, tenant, billing account, "
                                       "invoice or credit note"},
            "object_repr": {"help_text": "What it was called when it changed"},
        }


class AuditLogQuerySerializer(serializers.Serializer):
    event_type = serializers.CharField(required=False, max_length=40,
                                       help_text="Only this kind of change, e.g. quota.changed or api_key.revoked")
    object_type = serializers.ChoiceField(choices=OBJECT_TYPES, required=False,
                                          help_text="Only changes to this kind of object")
    since = serializers.DateTimeField(required=False,
                                      help_text="Only changes at or after this time (ISO 8601, e.g. "
                                                "2026-01-31T12:00:00Z)")
    until = serializers.DateTimeField(required=False, help_text="Only changes at or before this time (ISO 8601)")

    def validate(self, data):
        if "since" in data and "until" in data and data["since"] > data["until"]:
            raise serializers.ValidationError({"until": "Must not be earlier than since."})
        return data


class AuditLogListView(TenantAPIView, generics.ListAPIView):
    permission_classes = [CanReadAuditLog]
    serializer_class = AuditLogEntrySerializer
    pagination_class = LimitOffsetPagination

    def get_queryset(self):
        query = AuditLogQuerySerializer(data=query_data(self.request))
        query.is_valid(raise_exception=True)
        return audit_log_list(tenant=self.tenant, **query.validated_data)

    @extend_schema(
        parameters=[AuditLogQuerySerializer],
        responses={**with_errors({200: AuditLogEntrySerializer(many=True)}, 400),
                   403: OpenApiResponse(ErrorSerializer, description="The key lacks the 'manage' scope, or the "
                                        "signed-in user is a member (owners and admins read the log)")},
        summary="The tenant's audit log, newest first (paginated with limit and offset)",
        description="One entry per change to the tenant's API keys, quotas, deployments' settings and plan: when, "
                    "who (a user or an API key), through which surface, and the changed fields' old and new values.",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
