"""Quotas over the REST API: what a tenant may use and uses (members read), the limits
its owners put on their own deployments and keys, and the staff-only admin endpoints
for plans, quotas at every level and a tenant's plan.

Every change goes through the services of tenants.quotas, so it is in force on the
gateway once committed."""
from django.db.models import Count
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.quotas import quota_overview
from gateway.contract.errors import Conflict, NotFound
from portal.api_base import (
    ErrorSerializer,
    LimitOffsetPagination,
    TenantAPIView,
    query_data,
    with_errors,
)
from tenants.models import (
    DEPLOY_LIMITS,
    REQUEST_LIMITS,
    ApiKey,
    Hardware,
    Plan,
    Quota,
    QuotaLevel,
    Tenant,
)
from tenants.quotas import (
    LIMIT_FIELDS,
    plan_save,
    quota_clear,
    quota_effective,
    quota_set,
    quota_set_within_tenant,
    scope_limits,
    tenant_plan_set,
)
from tenants.selectors import api_key_list
from workers.models import Deployment
from workers.selectors import deployment_get

# ---- limits ---------------------------------------------------------------------------


class LimitsSerializer(serializers.ModelSerializer):
    """Limits as numbers (null: no limit at this level). On input only the fields given
    change; a field this level cannot carry, or one that does not exist, is refused."""

    allowed_hardware = serializers.ListField(
        child=serializers.ChoiceField(choices=Hardware.choices), allow_null=True, allow_empty=False, required=False,
        help_text='Hardware deployments may use, e.g. ["cpu"]; null: any',
    )

    class Meta:
        model = Quota
        fields = LIMIT_FIELDS
        # DRF says "biginteger" for these; callers see plain integers.
        extra_kwargs = {field: {"error_messages": {"invalid": "A valid integer is required."}}
                        for field in ("monthly_requests", "max_payload_bytes")}

    def to_internal_value(self, data):
        if isinstance(data, dict):
            extra = sorted(set(data) - set(self.fields))
            if extra:
                raise serializers.ValidationError({
                    field: "Only plans and tenants carry this limit." if field in DEPLOY_LIMITS else "Unknown limit."
                    for field in extra})
        return super().to_internal_value(data)


class RequestLimitsSerializer(LimitsSerializer):
    """The limits a deployment or an API key can carry: they count that deployment's or
    key's requests and apply on top of the tenant's."""

    class Meta(LimitsSerializer.Meta):
        fields = REQUEST_LIMITS


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


# ---- tenant-facing --------------------------------------------------------------------


class QuotaOverviewView(TenantAPIView):
    @extend_schema(responses=with_errors({200: QuotaOverviewSerializer}), summary="Limits and consumption",
                   description="The tenant's effective limits (and where each comes from), what it uses this "
                   "calendar month and now, and the same for each active deployment and API key.")
    def get(self, request):
        return Response(QuotaOverviewSerializer(quota_overview(tenant=self.tenant)).data)


SCOPE_LIMITS_DESCRIPTION = ("Only the fields given change; null removes that limit. Each value may be at most the "
                            "tenant's own limit (400 limit_above_tenant otherwise): the tenant's limits apply on top, "
                            "and a tenant cannot raise them. Deploy-time limits are set on plans and tenants only.")


def _scope_limits_change(view: TenantAPIView, target) -> Response:
    payload = RequestLimitsSerializer(data=view.request.data)
    payload.is_valid(raise_exception=True)
    quota_set_within_tenant(tenant=view.tenant, target=target, values=payload.validated_data)
    return Response(RequestLimitsSerializer(scope_limits(target=target)).data)


class DeploymentLimitsView(TenantAPIView):
    """One deployment's own limits; another tenant's deployment is 404."""

    @extend_schema(responses=with_errors({200: RequestLimitsSerializer}, 404), summary="A deployment's own limits")
    def get(self, request, deployment_id: int):
        deployment = deployment_get(tenant=self.tenant, deployment_id=deployment_id)
        return Response(RequestLimitsSerializer(scope_limits(target=deployment)).data)

    @extend_schema(request=RequestLimitsSerializer, responses=with_errors({200: RequestLimitsSerializer}, 400, 404),
                   summary="Change a deployment's own limits", description=SCOPE_LIMITS_DESCRIPTION)
    def patch(self, request, deployment_id: int):
        return _scope_limits_change(self, deployment_get(tenant=self.tenant, deployment_id=deployment_id))


class KeyLimitsView(TenantAPIView):
    """One API key's own limits; another tenant's key is 404."""

    def api_key(self, key_id: int) -> ApiKey:
        api_key = api_key_list(tenant=self.tenant).filter(pk=key_id).first()
        if api_key is None:
            raise NotFound("No such API key in this tenant.")
        return api_key

    @extend_schema(responses=with_errors({200: RequestLimitsSerializer}, 404), summary="An API key's own limits")
    def get(self, request, key_id: int):
        return Response(RequestLimitsSerializer(scope_limits(target=self.api_key(key_id))).data)

    @extend_schema(request=RequestLimitsSerializer, responses=with_errors({200: RequestLimitsSerializer}, 400, 404),
                   summary="Change an API key's own limits", description=SCOPE_LIMITS_DESCRIPTION)
    def patch(self, request, key_id: int):
        return _scope_limits_change(self, self.api_key(key_id))


