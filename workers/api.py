from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from portal.api_base import ErrorSerializer, TenantAPIView, with_errors
from tenants.models import Hardware
from workers.models import Deployment
from workers.selectors import deployment_get, deployment_list
from workers.services import deployment_create, deployment_undeploy


class DeploymentSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model_version.model.name")
    version = serializers.IntegerField(source="model_version.version")
    server = serializers.CharField(source="server.name", default=None, allow_null=True,
                                   help_text="The Triton server it is placed on, once placed")
    hardware = serializers.ChoiceField(choices=Hardware.choices, read_only=True)
    infer_url = serializers.SerializerMethodField(help_text="The gateway URL to call it (KServe v2 infer)")

    class Meta:
        model = Deployment
        fields = ("id", "name", "model_version", "model_name", "version", "instances", "hardware", "max_batch_size",
                  "state", "error", "server", "created_at", "updated_at", "ready_at", "load_seconds", "infer_url")
        read_only_fields = fields
        extra_kwargs = {"error": {"help_text": "Why it failed, or what it waits for"}}

    def get_infer_url(self, deployment) -> str:
        return f"{settings.GATEWAY_URL}/v2/models/{deployment.name}/infer"


class DeploymentCreateSerializer(serializers.Serializer):
    model_version = serializers.IntegerField(help_text="Id of one of your model versions")
    name = serializers.CharField(required=False, allow_blank=True, default="",
                                 help_text="Name clients use in the gateway URL; defaults to the model name")
    instances = serializers.IntegerField(min_value=1, max_value=32767, default=1,
                                         help_text="Triton model instances serving it (your plan sets the most)")
    hardware = serializers.ChoiceField(choices=Hardware.choices, default=Hardware.CPU,
                                       help_text="Where it runs; your plan says which hardware it includes")
    max_batch_size = serializers.IntegerField(
        min_value=0, max_value=2**31 - 1, required=False, allow_null=True,
        help_text="Largest batch the dynamic batcher forms; by default 64 for models with a batch dimension and 0 "
                  "(no batching) for models without one, which cannot batch",
    )


QUOTA_403 = ("The key lacks the 'manage' scope, the signed-in role is read-only, or the deployment is beyond the "
             "tenant's limits (code quota_exceeded)")


class DeploymentListQuerySerializer(serializers.Serializer):
    history = serializers.BooleanField(default=False, help_text="Include undeployed deployments")


class DeploymentListView(TenantAPIView):
    @extend_schema(parameters=[DeploymentListQuerySerializer],
                   responses=with_errors({200: DeploymentSerializer(many=True)}, 400),
                   summary="List deployments, newest first")
    def get(self, request):
        query = DeploymentListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        deployments = deployment_list(tenant=self.tenant, include_history=query.validated_data["history"])
        return Response(DeploymentSerializer(deployments, many=True).data)

    @extend_schema(request=DeploymentCreateSerializer,
                   responses={**with_errors({202: DeploymentSerializer}, 400, 404, 409),
                              403: OpenApiResponse(ErrorSerializer, description=QUOTA_403)},
                   summary="Deploy a model version",
                   description="Returns at once with state `pending`; poll the deployment until it is "
                   "`ready` (or `failed`, with the reason in `error`). A deployment beyond your plan's limits "
                   "(deployments, instances, hardware, batch size, model memory) is refused with 403 "
                   "`quota_exceeded`.")
    def post(self, request):
        payload = DeploymentCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        deployment = deployment_create(tenant=self.tenant, model_version_id=data["model_version"], name=data["name"],
                                       instances=data["instances"], hardware=data["hardware"],
                                       max_batch_size=data.get("max_batch_size"), actor=self.actor)
        deployment = deployment_get(tenant=self.tenant, deployment_id=deployment.pk)
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_202_ACCEPTED)


class DeploymentDetailView(TenantAPIView):
    @extend_schema(responses=with_errors({200: DeploymentSerializer}, 404),
                   summary="A deployment and its live state")
    def get(self, request, deployment_id: int):
        return Response(DeploymentSerializer(deployment_get(tenant=self.tenant, deployment_id=deployment_id)).data)

    @extend_schema(responses=with_errors({202: DeploymentSerializer}, 404),
                   summary="Undeploy",
                   description="Returns at once with state `unloading`; the deployment is unloaded from "
                   "Triton and ends `undeployed` (listed with `?history=1`); then its name is free again.")
    def delete(self, request, deployment_id: int):
        deployment_undeploy(tenant=self.tenant, deployment_id=deployment_id)
        deployment = deployment_get(tenant=self.tenant, deployment_id=deployment_id)
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_202_ACCEPTED)
