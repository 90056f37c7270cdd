"""A tenant's limits and what it uses against them, for its members."""
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from billing.quotas import quota_overview
from portal.api_base import TenantAPIView, with_errors
from tenants.api_quotas.limits import LimitsSerializer, RequestLimitsSerializer
from tenants.models import QuotaLevel


class ScopeUsageSerializer(serializers.Serializer):
    requests = serializers.IntegerField(help_text="Billable requests this calendar month (UTC)")
    compute_seconds = serializers.FloatField(help_text="Inference compute seconds this calendar month (UTC)")
    in_flight = serializers.IntegerField(help_text="Requests in flight now")


class TenantUsageSerializer(ScopeUsageSerializer):
    models = serializers.IntegerField()
    deployments = serializers.IntegerField(help_text="Deployments not undeployed")
    model_memory_mb = serializers.IntegerField(help_text="Estimated memory of those deployments")


class TenantQuotaSerializer(serializers.Serializer):
    limits = LimitsSerializer(help_text="The tenant's effective limits")
    source = serializers.DictField(
        child=serializers.ChoiceField(choices=[QuotaLevel.PLAN, QuotaLevel.TENANT], allow_null=True),
        help_text="Per limit: 'tenant' when set for this tenant, 'plan' when it comes from the plan, null when "
                  "there is no limit",
    )
    usage = TenantUsageSerializer()


class DeploymentQuotaSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    limits = RequestLimitsSerializer(allow_null=True, help_text="Its own limits; null: only the tenant's apply")
    usage = ScopeUsageSerializer()


class KeyQuotaSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    label = serializers.CharField()
    prefix = serializers.CharField()
    limits = RequestLimitsSerializer(allow_null=True, help_text="Its own limits; null: only the tenant's apply")
    usage = ScopeUsageSerializer()


class QuotaOverviewSerializer(serializers.Serializer):
    plan = serializers.CharField(allow_null=True, help_text="Slug of the tenant's plan")
    plan_name = serializers.CharField(allow_null=True, help_text="Name of the tenant's plan")
    tenant = TenantQuotaSerializer()
    deployments = DeploymentQuotaSerializer(many=True, help_text="Active deployments")
    keys = KeyQuotaSerializer(many=True, help_text="Active API keys")


class QuotaOverviewView(TenantAPIView):
    @extend_schema(responses=with_errors({200: QuotaOverviewSerializer}), summary="Limits and consumption",
                   description="The tenant's effective limits (and where each comes from), what it uses this "
                   "calendar month and now, and the same for each active deployment and API key.")
    def get(self, request):
        return Response(QuotaOverviewSerializer(quota_overview(tenant=self.tenant)).data)
