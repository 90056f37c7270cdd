from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from billing.models import UsageEvent
from billing.selectors import usage_recent, usage_summary, usage_timeseries
from portal.api_base import TenantAPIView
from portal.errors import PlatformError


class UsageEventSerializer(serializers.ModelSerializer):
    key_prefix = serializers.CharField(source="api_key.prefix", read_only=True, default=None)

    class Meta:
        model = UsageEvent
        fields = ["request_id", "occurred_at", "deployment_name", "deployment", "model_version_id", "endpoint",
                  "protocol", "status", "latency_ms", "upstream_ms", "bytes_in", "bytes_out", "api_key", "key_prefix"]


class DeploymentUsageSerializer(serializers.Serializer):
    deployment_name = serializers.CharField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    avg_latency_ms = serializers.FloatField(allow_null=True)


class UsageSummarySerializer(serializers.Serializer):
    total_requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    bytes_in = serializers.IntegerField()
    bytes_out = serializers.IntegerField()
    avg_latency_ms = serializers.FloatField(allow_null=True)
    by_deployment = DeploymentUsageSerializer(many=True)


class UsagePointSerializer(serializers.Serializer):
    minute = serializers.DateTimeField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()


class UsageListView(TenantAPIView):
    @extend_schema(parameters=[OpenApiParameter("deployment", str, description="Only this deployment name")],
                   responses=UsageEventSerializer(many=True), summary="Recent requests, newest first")
    def get(self, request):
        events = usage_recent(tenant=self.tenant, limit=None, deployment_name=request.query_params.get("deployment"))
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(events.select_related("api_key"), request, view=self)
        return paginator.get_paginated_response(UsageEventSerializer(page, many=True).data)


class UsageSummaryView(TenantAPIView):
    @extend_schema(responses=UsageSummarySerializer, summary="Totals for the tenant")
    def get(self, request):
        return Response(UsageSummarySerializer(usage_summary(tenant=self.tenant)).data)


class UsageTimeseriesView(TenantAPIView):
    @extend_schema(parameters=[OpenApiParameter("minutes", int, description="Window, 1-1440 (default 60)")],
                   responses=UsagePointSerializer(many=True), summary="Requests and errors per minute")
    def get(self, request):
        try:
            minutes = int(request.query_params.get("minutes", 60))
        except ValueError:
            raise PlatformError("'minutes' must be an integer between 1 and 1440.") from None
        if not 1 <= minutes <= 1440:
            raise PlatformError("'minutes' must be an integer between 1 and 1440.")
        return Response(usage_timeseries(tenant=self.tenant, minutes=minutes))
