"""A tenant's own limits on its deployments and API keys: owners narrow them, members read them."""
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from gateway.contract.errors import NotFound
from portal.api_base import TenantAPIView, with_errors
from tenants.api_quotas.limits import RequestLimitsSerializer
from tenants.models import ApiKey
from tenants.quotas import quota_set_within_tenant, scope_limits
from tenants.selectors import api_key_list
from workers.selectors import deployment_get

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
