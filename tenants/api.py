from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from portal.api_base import TenantAPIView, with_errors
from tenants.models import ApiKey, Role, Scope
from tenants.selectors import api_key_list
from tenants.services import api_key_create, api_key_revoke


class TenantSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices, allow_null=True,
                                   help_text="The signed-in user's role; null when calling with an API key")


class ApiKeySerializer(serializers.ModelSerializer):
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices))
    active = serializers.BooleanField(source="is_active")

    class Meta:
        model = ApiKey
        fields = ("id", "label", "prefix", "scopes", "active", "created_at", "revoked_at", "last_used_at")
        read_only_fields = fields


class ApiKeyCreateSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=120, help_text="A name that tells your keys apart")
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.choices), allow_empty=False,
        help_text="'infer' to call deployments through the gateway, 'manage' for this API",
    )


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The secret, shown only in this response")

    class Meta(ApiKeySerializer.Meta):
        fields = (*ApiKeySerializer.Meta.fields, "key")
        read_only_fields = fields


class TenantView(TenantAPIView):
    @extend_schema(responses=with_errors({200: TenantSerializer}), summary="The tenant this request acts for")
    def get(self, request):
        membership = request.membership if request.auth is None else None
        tenant = self.tenant
        return Response(TenantSerializer({"id": tenant.pk, "name": tenant.name, "slug": tenant.slug,
                                          "role": membership.role if membership else None}).data)


class ApiKeyListView(TenantAPIView):
    @extend_schema(responses=with_errors({200: ApiKeySerializer(many=True)}), summary="List API keys")
    def get(self, request):
        return Response(ApiKeySerializer(api_key_list(tenant=self.tenant), many=True).data)

    @extend_schema(request=ApiKeyCreateSerializer, responses=with_errors({201: ApiKeyCreatedSerializer}, 400),
                   summary="Create an API key (its secret is returned once)")
    def post(self, request):
        payload = ApiKeyCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        api_key, secret = api_key_create(tenant=self.tenant, actor=self.actor, **payload.validated_data)
        api_key.key = secret
        return Response(ApiKeyCreatedSerializer(api_key).data, status=status.HTTP_201_CREATED)


class ApiKeyRevokeView(TenantAPIView):
    @extend_schema(request=None, responses=with_errors({200: ApiKeySerializer}, 404),
                   summary="Revoke an API key (it stops working at once; revoking twice is harmless)")
    def post(self, request, key_id: int):
        return Response(ApiKeySerializer(api_key_revoke(tenant=self.tenant, key_id=key_id)).data)
