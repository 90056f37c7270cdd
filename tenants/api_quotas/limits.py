"""Limits as the API reads and writes them, shared by every quota endpoint."""
from rest_framework import serializers

from tenants.models import DEPLOY_LIMITS, REQUEST_LIMITS, Hardware, Quota
from tenants.quotas import LIMIT_FIELDS


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
