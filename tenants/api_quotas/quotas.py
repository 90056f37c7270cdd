"""Quotas at every level (plan, tenant, deployment, API key), for platform staff."""
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from gateway.contract.errors import Conflict, NotFound
from portal.api_base import LimitOffsetPagination, query_data
from tenants.api_quotas.limits import LimitsSerializer
from tenants.api_quotas.staff import IsPlatformStaff, StaffAPIView, staff_errors
from tenants.models import ApiKey, Plan, Quota, QuotaLevel, Tenant
from tenants.quotas import quota_clear, quota_set
from workers.models import Deployment

TARGET_FIELD = {QuotaLevel.PLAN: "plan", QuotaLevel.TENANT: "tenant", QuotaLevel.DEPLOYMENT: "deployment",
                QuotaLevel.KEY: "api_key"}
TARGET_NAME = {QuotaLevel.PLAN: "plan", QuotaLevel.TENANT: "tenant", QuotaLevel.DEPLOYMENT: "deployment",
               QuotaLevel.KEY: "API key"}


def _target_get(level: str, target_id: int):
    # Staff act across tenants: the explicit, unscoped lookups are deliberate here.
    managers = {QuotaLevel.PLAN: Plan.objects, QuotaLevel.TENANT: Tenant.objects,
                QuotaLevel.DEPLOYMENT: Deployment.unscoped, QuotaLevel.KEY: ApiKey.unscoped}
    target = managers[level].filter(pk=target_id).first()
    if target is None:
        raise NotFound(f"No {TARGET_NAME[level]} with id {target_id}.")
    return target


def _quota_target(quota: Quota):
    return getattr(quota, TARGET_FIELD[quota.level])


class QuotaSerializer(serializers.ModelSerializer):
    target = serializers.SerializerMethodField(help_text="Id of the plan, tenant, deployment or API key")
    target_name = serializers.SerializerMethodField()
    limits = LimitsSerializer(source="*")

    class Meta:
        model = Quota
        fields = ("id", "level", "target", "target_name", "tenant", "limits", "updated_at")
        read_only_fields = fields
        extra_kwargs = {"tenant": {"help_text": "The tenant it belongs to; null for a plan's quota"}}

    def get_target(self, quota) -> int:
        return getattr(quota, f"{TARGET_FIELD[quota.level]}_id")

    def get_target_name(self, quota) -> str:
        return str(_quota_target(quota))


class QuotaListQuerySerializer(serializers.Serializer):
    level = serializers.ChoiceField(choices=QuotaLevel.choices, required=False, help_text="Only quotas of this level")
    tenant = serializers.IntegerField(required=False, min_value=1,
                                      help_text="Only this tenant's quotas (its own, its deployments' and keys')")


class QuotaCreateSerializer(serializers.Serializer):
    level = serializers.ChoiceField(choices=QuotaLevel.choices)
    target = serializers.IntegerField(min_value=1, help_text="Id of the plan, tenant, deployment or API key")
    limits = LimitsSerializer(required=False)


class QuotaUpdateSerializer(serializers.Serializer):
    limits = LimitsSerializer(help_text="Only the fields given change; null removes a limit")


class QuotaListView(generics.ListAPIView):
    permission_classes = [IsPlatformStaff]
    serializer_class = QuotaSerializer
    pagination_class = LimitOffsetPagination

    def get_queryset(self):
        query = QuotaListQuerySerializer(data=query_data(self.request))
        query.is_valid(raise_exception=True)
        quotas = Quota.objects.select_related("plan", "tenant", "deployment", "api_key").order_by("level", "id")
        if "level" in query.validated_data:
            quotas = quotas.filter(level=query.validated_data["level"])
        if "tenant" in query.validated_data:
            quotas = quotas.filter(tenant_id=query.validated_data["tenant"])
        return quotas

    @extend_schema(parameters=[QuotaListQuerySerializer],
                   responses=staff_errors({200: QuotaSerializer(many=True)}, 400),
                   summary="List quotas at every level (staff; paginated with limit and offset)", tags=["admin"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=QuotaCreateSerializer, responses=staff_errors({201: QuotaSerializer}, 400, 404, 409),
                   summary="Set limits on a plan, tenant, deployment or API key (staff)", tags=["admin"],
                   description="Creates the target's quota: 409 when it has one already (change that one with "
                   "PATCH). Deployments and keys carry request-path limits only.")
    def post(self, request):
        payload = QuotaCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        level = payload.validated_data["level"]
        target = _target_get(level, payload.validated_data["target"])
        existing = Quota.objects.filter(**{TARGET_FIELD[level]: target})
        if level == QuotaLevel.TENANT:
            existing = existing.filter(level=QuotaLevel.TENANT)
        if existing.exists():
            raise Conflict(f"This {TARGET_NAME[level]} has a quota already (id {existing.first().pk}); change it "
                           "with PATCH instead.")
        quota = quota_set(level=level, target=target, values=payload.validated_data.get("limits", {}))
        return Response(QuotaSerializer(quota).data, status=status.HTTP_201_CREATED)


def _quota_get(quota_id: int) -> Quota:
    quota = Quota.objects.select_related("plan", "tenant", "deployment", "api_key").filter(pk=quota_id).first()
    if quota is None:
        raise NotFound("No such quota.")
    return quota


class QuotaDetailView(StaffAPIView):
    @extend_schema(responses=staff_errors({200: QuotaSerializer}, 404), summary="A quota (staff)", tags=["admin"])
    def get(self, request, quota_id: int):
        return Response(QuotaSerializer(_quota_get(quota_id)).data)

    @extend_schema(request=QuotaUpdateSerializer, responses=staff_errors({200: QuotaSerializer}, 400, 404),
                   summary="Change a quota's limits (staff)", tags=["admin"])
    def patch(self, request, quota_id: int):
        quota = _quota_get(quota_id)
        payload = QuotaUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        quota_set(level=quota.level, target=_quota_target(quota), values=payload.validated_data["limits"])
        return Response(QuotaSerializer(_quota_get(quota_id)).data)

    @extend_schema(responses=staff_errors({204: None}, 404), summary="Remove a quota (staff)", tags=["admin"],
                   description="Its limits stop applying once the change commits: a tenant's fall back to its "
                   "plan's, a deployment or key keeps only its tenant's.")
    def delete(self, request, quota_id: int):
        quota_clear(quota=_quota_get(quota_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
