import html

from django.conf import settings
from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.http.multipartparser import MultiPartParserError
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import DataAndFiles, MultiPartParser
from rest_framework.response import Response

from graph_editor.models import MLModel, ModelVersion
from graph_editor.selectors import model_get, model_list, model_version_get
from graph_editor.services import _validate_filename, model_delete, model_version_upload
from portal.api_base import TenantAPIView, with_errors


class _PathRefusingMultiPartParser(DjangoMultiPartParser):
    def sanitize_file_name(self, file_name):
        # Django strips directories silently; a client that sent "../x.onnx" is told instead.
        _validate_filename(file_name)
        _validate_filename(html.unescape(file_name))
        return super().sanitize_file_name(file_name)


class ModelUploadParser(MultiPartParser):
    """multipart/form-data, refusing a file name that carries a path."""

    def parse(self, stream, media_type=None, parser_context=None):
        request = parser_context["request"]
        meta = request.META.copy()
        meta["CONTENT_TYPE"] = media_type
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            data, files = _PathRefusingMultiPartParser(meta, stream, request.upload_handlers, encoding).parse()
        except MultiPartParserError as exc:
            raise ParseError(f"Multipart form parse error - {exc}") from exc
        return DataAndFiles(data, files)


class TensorSerializer(serializers.Serializer):
    name = serializers.CharField()
    datatype = serializers.CharField(help_text="KServe v2 datatype, e.g. FP32, INT64")
    shape = serializers.ListField(child=serializers.IntegerField(), help_text="-1 marks a dynamic dimension")


class ModelVersionSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model.name")
    inputs = TensorSerializer(many=True)
    outputs = TensorSerializer(many=True)

    class Meta:
        model = ModelVersion
        fields = ("id", "model", "model_name", "version", "format", "size_bytes", "sha256", "opset", "producer",
                  "inputs", "outputs", "has_batch_dim", "created_at")
        read_only_fields = fields
        extra_kwargs = {
            "has_batch_dim": {"help_text": "Every input and output has a dynamic first dimension"},
            "size_bytes": {"help_text": "Size of the ONNX file"},
        }


class ModelSerializer(serializers.ModelSerializer):
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = MLModel
        fields = ("id", "name", "description", "created_at", "latest_version")
        read_only_fields = fields

    @extend_schema_field(ModelVersionSerializer(allow_null=True))
    def get_latest_version(self, model):
        # Picked from the prefetched versions: one query for the whole list.
        versions = list(model.versions.all())
        return ModelVersionSerializer(max(versions, key=lambda v: v.version)).data if versions else None


class ModelDetailSerializer(ModelSerializer):
    versions = ModelVersionSerializer(many=True, help_text="Newest first")

    class Meta(ModelSerializer.Meta):
        fields = (*ModelSerializer.Meta.fields, "versions")
        read_only_fields = fields


class ModelUploadSerializer(serializers.Serializer):
    name = serializers.CharField(
        help_text="Model name: 1-63 lowercase letters, digits and hyphens. An existing name gets a new version.",
        error_messages={"required": "Give the model a 'name' (lowercase letters, digits and hyphens).",
                        "blank": "Give the model a 'name' (lowercase letters, digits and hyphens)."},
    )
    file = serializers.FileField(
        allow_empty_file=True,  # the upload service explains an empty file in ONNX terms
        help_text="A self-contained .onnx file (no external data)",
        error_messages={"required": "Attach the ONNX file as the multipart field 'file'.",
                        "invalid": "'file' must be a file part of a multipart/form-data request, not a text field."},
    )
    description = serializers.CharField(required=False, allow_blank=True, default="")


class ModelListView(TenantAPIView):
    parser_classes = (ModelUploadParser,)

    @extend_schema(responses=with_errors({200: ModelSerializer(many=True)}), summary="List models")
    def get(self, request):
        return Response(ModelSerializer(model_list(tenant=self.tenant), many=True).data)

    @extend_schema(
        request={"multipart/form-data": ModelUploadSerializer},
        responses=with_errors({201: ModelVersionSerializer}, 400, 413),
        summary="Upload an ONNX model (a new version when the name exists)",
        description="The file is validated (ONNX checker, supported datatypes, no external data) before "
        "anything is stored; the response carries the version's signature.",
    )
    def post(self, request):
        payload = ModelUploadSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        upload = payload.validated_data["file"]
        version = model_version_upload(
            tenant=self.tenant, model_name=payload.validated_data["name"], chunks=upload.chunks(),
            filename=upload.name, description=payload.validated_data["description"], actor=self.actor,
        )
        return Response(ModelVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class ModelDetailView(TenantAPIView):
    @extend_schema(responses=with_errors({200: ModelDetailSerializer}, 404), summary="A model and its versions")
    def get(self, request, model_id: int):
        return Response(ModelDetailSerializer(model_get(tenant=self.tenant, model_id=model_id)).data)

    @extend_schema(responses=with_errors({204: None}, 404, 409),
                   summary="Delete a model, its versions and files (refused while deployed)")
    def delete(self, request, model_id: int):
        model_delete(tenant=self.tenant, model_id=model_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ModelVersionListView(TenantAPIView):
    @extend_schema(responses=with_errors({200: ModelVersionSerializer(many=True)}, 404),
                   summary="Versions of a model, newest first")
    def get(self, request, model_id: int):
        model = model_get(tenant=self.tenant, model_id=model_id)
        return Response(ModelVersionSerializer(model.versions.all(), many=True).data)


class ModelVersionDetailView(TenantAPIView):
    @extend_schema(responses=with_errors({200: ModelVersionSerializer}, 404),
                   summary="A model version and its signature")
    def get(self, request, version_id: int):
        return Response(ModelVersionSerializer(model_version_get(tenant=self.tenant, version_id=version_id)).data)
