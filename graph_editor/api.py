from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from graph_editor.models import MLModel, ModelVersion
from graph_editor.selectors import model_get, model_list, model_version_get
from graph_editor.services import model_delete, model_version_upload
from portal.api_base import TenantAPIView
from portal.errors import PlatformError


class TensorSerializer(serializers.Serializer):
    name = serializers.CharField()
    datatype = serializers.CharField()
    shape = serializers.ListField(child=serializers.IntegerField(), help_text="-1 marks a dynamic dimension")


class ModelVersionSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model.name", read_only=True)
    inputs = TensorSerializer(many=True)
    outputs = TensorSerializer(many=True)

    class Meta:
        model = ModelVersion
        fields = ["id", "model", "model_name", "version", "format", "size_bytes", "sha256", "opset", "producer",
                  "inputs", "outputs", "has_batch_dim", "created_at"]


class ModelSerializer(serializers.ModelSerializer):
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = MLModel
        fields = ["id", "name", "description", "created_at", "latest_version"]

    @extend_schema(exclude=False)
    def get_latest_version(self, model) -> dict | None:
        versions = sorted(model.versions.all(), key=lambda v: v.version)
        return ModelVersionSerializer(versions[-1]).data if versions else None


class ModelDetailSerializer(ModelSerializer):
    versions = serializers.SerializerMethodField()

    class Meta(ModelSerializer.Meta):
        fields = ModelSerializer.Meta.fields + ["versions"]

    def get_versions(self, model) -> list[dict]:
        return ModelVersionSerializer(model.versions.order_by("-version"), many=True).data


class ModelUploadSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Model name: lowercase letters, digits and hyphens")
    file = serializers.FileField(help_text="A self-contained .onnx file")
    description = serializers.CharField(required=False, allow_blank=True)


class ModelListView(TenantAPIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses=ModelSerializer(many=True), summary="List models")
    def get(self, request):
        return Response(ModelSerializer(model_list(tenant=self.tenant), many=True).data)

    @extend_schema(request={"multipart/form-data": ModelUploadSerializer}, responses={201: ModelVersionSerializer},
                   summary="Upload an ONNX model (a new version when the name exists)")
    def post(self, request):
        upload = request.FILES.get("file")
        if upload is None:
            raise PlatformError("Attach the ONNX file as the multipart field 'file'.")
        name = request.data.get("name", "")
        if not name:
            raise PlatformError("Give the model a 'name'.")
        version = model_version_upload(
            tenant=self.tenant, model_name=name, chunks=upload.chunks(), filename=upload.name,
            description=request.data.get("description", ""), actor=self.actor,
        )
        return Response(ModelVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class ModelDetailView(TenantAPIView):
    @extend_schema(responses=ModelDetailSerializer, summary="A model and its versions")
    def get(self, request, model_id: int):
        return Response(ModelDetailSerializer(model_get(tenant=self.tenant, model_id=model_id)).data)

    @extend_schema(responses={204: None}, summary="Delete a model and its files (refused while deployed)")
    def delete(self, request, model_id: int):
        model_delete(tenant=self.tenant, model_id=model_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelVersionListView(TenantAPIView):
    @extend_schema(responses=ModelVersionSerializer(many=True), summary="Versions of a model")
    def get(self, request, model_id: int):
        model = model_get(tenant=self.tenant, model_id=model_id)
        return Response(ModelVersionSerializer(model.versions.order_by("-version"), many=True).data)


class ModelVersionDetailView(TenantAPIView):
    @extend_schema(responses=ModelVersionSerializer, summary="A model version and its signature")
    def get(self, request, version_id: int):
        return Response(ModelVersionSerializer(model_version_get(tenant=self.tenant, version_id=version_id)).data)
