from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response

from billing.models import UsageEvent
from billing.selectors import usage_recent, usage_summary, usage_timeseries
from portal.api_base import (
    LimitOffsetPagination,
    TenantAPIView,
    query_data,
    with_errors,
)


class UsageEventSerializer(serializers.ModelSerializer):
    key_prefix = serializers.CharField(source="api_key.prefix", default=None, allow_null=True,
                                       help_text="Visible part of the API key that made the request")

    class Meta:
        model = UsageEvent
        fields = ("request_id", "occurred_at", "deployment_name", "deployment", "model_version_id", "endpoint",
                  "protocol", "status", "latency_ms", "upstream_ms", "bytes_in", "bytes_out", "api_key", "key_prefix")
        read_only_fields = fields
        extra_kwargs = {
            "status": {"help_text": "HTTP status the gateway answered"},
            "latency_ms": {"help_text": "Time spent in the gateway, Triton included"},
            "upstream_ms": {"help_text": "Time spent in Triton; null when it was not reached"},
        }


class UsageListQuerySerializer(serializers.Serializer):
    deployment = serializers.CharField(required=False, allow_blank=True,
                                       help_text="Only requests to this deployment name")


class DeploymentUsageSerializer(serializers.Serializer):
    deployment_name = serializers.CharField()
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    avg_latency_ms = serializers.FloatField(allow_null=True)


class UsageSummarySerializer(serializers.Serializer):
    total_requests = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="Requests answered with a status of 400 or above")
    bytes_in = serializers.IntegerField()
    bytes_out = serializers.IntegerField()
    avg_latency_ms = serializers.FloatField(allow_null=True)
    by_deployment = DeploymentUsageSerializer(many=True)


class UsageTimeseriesQuerySerializer(serializers.Serializer):
    minutes = serializers.IntegerField(min_value=1, max_value=1440, default=60,
                                       help_text="How many minutes back, 1-1440")


class UsagePointSerializer(serializers.Serializer):
    minute = serializers.DateTimeField(help_text="Start of the minute (UTC)")
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()


class UsageListView(TenantAPIView, generics.ListAPIView):
    serializer_class = UsageEventSerializer
    pagination_class = LimitOffsetPagination

    def get_queryset(self):
        query = UsageListQuerySerializer(data=query_data(self.request))
        query.is_valid(raise_exception=True)
        return usage_recent(tenant=self.tenant, limit=None, deployment_name=query.validated_data.get("deployment"))

    @extend_schema(parameters=[UsageListQuerySerializer],
                   responses=with_errors({200: UsageEventSerializer(many=True)}, 400),
                   summary="Recent requests, newest first (paginated with limit and offset)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class UsageSummaryView(TenantAPIView):
    @extend_schema(responses=with_errors({200: UsageSummarySerializer}), summary="Usage totals of the tenant")
    def get(self, request):
        return Response(UsageSummarySerializer(usage_summary(tenant=self.tenant)).data)


class UsageTimeseriesView(TenantAPIView):
    @extend_schema(parameters=[UsageTimeseriesQuerySerializer],
                   responses=with_errors({200: UsagePointSerializer(many=True)}, 400),
                   summary="Requests and errors per minute, oldest first (minutes without requests are zeros)")
    def get(self, request):
        query = UsageTimeseriesQuerySerializer(data=query_data(request))
        query.is_valid(raise_exception=True)
        points = usage_timeseries(tenant=self.tenant, minutes=query.validated_data["minutes"])
        return Response(UsagePointSerializer(points, many=True).data)