# ---- staff only -----------------------------------------------------------------------


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


class PlanSerializer(serializers.ModelSerializer):
    tenants = serializers.IntegerField(source="tenant_count", read_only=True,
                                       help_text="Tenants assigned this plan (tenants without a plan get the default)")
    limits = LimitsSerializer(source="quota", read_only=True, allow_null=True)

    class Meta:
        model = Plan
        fields = ("id", "name", "slug", "is_default", "tenants", "limits", "created_at")
        read_only_fields = fields


class PlanWriteSerializer(serializers.ModelSerializer):
    is_default = serializers.BooleanField(
        required=False, help_text="Make this the default plan (the previous default stops being it); the default "
                                  "cannot be unset, only moved")
    limits = LimitsSerializer(required=False, help_text="Only the fields given change")

    class Meta:
        model = Plan
        fields = ("name", "slug", "is_default", "limits")
        # One default at a time is kept by moving the flag, not by refusing it.
        validators = []


def _plans():
    return Plan.objects.select_related("quota").annotate(tenant_count=Count("tenants")).order_by("name")


def _plan_get(plan_id: int) -> Plan:
    plan = _plans().filter(pk=plan_id).first()
    if plan is None:
        raise NotFound("No such plan.")
    return plan


class PlanListView(StaffAPIView):
    @extend_schema(responses=staff_errors({200: PlanSerializer(many=True)}), summary="List plans (staff)",
                   tags=["admin"])
    def get(self, request):
        return Response(PlanSerializer(_plans(), many=True).data)

    @extend_schema(request=PlanWriteSerializer, responses=staff_errors({201: PlanSerializer}, 400),
                   summary="Create a plan with its limits (staff)", tags=["admin"])
    def post(self, request):
        payload = PlanWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        plan = plan_save(plan=Plan(name=data["name"], slug=data["slug"]), is_default=data.get("is_default", False),
                         limits=data.get("limits"))
        return Response(PlanSerializer(_plan_get(plan.pk)).data, status=status.HTTP_201_CREATED)


class PlanDetailView(StaffAPIView):
    @extend_schema(responses=staff_errors({200: PlanSerializer}, 404), summary="A plan and its limits (staff)",
                   tags=["admin"])
    def get(self, request, plan_id: int):
        return Response(PlanSerializer(_plan_get(plan_id)).data)

    @extend_schema(request=PlanWriteSerializer, responses=staff_errors({200: PlanSerializer}, 400, 404),
                   summary="Change a plan or its limits (staff)", tags=["admin"],
                   description="Only the fields given change. The tenants on the plan (and, for the default "
                   "plan, those without one) get the new limits as soon as the change commits.")
    def patch(self, request, plan_id: int):
        plan = _plan_get(plan_id)
        payload = PlanWriteSerializer(plan, data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        for field in ("name", "slug"):
            if field in data:
                setattr(plan, field, data[field])
        plan_save(plan=plan, is_default=data.get("is_default", plan.is_default), limits=data.get("limits"))
        return Response(PlanSerializer(_plan_get(plan.pk)).data)


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

    @extend_schema(parameters=[QuotaListQuerySerializer], responses=staff_errors({200: QuotaSerializer(many=True)}, 400),
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


class TenantPlanSerializer(serializers.Serializer):
    plan = serializers.IntegerField(allow_null=True, min_value=1, help_text="Id of a plan; null: the default plan")


class TenantPlanResultSerializer(serializers.Serializer):
    tenant = serializers.IntegerField()
    plan = serializers.IntegerField(allow_null=True, help_text="The plan assigned; null: the default plan")
    effective_plan = serializers.CharField(allow_null=True, help_text="Slug of the plan in force")
    limits = LimitsSerializer(help_text="The tenant's effective limits")
    source = serializers.DictField(child=serializers.CharField(allow_null=True),
                                   help_text="Per limit: 'tenant', 'plan' or null (no limit)")


def _tenant_plan_result(tenant: Tenant) -> dict:
    effective = quota_effective(tenant=tenant)
    return {"tenant": tenant.pk, "plan": tenant.plan_id,
            "effective_plan": effective["plan"].slug if effective["plan"] else None,
            "limits": effective["values"], "source": effective["source"]}


class TenantPlanView(StaffAPIView):
    @extend_schema(request=TenantPlanSerializer, responses=staff_errors({200: TenantPlanResultSerializer}, 400, 404),
                   summary="Put a tenant on a plan (staff)", tags=["admin"],
                   description="The tenant's new limits are in force on the gateway once the change commits.")
    def put(self, request, tenant_id: int):
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is None:
            raise NotFound("No such tenant.")
        payload = TenantPlanSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        plan = None
        if payload.validated_data["plan"] is not None:
            plan = _target_get(QuotaLevel.PLAN, payload.validated_data["plan"])
        tenant_plan_set(tenant=tenant, plan=plan)
        return Response(TenantPlanResultSerializer(_tenant_plan_result(tenant)).data)
