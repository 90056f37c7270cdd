"""The billing API's serializers: money as decimal strings, quantities exact."""
from decimal import Decimal

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from billing.models import Component, CreditNote, Enforcement, Invoice, InvoiceLine, UsageEvent

# ---- fields -------------------------------------------------------------------------------


class MoneyField(serializers.DecimalField):
    """An amount of money, to the cent, as a string: "12.30"."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "In the invoice's currency, as a decimal string")
        super().__init__(max_digits=14, decimal_places=2, coerce_to_string=True, **kwargs)


class ExactDecimalField(serializers.DecimalField):
    """A quantity, exact and without trailing zeros, as a string: "1500", "2.5"."""

    min_places = 0

    def __init__(self, **kwargs):
        super().__init__(max_digits=None, decimal_places=None, coerce_to_string=True, **kwargs)

    def to_representation(self, value):
        if value is None:
            return None
        value = Decimal(str(value)).normalize()
        if value.as_tuple().exponent > -self.min_places:
            value = value.quantize(Decimal(1).scaleb(-self.min_places))
        return f"{value:f}"


class PriceField(ExactDecimalField):
    """A unit price, exact, with at least the cents, as a string: "0.40", "0.0001"."""

    min_places = 2


class StrictMoneyInputField(serializers.DecimalField):
    """An amount given as a decimal string ("100.00"): a JSON number is refused, because a
    float cannot hold most cent amounts exactly."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise ValidationError('Give the amount as a decimal string, e.g. "100.00".')
        return super().to_internal_value(data)


# ---- serializers --------------------------------------------------------------------------

TierPieceSerializer = type("TierPieceSerializer", (serializers.Serializer,), {
    "from": ExactDecimalField(help_text="Where the piece starts, in the month's units of the component (the free "
                                        "allowance counts from 0)"),
    "to": ExactDecimalField(help_text="Where it ends (excluded)"),
    "quantity": ExactDecimalField(help_text="to − from"),
    "unit_price": PriceField(help_text="The tier's price per unit; 0 within the free allowance"),
    "amount": ExactDecimalField(help_text="quantity × unit_price, unrounded"),
})


class InvoiceLineSerializer(serializers.ModelSerializer):
    quantity = ExactDecimalField(help_text="In the line's unit")
    unit_price = PriceField(allow_null=True, help_text="The price per unit when one tier applies; null when several "
                                                       "do (see tiers)")
    tiers = TierPieceSerializer(many=True, help_text="How the quantity went through the free allowance and the "
                                                     "tiers, unrounded")
    amount = MoneyField(help_text="Rounded once, to the cent, half-up")
    price_version = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True,
                                                       help_text="Id of the price version that rated it")

    class Meta:
        model = InvoiceLine
        fields = ("id", "position", "kind", "component", "deployment_id", "deployment_name", "hardware",
                  "price_version", "service_start", "service_end", "description", "quantity", "unit", "unit_price",
                  "tiers", "amount")
        read_only_fields = fields
        extra_kwargs = {
            "kind": {"help_text": "base_fee, usage, or adjustment (late usage of an earlier month, dated by "
                                  "service_start and service_end)"},
            "deployment_id": {"help_text": "The deployment charged; null for the base fee"},
        }


class CreditNoteSerializer(serializers.ModelSerializer):
    amount = MoneyField(help_text="Given back, in the invoice's currency")

    class Meta:
        model = CreditNote
        fields = ("number", "amount", "reason", "created_at")
        read_only_fields = fields


class InvoiceSerializer(serializers.ModelSerializer):
    total = MoneyField(help_text="The sum of the lines")

    class Meta:
        model = Invoice
        fields = ("id", "number", "status", "period_start", "period_end", "currency", "total", "rated_at",
                  "finalized_at")
        read_only_fields = fields
        extra_kwargs = {
            "number": {"help_text": "Given when the invoice is finalized; null for a draft"},
            "period_end": {"help_text": "First day of the next month (UTC), excluded"},
            "rated_at": {"help_text": "When usage was last rated into it"},
        }


class InvoiceDetailSerializer(InvoiceSerializer):
    lines = InvoiceLineSerializer(many=True)
    credit_notes = CreditNoteSerializer(many=True)

    class Meta(InvoiceSerializer.Meta):
        fields = (*InvoiceSerializer.Meta.fields, "rolled_through", "lines", "credit_notes")
        read_only_fields = fields
        extra_kwargs = {**InvoiceSerializer.Meta.extra_kwargs,
                        "rolled_through": {"help_text": "The usage it holds is as of this time"}}


class DailyCostSerializer(serializers.Serializer):
    day = serializers.DateField(help_text="The UTC day")
    deployment_name = serializers.CharField(help_text="The deployment the usage went to (the base fee and late "
                                                      "adjustments are not daily usage)")
    amount = MoneyField(help_text="That day's cost of the deployment")


