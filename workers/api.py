from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from portal.api_base import TenantAPIView
from workers.models import Deployment
from workers.selectors import deployment_get, deployment_list
from workers.services import deployment_create, deployment_undeploy


class DeploymentSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model_version.model.name", read_only=True)
    version = serializers.IntegerField(source="model_version.version", read_only=True)
    server = serializers.CharField(source="server.name", read_only=True, default=None)
    infer_url = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = ["id", "name", "model_version", "model_name", "version", "state", "error", "server",
                  "created_at", "updated_at", "ready_at", "load_seconds", "infer_url"]

    def get_infer_url(self, deployment) -> str:
        return f"{settings.GATEWAY_URL}/v2/models/{deployment.name}/infer"


class DeploymentCreateSerializer(serializers.Serializer):
    model_version = serializers.IntegerField(help_text="Id of one of your model versions")
    name = serializers.CharField(required=False, allow_blank=True,
                                 help_text="Name clients use in the gateway URL; defaults to the model name")


class DeploymentListView(TenantAPIView):
    @extend_schema(
        parameters=[OpenApiParameter("history", bool, description="Include undeployed deployments")],
        responses=DeploymentSerializer(many=True), summary="List deployments",
    )
    def get(self, request):
        history = request.query_params.get("history") in ("1", "true", "yes")
        return Response(DeploymentSerializer(deployment_list(tenant=self.tenant, include_history=history),
                                             many=True).data)

    @extend_schema(request=DeploymentCreateSerializer, responses={202: DeploymentSerializer},
                   summary="Deploy a model version (loads asynchronously)")
    def post(self, request):
        payload = DeploymentCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        deployment = deployment_create(tenant=self.tenant, model_version_id=payload.validated_data["model_version"],
                                       name=payload.validated_data.get("name", ""), actor=self.actor)
        deployment = deployment_get(tenant=self.tenant, deployment_id=deployment.pk)
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_202_ACCEPTED)


class DeploymentDetailView(TenantAPIView):
    @extend_schema(responses=DeploymentSerializer, summary="A deployment and its live state")
    def get(self, request, deployment_id: int):
        return Response(DeploymentSerializer(deployment_get(tenant=self.tenant, deployment_id=deployment_id)).data)

    @extend_schema(responses={202: DeploymentSerializer}, summary="Undeploy: unload from Triton and remove")
    def delete(self, request, deployment_id: int):
        deployment_undeploy(tenant=self.tenant, deployment_id=deployment_id)
        deployment = deployment_get(tenant=self.tenant, deployment_id=deployment_id)
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_202_ACCEPTED)
