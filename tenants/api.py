from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from portal.api_base import TenantAPIView
from tenants.models import ApiKey, Scope
from tenants.selectors import api_key_list
from tenants.services import api_key_create, api_key_revoke


class TenantSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    role = serializers.CharField(allow_null=True)


class ApiKeySerializer(serializers.ModelSerializer):
    active = serializers.BooleanField(source="is_active", read_only=True)

    class Meta:
        model = ApiKey
        fields = ["id", "label", "prefix", "scopes", "active", "created_at", "revoked_at", "last_used_at"]


class ApiKeyCreateSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=120)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices), allow_empty=False)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The secret, shown only in this response")

    class Meta(ApiKeySerializer.Meta):
        fields = ApiKeySerializer.Meta.fields + ["key"]


class TenantView(TenantAPIView):
    @extend_schema(responses=TenantSerializer, summary="The tenant this request acts for")
    def get(self, request):
        membership = getattr(request._request, "membership", None)
        tenant = self.tenant
        role = membership.role if membership is not None and request.auth is None else None
        return Response(TenantSerializer({"id": tenant.pk, "name": tenant.name, "slug": tenant.slug, "role": role}).data)


class ApiKeyListView(TenantAPIView):
    @extend_schema(responses=ApiKeySerializer(many=True), summary="List API keys")
    def get(self, request):
        return Response(ApiKeySerializer(api_key_list(tenant=self.tenant), many=True).data)

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer},
                   summary="Create an API key (its secret is returned once)")
    def post(self, request):
        payload = ApiKeyCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        api_key, raw = api_key_create(tenant=self.tenant, actor=self.actor, **payload.validated_data)
        data = ApiKeySerializer(api_key).data | {"key": raw}
        return Response(data, status=status.HTTP_201_CREATED)


class ApiKeyRevokeView(TenantAPIView):
    @extend_schema(request=None, responses=ApiKeySerializer, summary="Revoke an API key")
    def post(self, request, key_id: int):
        return Response(ApiKeySerializer(api_key_revoke(tenant=self.tenant, key_id=key_id)).data)
