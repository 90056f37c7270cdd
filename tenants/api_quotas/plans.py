"""Plans and a tenant's plan, for platform staff."""
from django.db.models import Count
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from gateway.contract.errors import NotFound
from tenants.api_quotas.limits import LimitsSerializer
from tenants.api_quotas.staff import StaffAPIView, staff_errors
from tenants.models import Plan, Tenant
from tenants.quotas import plan_save, quota_effective, tenant_plan_set


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
        plan_id = payload.validated_data["plan"]
        if plan_id is not None:
            plan = Plan.objects.filter(pk=plan_id).first()
            if plan is None:
                raise NotFound(f"No plan with id {plan_id}.")
        tenant_plan_set(tenant=tenant, plan=plan)
        return Response(TenantPlanResultSerializer(_tenant_plan_result(tenant)).data)