class SpendAlertSerializer(serializers.Serializer):
    threshold = serializers.IntegerField(help_text="Percent of the spend limit: 50, 80 or 100")
    spent = MoneyField(help_text="Spent when the alert was raised")
    spend_limit = MoneyField(help_text="The limit then")
    created_at = serializers.DateTimeField()


class SpendStatusSerializer(serializers.Serializer):
    currency = serializers.CharField(help_text="The plan's currency")
    limit = MoneyField(allow_null=True, help_text="The monthly spend limit; null when none is set")
    enforcement = serializers.ChoiceField(choices=Enforcement.choices,
                                          help_text="hard: requests are refused (429) once it is reached; soft: "
                                                    "alerts only")
    limit_max = MoneyField(allow_null=True, help_text="The highest limit owners may set; null when unbounded")
    spent = MoneyField(help_text="Spent so far this month, exact: the live draft's total")
    estimate = ExactDecimalField(allow_null=True, help_text="What the gateway counts now against the limit (never "
                                                            "below the exact spend); null without a limit")
    percent = ExactDecimalField(allow_null=True, help_text="spent / limit × 100, to one decimal; null without a "
                                                           "limit")
    alerts = SpendAlertSerializer(many=True, help_text="Thresholds passed this month")
    past_due = serializers.BooleanField(help_text="A payment failed and is not settled")
    past_due_since = serializers.DateTimeField(allow_null=True, help_text="When the payment failed")
    blocked_from = serializers.DateTimeField(allow_null=True, help_text="When requests are (or will be) refused "
                                                                       "with 402 for it: the end of the grace")
    blocked = serializers.BooleanField(help_text="Requests are refused now with 402: past due beyond the grace")


class CurrentBillingSerializer(serializers.Serializer):
    invoice = InvoiceDetailSerializer(allow_null=True, help_text="The month's live draft: the cost so far, line by "
                                                                 "line (null before anything is rated)")
    period_start = serializers.DateField(help_text="The month (UTC)")
    period_end = serializers.DateField(help_text="The next month's first day, excluded")
    cost_so_far = MoneyField()
    forecast = MoneyField(help_text="The month's cost if usage goes on at the pace of the month so far (linear: "
                                    "with graduated prices it errs high)")
    currency = serializers.CharField()
    daily = DailyCostSerializer(many=True, help_text="Cost per UTC day and deployment, oldest first")
    spend = SpendStatusSerializer()


class TierSerializer(serializers.Serializer):
    up_to = ExactDecimalField(allow_null=True, help_text="The last unit (beyond the allowance) this tier prices; "
                                                         "null for the last tier")
    unit_price = PriceField()


class ComponentPriceSerializer(serializers.Serializer):
    component = serializers.ChoiceField(choices=Component.choices)
    label = serializers.CharField()
    unit = serializers.CharField(help_text="What one unit is, e.g. 1,000 requests, second, GB-hour")
    free_allowance = ExactDecimalField(help_text="Units per month at no charge")
    tiers = TierSerializer(many=True, help_text="Graduated: each tier prices the units up to its up_to")


class PriceVersionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    effective_from = serializers.DateTimeField(help_text="Usage from this moment (UTC) is rated by this version")
    currency = serializers.CharField()
    base_fee = MoneyField(help_text="Per calendar month")
    note = serializers.CharField()
    prices = ComponentPriceSerializer(many=True, help_text="One per priced component; a component without a price is "
                                                           "free")


class PricesSerializer(serializers.Serializer):
    plan = inline_serializer("BillingPlan", {"id": serializers.IntegerField(), "name": serializers.CharField(),
                                             "slug": serializers.CharField()}, allow_null=True)
    currency = serializers.CharField(allow_null=True, help_text="The currency of the version in force")
    in_force = PriceVersionSerializer(allow_null=True, help_text="The prices now; null when the plan has none")
    upcoming = PriceVersionSerializer(many=True, help_text="Versions that take effect later, soonest first")


class SpendLimitSerializer(serializers.Serializer):
    amount = StrictMoneyInputField(max_digits=12, decimal_places=2, allow_null=True, required=False,
                                   help_text='The monthly limit as a decimal string ("100.00"); null removes it')
    enforcement = serializers.ChoiceField(choices=Enforcement.choices, required=False,
                                          help_text="hard: refuse requests (429 insufficient_quota) once spent "
                                                    "reaches it; soft: alert only")

    def validate(self, data):
        if not data:
            raise ValidationError("Give amount, enforcement, or both.")
        return data


class LineRequestSerializer(serializers.ModelSerializer):
    class Meta:
        model = UsageEvent
        fields = ("request_id", "occurred_at", "deployment_name", "endpoint", "status", "compute_ms", "latency_ms")
        read_only_fields = fields
        extra_kwargs = {"compute_ms": {"help_text": "The compute time it was billed for"}}


class LineRequestsQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=("json", "csv"), required=False,
                                     help_text="csv: every request of the line as a CSV download (limit and offset "
                                               "do not apply); the same as Accept: text/csv")
